"""User prompts (original image frame) -> positive / negative region masks per object (model frame).

SEEM v1 has one visual sampler for every non-text prompt (paper §3.2): each prompt becomes a region
mask from which at most 512 points are sampled. So:

* a **click** is a 3x3 square around the clicked pixel (the official click dilation,
  ``STROKE_SAMPLER.DILATION 3``), positive or negative;
* a **box** is the filled rectangle (v1 has no box encoder; official issue #42);
* a **scribble** is a stroke mask, or a polyline rasterised 3 px wide;
* a **polygon** is its filled interior; a **mask** is used as given.

Objects: a points array ``(N, 2)`` is one object (all its clicks, positive and negative, refine the
same object, as in SAM); ``(K, N, 2)`` is K objects. Boxes ``(K, 4)``, scribbles, polygons and masks
define one object each. When several prompt types are given they must define the same number of
objects K and are merged object by object (e.g. one box + clicks = one object).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .errors import PromptError
from .transforms import ImageFrame

CLICK_RADIUS = 1  # 3x3 square


@dataclass(frozen=True)
class RegionPrompts:
    """``positive``/``negative`` ``(K, H_pad, W_pad)`` bool in the padded model frame."""

    positive: Tensor
    negative: Tensor

    @property
    def num_objects(self) -> int:
        return int(self.positive.shape[0])


def _numbers(value, what: str, shape_hint: str) -> np.ndarray:
    """``value`` as a non-empty float64 array, or a PromptError naming the argument."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError(f"{what} must be numbers shaped {shape_hint}, got {value!r:.80}") from None
    if a.size == 0:
        raise PromptError(f"{what} is empty; expected {shape_hint}")
    return a


