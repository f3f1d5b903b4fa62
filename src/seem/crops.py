"""Crop layers of everything mode: SAM's multi-crop geometry (``segment_anything/utils/amg.py``).

Layer 0 is the whole image; layer ``i >= 1`` splits it into ``2^i x 2^i`` overlapping crops, each encoded as an
image of its own (zooming in on small objects). Pure functions on boxes and masks: boxes are XYXY pixels of the
original image ``(H, W)`` (``x1`` / ``y1`` exclusive, so a crop ``[x0, y0, x1, y1]`` is ``image[y0:y1, x0:x1]``);
nothing here knows the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# SAM's ``is_box_near_crop_edge`` tolerance: a mask box within this many pixels of a crop edge touches it
CROP_EDGE_TOLERANCE = 20.0


def crop_boxes(size: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """SAM's ``generate_crop_boxes``: the whole image, then ``2^i x 2^i`` crops for each layer ``i`` in
    ``1..n_layers``.

    Neighbouring crops of layer ``i`` overlap by ``int(overlap_ratio * min(H, W) * 2 / 2^i)`` pixels (SAM: 512/1500
    of the shorter side at layer 1, half of that at layer 2) and together cover the image; the crops of one
    layer have one size (the last row / column may be clipped at the image edge).

    Args:
        size: ``(H, W)`` of the original image. n_layers: ``>= 0``. overlap_ratio: in ``[0, 1)``.

    Returns:
        ``(boxes, layers)``: ``(1 + sum_i 4^i, 4)`` int64 XYXY boxes, the whole image first, and ``(K,)`` int64
        layer of each box.

    Raises:
        ValueError: an empty ``size``, ``n_layers < 0`` or ``overlap_ratio`` outside ``[0, 1)``.
    """
    h, w = size
    if h < 1 or w < 1 or n_layers < 0 or not 0.0 <= overlap_ratio < 1.0:
        raise ValueError(f"crop_boxes needs a non-empty size, n_layers >= 0 and overlap_ratio in [0, 1), "
                         f"got {size}, {n_layers}, {overlap_ratio}")
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2 ** layer
        overlap = int(overlap_ratio * min(h, w) * 2 / n)
        crop_w, crop_h = (math.ceil((overlap * (n - 1) + side) / n) for side in (w, h))
        for x0 in ((crop_w - overlap) * i for i in range(n)):
            for y0 in ((crop_h - overlap) * j for j in range(n)):
                boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
                layers.append(layer)
    return np.asarray(boxes, dtype=np.int64), np.asarray(layers, dtype=np.int64)


def near_crop_edge(boxes: Tensor, crop: np.ndarray, size: tuple[int, int],
                   tolerance: float = CROP_EDGE_TOLERANCE) -> Tensor:
    """SAM's ``is_box_near_crop_edge``: which mask boxes touch an edge of their crop that is not an image edge
    (the object probably goes on outside the crop, so its mask is cut: SAM drops it).

    Args:
        boxes: ``(N, 4)`` float XYXY mask boxes in the *crop's* frame (pixels of the crop, as
            :func:`seem.mask_ops.masks_to_boxes` gives them). crop: ``[x0, y0, x1, y1]`` in the image.
        size: ``(H, W)`` of the original image. tolerance: pixels.

    Returns:
        ``(N,)`` bool.
    """
    x0, y0, x1, y1 = (float(v) for v in crop)
    full = boxes.float() + torch.tensor([x0, y0, x0, y0])
    crop_edges = torch.tensor([x0, y0, x1, y1])
    image_edges = torch.tensor([0.0, 0.0, float(size[1]), float(size[0])])
    at_crop = torch.isclose(full, crop_edges[None], atol=tolerance, rtol=0)
    at_image = torch.isclose(full, image_edges[None], atol=tolerance, rtol=0)
    return (at_crop & ~at_image).any(dim=1)


def uncrop_masks(masks: Tensor, crop: np.ndarray, size: tuple[int, int]) -> Tensor:
    """``(N, h, w)`` bool masks of the crop ``[x0, y0, x1, y1]`` (``h = y1 - y0``, ``w = x1 - x0``) ->
    ``(N, H, W)`` bool in the original image of ``size``, False outside the crop.

    Raises:
        ValueError: masks of another size than the crop, or a crop outside the image.
    """
    x0, y0, x1, y1 = (int(v) for v in crop)
    if tuple(masks.shape[-2:]) != (y1 - y0, x1 - x0) or x0 < 0 or y0 < 0 or x1 > size[1] or y1 > size[0]:
        raise ValueError(f"masks of {tuple(masks.shape[-2:])} do not fit the crop {[x0, y0, x1, y1]} of an image {size}")
    out = torch.zeros((masks.shape[0], *size), dtype=torch.bool)
    out[:, y0:y1, x0:x1] = masks
    return out


def uncrop_points(points: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """``(N, 2)`` ``(x, y)`` in the crop's frame -> the image's (NaN rows, the object queries', stay NaN)."""
    return points + np.asarray(crop[:2], dtype=np.float64)[None]
