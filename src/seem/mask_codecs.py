"""Mask encodings: COCO RLE, COCO polygons, XYWH boxes and COCO-results JSON.

Frames as in :mod:`seem.io`: masks ``(H, W)`` bool indexed ``mask[y, x]``; polygon coordinates are continuous
pixel coordinates (pixel ``(col, row)`` spans ``[col, col + 1) x [row, row + 1)``); boxes written to files are
COCO XYWH. ``pycocotools`` (RLE) and ``scikit-image`` (polygons) are imported on first use (extra ``io``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seem.errors import ImageError, require


def _as_mask(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ImageError(f"{what}: expected shape (H, W), got {mask.shape}")
    return mask.astype(bool, copy=False)


def _as_masks(masks: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    masks = np.asarray(masks).astype(bool, copy=False)
    if masks.ndim != 3:
        raise ImageError(f"masks: expected shape (K, H, W), got {masks.shape}")
    return masks


def _prepare_path(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of an ``(H, W)`` mask: ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    mask_utils = require("pycocotools.mask", "io")
    m = _as_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode COCO RLE (compressed ``counts`` str/bytes, or uncompressed list) to ``(H, W)`` bool."""
    mask_utils = require("pycocotools.mask", "io")
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if isinstance(counts, list):  # uncompressed: run lengths alternating 0/1, column-major
            if h < 0 or w < 0 or len(counts) > h * w + 1:
                raise ValueError(f"{len(counts)} runs for an {h}x{w} mask")
            # each run checked as a Python int first: a huge run would wrap an int64 sum back to H*W
            if any(not isinstance(r, (int, np.integer)) or r < 0 or r > h * w for r in counts):
                raise ValueError(f"run lengths must be integers in [0, H*W = {h * w}]")
            total = sum(int(r) for r in counts)
            if total != h * w:
                raise ValueError(f"run lengths sum to {total}, not H*W = {h * w}")
            runs = np.asarray(counts, dtype=np.int64)
            flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
            return flat.reshape(w, h).T.copy()
        encoded = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        with warnings.catch_warnings():  # pycocotools' Cython decode trips a NumPy 2 copy= deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_utils.decode(encoded).astype(bool)
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageError(f"invalid RLE ({exc}); expected {{'size': [H, W], 'counts': ...}}") from None


def mask_to_polygons(mask: np.ndarray, tolerance: float = 1.0) -> list[list[float]]:
    """Outer contours of an ``(H, W)`` mask as COCO polygons ``[x0, y0, x1, y1, ...]``.

    Coordinates are continuous pixel coordinates (pixel ``(c, r)`` spans ``[c, c+1) x [r, r+1)``).
    Each contour passes through the edge midpoints between mask and background pixel centres, so
    :func:`rasterize_polygon` gives the mask back (exactly with ``tolerance=0``). Holes are not
    represented (use RLE for exact masks); polygons with fewer than 3 points are dropped.
    ``tolerance`` is the Douglas-Peucker simplification distance in pixels.
    """
    measure = require("skimage.measure", "io")
    m = _as_mask(mask)
    polygons: list[list[float]] = []
    for contour in measure.find_contours(np.pad(m, 1).astype(np.float32), 0.5):
        rows, cols = contour[:, 0], contour[:, 1]
        # find_contours winds islands of the high value with positive shoelace area in (col, row).
        if 0.5 * np.sum(cols[:-1] * rows[1:] - cols[1:] * rows[:-1]) <= 0:
            continue  # a hole
        if tolerance > 0:
            contour = measure.approximate_polygon(contour, tolerance=tolerance)
        if len(contour) > 1 and np.array_equal(contour[0], contour[-1]):
            contour = contour[:-1]
        if len(contour) < 3:
            continue
        xy = contour[:, ::-1] - 0.5  # (row, col) in the padded index frame -> continuous (x, y)
        polygons.append([round(float(v), 3) for v in xy.ravel()])
    return polygons


def mask_to_bbox(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of the mask's pixels (``w = x_max - x_min + 1``); zeros when empty."""
    m = _as_mask(mask)
    ys, xs = np.nonzero(m)
    if xs.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


def save_coco_json(
    path: str | Path,
    masks: np.ndarray,
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    image_size: tuple[int, int],
    image_id: int | str = 0,
    category_ids: Sequence[int] | np.ndarray | None = None,
) -> list[dict]:
    """Write COCO-results records, one per mask, and return them.

    Each record: ``image_id``, ``category_name``, (``category_id`` when given), ``segmentation``
    (compressed RLE), ``bbox`` (XYWH), ``area`` (pixels) and ``score``. ``masks`` is ``(K, H, W)``
    bool at ``image_size = (H, W)``.
    """
    masks = _as_masks(masks) if len(masks) else np.zeros((0, *image_size), dtype=bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    k = masks.shape[0]
    if tuple(masks.shape[1:]) != (int(image_size[0]), int(image_size[1])):
        raise ImageError(f"masks are {masks.shape[1:]} (HxW) but image_size is {tuple(image_size)}")
    if len(scores) != k or len(labels) != k or (category_ids is not None and len(category_ids) != k):
        raise ImageError(f"need one score, label (and category id) per mask: {k} masks")
    records = []
    for i in range(k):
        record: dict = {"image_id": image_id, "category_name": str(labels[i])}
        if category_ids is not None:
            record["category_id"] = int(category_ids[i])
        record.update(
            segmentation=mask_to_rle(masks[i]),
            bbox=mask_to_bbox(masks[i]),
            area=int(masks[i].sum()),
            score=round(float(scores[i]), 6),
        )
        records.append(record)
    _prepare_path(path).write_text(json.dumps(records, indent=1))
    return records
