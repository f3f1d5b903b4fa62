"""JSON prompts -> :class:`seem.Prompts`, and masks -> JSON.

Every check names the request field in its :class:`seem.errors.PromptError` (mapped to 422 by the app).
The geometric checks are those of :mod:`seem.prompts.checks`, under the request's field names; what reaches
:class:`seem.Prompts` is checked there. Coordinates are ``(x, y)`` pixels of the original image (x right,
y down); a point may lie on the far border (``0 <= x <= width``, ``0 <= y <= height``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seem import io as seem_io
from seem.errors import ImageError, PromptError
from seem.prompts import Prompts, checks
from seem.rasterize import rasterize_polygon, rasterize_polyline
from seem.server.schemas import RLE
from seem.server.store import ImageEntry, ObjectState


def check_inside(points: Sequence[Sequence[float]], entry: ImageEntry, field: str) -> None:
    """PromptError naming ``field[i]`` for the first point outside the image (:func:`seem.prompts.checks.check_inside`)."""
    checks.check_inside(points, (entry.height, entry.width), field)


def check_box(box: Sequence[float], entry: ImageEntry, field: str) -> None:
    """PromptError naming ``field[0]``/``field[1]`` for a corner outside the image, or ``field`` for a box with
    no area (:func:`seem.prompts.checks.check_box`)."""
    checks.check_box(box, (entry.height, entry.width), field)


def max_rle_chars(size: tuple[int, int]) -> int:
    """Most characters a valid compressed RLE of an ``(H, W)`` mask can have: at most ``H*W + 1`` runs, each
    a delta of at most ``H*W`` in magnitude, written 5 bits (plus sign) per character."""
    n = int(size[0]) * int(size[1])
    return (n + 1) * -(-(n.bit_length() + 2) // 5)


def rle_string_counts(counts: str, field: str, max_runs: int | None = None) -> list[int]:
    """Run lengths of a COCO compressed RLE string (pycocotools ``rleFrString``, vectorised with numpy).

    Client RLE is parsed here and checked (non-negative runs summing to H*W) before decoding: pycocotools'
    C decoder writes runs without bounds checks, so malformed strings must never reach it. Linear in the
    length with a small constant: callers bound the length first (:func:`max_rle_chars`).
    """
    if not counts:
        return []
    try:
        raw = np.frombuffer(counts.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raise PromptError(f"{field}: invalid RLE counts (non-ASCII character)") from None
    if max_runs is not None:  # one byte per character so far: refuse too many runs before any int64 array
        runs = int(np.count_nonzero(((raw - 48) & 0x20) == 0))
        if runs > max_runs:
            raise PromptError(f"{field}: invalid RLE ({runs:,} runs; a mask of this size has at most {max_runs:,})")
    c = raw.astype(np.int64) - 48
    bad = np.flatnonzero((c < 0) | (c >= 64))
    if bad.size:
        raise PromptError(f"{field}: invalid RLE counts (character {counts[bad[0]]!r} at {bad[0]})")
    last = (c & 0x20) == 0  # the last character of each run
    if not last[-1]:
        raise PromptError(f"{field}: invalid RLE counts (malformed run at character {len(counts)})")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    k = np.arange(len(c)) - np.repeat(starts, ends - starts + 1)  # position of each character in its run
    if int(k.max()) > 12:  # 13 x 5 bits is beyond any image size
        raise PromptError(f"{field}: invalid RLE counts (malformed run at character {int(np.argmax(k > 12))})")
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (k[ends][negative] + 1))  # sign extension of the last 5-bit group
    # runs 3, 4, ... are stored as differences to the run two before (pycocotools: x += cnts[m - 2] for m > 2)
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    return x.tolist()


def decode_rle(rle: RLE | dict, size: tuple[int, int], field: str) -> np.ndarray:
    """``(H, W)`` bool mask of an RLE that must have the image's ``size`` and at least one pixel."""
    data = rle.model_dump() if isinstance(rle, RLE) else rle
    if tuple(data["size"]) != tuple(size):
        raise PromptError(f"{field}: RLE size {list(data['size'])} does not match the image [H, W] = {list(size)}")
    counts = data["counts"]
    limit = max_rle_chars(size)
    if len(counts) > limit:  # before any parsing: a bounded amount of work per mask
        what = "characters" if isinstance(counts, str) else "runs"
        raise PromptError(f"{field}: RLE counts has {len(counts):,} {what}; no mask of {size[0]}x{size[1]} pixels "
                          f"needs more than {limit if isinstance(counts, str) else size[0] * size[1] + 1:,}")
    if isinstance(counts, str):
        counts = rle_string_counts(counts, field, max_runs=size[0] * size[1] + 1)
    try:  # uncompressed runs: validated (sum, signs) and decoded with numpy by seem.io
        mask = seem_io.rle_to_mask({"size": list(size), "counts": list(counts)})
    except ImageError as exc:
        raise PromptError(f"{field}: {exc}") from None
    if not mask.any():
        raise PromptError(f"{field}: the mask is empty (no pixel set)")
    return mask


