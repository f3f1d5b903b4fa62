"""Visual prompts (original image frame) -> positive / negative region masks per object (padded model frame).

SEEM v1 has one visual sampler for every non-text prompt (paper §3.2): each prompt becomes a region mask from
which at most 512 points are sampled. So:

* a **click** is a 3x3 square around the clicked pixel in the resized frame (the official click dilation,
  ``STROKE_SAMPLER.DILATION 3``), positive or negative;
* a **box** is the filled rectangle (v1 has no box encoder; official issue #42);
* a **scribble** is a stroke mask, or a polyline rasterised 3 px wide;
* a **polygon** is its filled interior; a **mask** is used as given.

Masks drawn at the original size reach the resized frame by :meth:`ImageFrame.mask_to_model` (area pooling
when shrinking, so thin strokes survive); then everything is zero-padded like the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from seem.errors import PromptError
from seem.prompts import checks
from seem.transforms import ImageFrame

if TYPE_CHECKING:
    from seem.prompts.value import Prompts

CLICK_RADIUS = 1  # 3x3 square


@dataclass(frozen=True)
class RegionPrompts:
    """``positive``/``negative`` ``(K, H_pad, W_pad)`` bool region masks in the padded model frame."""

    positive: Tensor
    negative: Tensor

    @property
    def num_objects(self) -> int:
        return int(self.positive.shape[0])


def click_regions(points: np.ndarray, labels: np.ndarray, frame: ImageFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(K, N, 2)`` (x, y) original pixels + ``(K, N)`` labels -> positive and negative ``(K, h, w)`` bool
    masks in the resized frame (a 3x3 square per click)."""
    k = points.shape[0]
    h, w = frame.resized_size
    pos = np.zeros((k, h, w), dtype=bool)
    neg = np.zeros((k, h, w), dtype=bool)
    xy = frame.points_to_resized(points.reshape(-1, 2)).reshape(points.shape)
    r = CLICK_RADIUS
    for obj in range(k):
        for (x, y), lab in zip(xy[obj], labels[obj]):
            cx, cy = min(int(x), w - 1), min(int(y), h - 1)
            target = pos if lab else neg
            target[obj, max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1] = True
    return pos, neg


def box_regions(boxes: np.ndarray, frame: ImageFrame) -> np.ndarray:
    """``(K, 4)`` XYXY original pixels -> ``(K, h, w)`` bool filled rectangles in the resized frame (outward
    rounding, at least one pixel)."""
    rh, rw = frame.resized_size
    sx, sy = frame.scale_xy
    out = np.zeros((boxes.shape[0], rh, rw), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        c0, r0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
        c1, r1 = max(int(np.ceil(x1 * sx)), c0 + 1), max(int(np.ceil(y1 * sy)), r0 + 1)
        out[i, r0:r1, c0:c1] = True
    return out


def drawn_regions(shapes: Sequence[np.ndarray], frame: ImageFrame, field: str, fill: bool) -> np.ndarray:
    """Scribbles (``fill=False``) or polygons (``fill=True``), each an ``(H, W)`` mask or ``(M, 2)`` points ->
    ``(K, H, W)`` bool masks at the original size.

    Raises:
        PromptError naming ``field[i]``: a point outside the image, a mask of another size, nothing drawn.
    """
    from seem.rasterize import rasterize_polygon, rasterize_polyline

    masks = []
    for i, s in enumerate(shapes):
        if s.shape[1] == 2:  # (M, 2) points (Prompts keeps any other 2-D array as a mask)
            checks.check_inside(s, frame.original_size, f"{field}[{i}]")
            s = (rasterize_polygon if fill else rasterize_polyline)(s, frame.original_size)
        masks.append(s)
    return checks.region_masks(masks, frame.original_size, field)


def resize_regions(masks: np.ndarray, frame: ImageFrame) -> np.ndarray:
    """``(K, H, W)`` bool original-frame masks -> ``(K, h, w)`` bool in the resized frame."""
    if masks.shape[-2:] == frame.resized_size:
        return masks
    return frame.mask_to_model(masks)[:, : frame.resized_size[0], : frame.resized_size[1]].numpy()


def pad_regions(masks: np.ndarray, frame: ImageFrame) -> Tensor:
    """``(K, h, w)`` bool resized-frame masks -> ``(K, H_pad, W_pad)`` bool tensor, zero-padded bottom/right."""
    out = torch.zeros(masks.shape[0], *frame.padded_size, dtype=torch.bool)
    out[:, : masks.shape[1], : masks.shape[2]] = torch.from_numpy(masks)
    return out


def mask_regions(masks, frame: ImageFrame, field: str = "masks") -> RegionPrompts:
    """Region masks alone (``(H, W)``, ``(K, H, W)`` or a list of ``(H, W)``, original frame) -> positive
    regions in the padded model frame, no negatives: what a referred region is sampled from.

    Raises:
        PromptError naming ``field[i]``: not arrays, an empty list, another size, a non-numeric dtype, NaN,
            no pixel set.
    """
    pos = resize_regions(checks.region_masks(checks.region_list(masks, field), frame.original_size, field), frame)
    return RegionPrompts(pad_regions(pos, frame), pad_regions(np.zeros_like(pos), frame))


def prompt_regions(prompts: Prompts, frame: ImageFrame) -> RegionPrompts | None:
    """The visual prompts of ``prompts`` as region masks in ``frame``; ``None`` when there is none.

    Prompt types of one object are merged by union; a negative click carves its pixels out of the object's
    positive regions (box, scribble, polygon, mask), so "not here" inside a box reaches the model.

    Raises:
        PromptError: see :meth:`Prompts.to_regions`.
    """
    size = frame.original_size
    parts: list[tuple[np.ndarray, np.ndarray]] = []  # (positive (K,h,w), negative (K,h,w))
    if prompts.points is not None and prompts.point_labels is not None:  # Prompts sets both or neither
        checks.check_inside(prompts.points[0] if len(prompts.points) == 1 else prompts.points, size, "points")
        parts.append(click_regions(prompts.points, prompts.point_labels, frame))
    if prompts.boxes is not None:
        for i, box in enumerate(prompts.boxes):
            checks.check_box(box, size, f"boxes[{i}]")
        b = box_regions(prompts.boxes, frame)
        parts.append((b, np.zeros_like(b)))
    for name, fill in (("scribbles", False), ("polygons", True)):
        if getattr(prompts, name) is not None:
            m = resize_regions(drawn_regions(getattr(prompts, name), frame, name, fill), frame)
            parts.append((m, np.zeros_like(m)))
    if prompts.masks is not None:
        m = resize_regions(checks.region_masks(prompts.masks, size, "masks"), frame)
        parts.append((m, np.zeros_like(m)))
    if not parts:
        return None
    neg = np.logical_or.reduce([n for _, n in parts])
    pos = np.logical_or.reduce([p for p, _ in parts]) & ~neg
    if not pos.reshape(pos.shape[0], -1).any(axis=1).all():
        raise PromptError("an object has no positive prompt pixel left after resizing")
    return RegionPrompts(pad_regions(pos, frame), pad_regions(neg, frame))