def _finite(a: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        raise PromptError(f"{what} contain non-finite coordinates")
    return a


def _check_inside(points_xy: np.ndarray, frame: ImageFrame, what: str) -> None:
    h, w = frame.original_size
    bad = (points_xy[..., 0] < 0) | (points_xy[..., 0] > w) | (points_xy[..., 1] < 0) | (points_xy[..., 1] > h)
    if np.any(bad):
        first = points_xy[bad][0]
        raise PromptError(
            f"{what}: point ({first[0]:g}, {first[1]:g}) is outside the image (width {w}, height {h}); "
            "coordinates are (x, y) pixels of the original image"
        )


def _clicks(points: np.ndarray, labels: np.ndarray, frame: ImageFrame) -> tuple[np.ndarray, np.ndarray]:
    """(K, N, 2) points + (K, N) labels -> positive and negative (K, h, w) masks in the resized frame."""
    k = points.shape[0]
    h, w = frame.resized_size
    pos = np.zeros((k, h, w), dtype=bool)
    neg = np.zeros((k, h, w), dtype=bool)
    xy = frame.points_to_resized(points.reshape(-1, 2)).reshape(points.shape)
    for obj in range(k):
        for (x, y), lab in zip(xy[obj], labels[obj]):
            cx, cy = min(int(x), w - 1), min(int(y), h - 1)
            target = pos if lab else neg
            target[obj, max(cy - CLICK_RADIUS, 0) : cy + CLICK_RADIUS + 1, max(cx - CLICK_RADIUS, 0) : cx + CLICK_RADIUS + 1] = True
    return pos, neg


def _boxes(boxes: np.ndarray, frame: ImageFrame) -> np.ndarray:
    h, w = frame.original_size
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise PromptError(f"boxes must be (K, 4) XYXY pixels, got shape {boxes.shape}")
    _finite(boxes, "boxes")
    _check_inside(boxes.reshape(-1, 2), frame, "box")
    if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
        raise PromptError(f"boxes must have x1 > x0 and y1 > y0 (XYXY), got {boxes.tolist()}")
    rh, rw = frame.resized_size
    sx, sy = frame.scale_xy
    out = np.zeros((boxes.shape[0], rh, rw), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        c0, r0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
        c1, r1 = max(int(np.ceil(x1 * sx)), c0 + 1), max(int(np.ceil(y1 * sy)), r0 + 1)
        out[i, r0:r1, c0:c1] = True
    return out


def _region_masks(masks: Sequence[np.ndarray] | np.ndarray, frame: ImageFrame, what: str) -> np.ndarray:
    try:
        arr = [np.asarray(m) for m in masks] if not isinstance(masks, np.ndarray) or masks.ndim == 3 else [masks]
    except TypeError:
        raise PromptError(f"{what}s must be (H, W) arrays, got {type(masks).__name__}") from None
    if not arr:
        raise PromptError(f"no {what} given (empty list)")
    out = []
    for i, m in enumerate(arr):
        if m.shape != frame.original_size:
            raise PromptError(f"{what} {i} has size {m.shape}, the image is {frame.original_size} (H, W)")
        if m.dtype.kind not in "biuf":
            raise PromptError(f"{what} {i} must be a boolean or numeric array, got dtype {m.dtype}")
        if m.dtype.kind == "f" and not np.isfinite(m).all():
            raise PromptError(f"{what} {i} contains NaN or infinite values")
        m = m.astype(bool)
        if not m.any():
            raise PromptError(f"{what} {i} is empty (no pixel set)")
        out.append(m)
    return np.stack(out)


def _drawn(shapes: Sequence, frame: ImageFrame, what: str, fill: bool) -> np.ndarray:
    """Scribbles / polygons given as masks ``(H, W)`` or as point lists ``(M, 2)``."""
    from .rasterize import rasterize_polygon, rasterize_polyline

    masks = []
    for i, s in enumerate(shapes):
        s = np.asarray(s)
        if s.ndim == 2 and s.shape == frame.original_size and s.shape[1] != 2:
            masks.append(s)
            continue
        if s.ndim != 2 or s.shape[-1] != 2:
            raise PromptError(f"{what} {i} must be an (H, W) mask or an (M, 2) array of (x, y) points, got {s.shape}")
        _finite(s.astype(np.float64), f"{what} {i}")
        _check_inside(s.astype(np.float64), frame, f"{what} {i}")
        draw = rasterize_polygon if fill else rasterize_polyline
        masks.append(draw(s, frame.original_size))
    return _region_masks(masks, frame, what)


def build_region_prompts(
    frame: ImageFrame,
    points=None,
    point_labels=None,
    boxes=None,
    scribbles=None,
    polygons=None,
    masks=None,
    mask_name: str = "mask",
) -> RegionPrompts | None:
    """Convert user prompts to region masks in the model frame; ``None`` when there is no visual prompt.

    Raises:
        PromptError: malformed arrays, points/boxes outside the image, empty scribbles or masks, or
            prompt types that disagree on the number of objects.
    """
    rh, rw = frame.resized_size
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, positive (K,h,w), negative (K,h,w))
    if point_labels is not None and points is None:
        raise PromptError("point_labels given without points")
    if points is not None:
        pts = _finite(_numbers(points, "points", "(N, 2) or (K, N, 2) (x, y) pixels"), "points")
        if pts.ndim == 2:
            pts = pts[None]
        if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] == 0:
            raise PromptError(f"points must be (N, 2) or (K, N, 2) (x, y) pixels, got shape {np.shape(points)}")
        try:
            labels = np.ones(pts.shape[:2], dtype=np.int64) if point_labels is None else np.asarray(point_labels, dtype=np.float64)
        except (TypeError, ValueError):
            labels = None
        labels = labels.reshape(pts.shape[:2]) if labels is not None and labels.size == pts.shape[0] * pts.shape[1] else None
        if labels is None or not np.isin(labels, (0, 1)).all():
            raise PromptError(f"point_labels must hold one 1 (positive) or 0 (negative) per point; got {point_labels!r}")
        _check_inside(pts, frame, "points")
        pos, neg = _clicks(pts, labels, frame)
        if not pos.any(axis=(1, 2)).all() and boxes is None and scribbles is None and polygons is None and masks is None:
            raise PromptError("every object needs at least one positive click (label 1) or another positive prompt")
        parts.append(("points", pos, neg))
    if boxes is not None:
        b = _numbers(boxes, "boxes", "(K, 4) XYXY pixels")
        if b.ndim == 1 and b.size == 4:
            b = b[None]
        b = _boxes(b, frame)
        parts.append(("boxes", b, np.zeros_like(b)))
    for name, value, fill in (("scribbles", scribbles, False), ("polygons", polygons, True)):
        if value is not None:
            seq = [value] if (isinstance(value, np.ndarray) and value.ndim == 2) else list(value)
            if not seq:
                raise PromptError(f"{name} is an empty list")
            m = _resize_masks(_drawn(seq, frame, name[:-1], fill), frame)
            parts.append((name, m, np.zeros_like(m)))
    if masks is not None:
        m = _resize_masks(_region_masks(masks, frame, mask_name), frame)
        parts.append(("masks", m, np.zeros_like(m)))
    if not parts:
        return None
    counts = {name: p.shape[0] for name, p, _ in parts}
    if len(set(counts.values())) != 1:
        raise PromptError(f"prompt types define different numbers of objects: {counts}")
    neg = np.logical_or.reduce([n for _, _, n in parts])
    # a negative click carves its pixels out of the object's positive regions (box, scribble, polygon, mask):
    # "not here" inside a box must reach the model (a negative inside the positive region used to be dropped)
    pos = np.logical_or.reduce([p for _, p, _ in parts]) & ~neg
    if not pos.reshape(pos.shape[0], -1).any(axis=1).all():
        raise PromptError("an object has no positive prompt pixel left after resizing")
    return RegionPrompts(_pad(pos, frame), _pad(neg, frame))


def _resize_masks(masks: np.ndarray, frame: ImageFrame) -> np.ndarray:
    if masks.shape[-2:] == frame.resized_size:
        return masks
    return frame.mask_to_model(masks)[:, : frame.resized_size[0], : frame.resized_size[1]].numpy()


def _pad(masks: np.ndarray, frame: ImageFrame) -> Tensor:
    out = torch.zeros(masks.shape[0], *frame.padded_size, dtype=torch.bool)
    out[:, : masks.shape[1], : masks.shape[2]] = torch.from_numpy(masks)
    return out