def polygon_mask(vertices: Sequence[Sequence[float]], entry: ImageEntry, field: str) -> np.ndarray:
    check_inside(vertices, entry, field)
    mask = rasterize_polygon(np.asarray(vertices, dtype=np.float64), (entry.height, entry.width))
    if not mask.any():
        raise PromptError(f"{field}: the polygon covers no pixel centre (degenerate or too thin)")
    return mask


def scribble_mask(polylines: Sequence[Sequence[Sequence[float]]], entry: ImageEntry, field: str) -> np.ndarray:
    """Union of the strokes (3 px wide, as the predictor draws scribbles)."""
    out = np.zeros((entry.height, entry.width), dtype=bool)
    for i, line in enumerate(polylines):
        check_inside(line, entry, f"{field}[{i}]")
        out |= rasterize_polyline(np.asarray(line, dtype=np.float64), (entry.height, entry.width))
    return out


def object_prompts(obj: ObjectState, entry: ImageEntry) -> Prompts:
    """The :class:`seem.Prompts` of one session object's accumulated prompts (one object: K = 1).

    Clicks are passed as they are; all strokes as one scribble mask, all polygons as one filled mask and all
    mask prompts as their union (the predictor merges region prompts of one object by union anyway).
    """
    size = (entry.height, entry.width)
    return Prompts(
        points=np.asarray(obj.points, dtype=np.float64) if obj.points else None,
        point_labels=np.asarray(obj.labels, dtype=np.int64) if obj.points else None,
        boxes=np.asarray([obj.box], dtype=np.float64) if obj.box is not None else None,
        scribbles=[scribble_mask(obj.scribbles, entry, "scribble")] if obj.scribbles else None,
        polygons=[np.logical_or.reduce([polygon_mask(p, entry, "polygon") for p in obj.polygons])]
        if obj.polygons else None,
        masks=np.logical_or.reduce([decode_rle(m, size, "mask") for m in obj.masks])[None] if obj.masks else None,
        text=obj.text,
        reference=obj.reference,
    )


def object_kwargs(obj: ObjectState, entry: ImageEntry) -> dict:
    """:meth:`seem.SeemPredictor.predict` keyword arguments for one session object: ``{"prompts": Prompts}``."""
    return {"prompts": object_prompts(obj, entry)}


def has_visual(kw: dict) -> bool:
    """Whether the prompts of :func:`object_kwargs` hold a visual prompt (one that ``memory`` refines)."""
    return kw["prompts"].has_visual


# ------------------------------------------------------------------------------------------------ outputs
def encode_mask(mask: np.ndarray, score: float, label: str) -> dict:
    """The :class:`schemas.MaskOut` fields of an ``(H, W)`` bool mask."""
    mask = np.asarray(mask, dtype=bool)
    return {
        "rle": seem_io.mask_to_rle(mask),
        "polygon": seem_io.mask_to_polygons(mask),
        "bbox": seem_io.mask_to_bbox(mask),
        "area": int(mask.sum()),
        "score": round(float(score), 6),
        "label": str(label),
    }


def encode_prediction(pred) -> list[dict]:
    return [encode_mask(pred.masks[i], pred.scores[i], pred.labels[i]) for i in range(len(pred))]


def largest_polygon(polygons: list[list[float]]) -> list[list[float]]:
    """The polygon of largest area as ``[[x, y], ...]`` (CVAT's format); ``[]`` for none."""
    best, best_area = [], -1.0
    for flat in polygons:
        xy = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
        if area > best_area:
            best, best_area = xy.tolist(), area
    return best
