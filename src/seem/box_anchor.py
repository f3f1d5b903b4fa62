"""Clicks after a box (``InferenceConfig.box_anchor``, on for ``seem_tiny``; not in the official code).

SEEM v1 samples a box's prompt points from the filled rectangle: at most 512 points of the union of the box and
the clicks of its object (paper §3.2), so a correction click's 3x3 square is a few of a box's tens of thousands of
pixels and barely reaches the decoder; after a box, clicks corrected the mask far more slowly than clicks alone
(GrabCut, box first then clicks with the box kept: mIoU@5 81.0 vs 88.6 % for clicks alone). In a refinement round
(a memory prompt given) of boxes and clicks, this module turns each box into what it still says: a bound (the
mask stays in the box, :func:`seem.box_bounds.box_bounded`) and an *anchor*, one positive click at the cell of
the previous mask farthest from its edge inside the box (the distance-transform maximum, as the click protocols
place a first click), so the object is decoded from its clicks as a click-only interaction would be. The anchor
is recomputed from the memory each round, so the API stays stateless.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from seem.postprocess import prompt_cells
from seem.prompts import Prompts, checks
from seem.prompts.regions import box_regions, pad_regions
from seem.prompts.value import VISUAL_FIELDS


def applies(prompts: Prompts, memory) -> bool:
    """Whether a round is one :func:`anchored_prompts` rewrites: a memory prompt, boxes and clicks, no other
    visual prompt, no text and no reference."""
    others = [getattr(prompts, f) for f in VISUAL_FIELDS if f not in ("boxes", "points")]
    return (memory is not None and prompts.boxes is not None and prompts.points is not None and not prompts.text
            and prompts.reference is None and all(v is None for v in others))


def anchored_prompts(prompts: Prompts, memory, frame) -> Prompts | None:
    """The clicks of ``prompts`` with each object's anchor click first (positive), and no boxes.

    Args:
        prompts: a round's :class:`Prompts` for which :func:`applies` holds (``K`` objects, each with a box
            ``(x0, y0, x1, y1)`` and ``M`` clicks, original pixels).
        memory: the previous round's :class:`~seem.structures.Prediction` or its ``(K, H_pad/4, W_pad/4)`` logits.
        frame: the image's :class:`~seem.transforms.ImageFrame`.

    Returns:
        ``Prompts(points (K, M + 1, 2), point_labels (K, M + 1))``: the anchor is the centre of the cell of the
        memory mask (logit > 0), within the object's box and neither on nor next to one of its negative clicks,
        farthest from that region's edge; without such a cell, of the box's cells without a negative click
        (:func:`_anchor_cell`). ``None`` when a box's cells all hold negative clicks: the round is then decoded
        as given (the box sampled with the clicks).

    Raises:
        PromptError: a bad ``memory`` (:func:`seem.prompts.checks.memory_logits`).
    """
    boxes, points, labels = prompts.boxes, prompts.points, prompts.point_labels
    if boxes is None or points is None or labels is None:
        raise ValueError("anchored_prompts takes a round of boxes and clicks (see applies)")
    h_pad, w_pad = frame.padded_size
    logits = checks.memory_logits(memory, boxes.shape[0], (h_pad // 4, w_pad // 4))
    h, w = frame.lowres_valid_size
    inside = logits[:, :h, :w].float().cpu().numpy() > 0
    # the cells each box's filled rectangle (its region prompt) touches
    box_cells = prompt_cells(pad_regions(box_regions(boxes, frame), frame))[:, :h, :w]
    anchors = []
    for k in range(len(boxes)):
        cell = _anchor_cell(inside[k], box_cells[k], _negative_cells(points[k][labels[k] == 0], frame, (h, w)))
        if cell is None:
            return None
        anchors.append(_cell_centre(cell, frame))
    return Prompts(points=np.concatenate([np.asarray(anchors)[:, None], points], 1),
                   point_labels=np.concatenate([np.ones((len(anchors), 1), dtype=np.int64), labels], 1))


def _anchor_cell(inside: np.ndarray, box: np.ndarray, negative: np.ndarray) -> tuple[int, int] | None:
    """The ``(row, col)`` cell of one object's anchor: of the ``(h, w)`` bool ``inside`` cells of the memory mask
    in the ``box`` cells that are neither a ``negative`` click's cell nor next to one, the one farthest from that
    region's edge (the excluded cells are holes in it, so it also keeps away from the negative clicks); without
    such cells, the same over the box cells that hold no negative click; ``None`` when every box cell holds one."""
    to_negative = ndimage.distance_transform_edt(~negative) if negative.any() else np.full(negative.shape, np.inf)
    region = inside & box & (to_negative >= 2)  # 2 cells: not a negative's own cell nor one of its 8 neighbours
    if not region.any():
        region = box & (to_negative >= 1)
    if not region.any():
        return None
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    i, j = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(i), int(j)


def _cell_centre(cell: tuple[int, int], frame) -> list[float]:
    """A low-resolution cell's centre pixel (resized ``4 j + 2``, kept inside the resized image) as original ``(x,
    y)`` pixels: the click's 3 x 3 square then stays inside the cell."""
    sx, sy = frame.scale_xy
    i, j = cell
    return [min(4 * j + 2.5, frame.resized_size[1] - 0.5) / sx, min(4 * i + 2.5, frame.resized_size[0] - 0.5) / sy]


def _negative_cells(negative: np.ndarray, frame, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` bool: the cells of an object's ``(M', 2)`` negative clicks (original pixels)."""
    cells = np.zeros(size, dtype=bool)
    if len(negative):
        xy = frame.points_to_resized(negative)
        cells[np.clip((xy[:, 1] // 4).astype(int), 0, size[0] - 1), np.clip((xy[:, 0] // 4).astype(int), 0, size[1] - 1)] = True
    return cells
