"""Pure operations on sets of masks: pairwise IoU, mask NMS, boxes, SAM's stability score and point grids.

Shared by :mod:`seem.find` (every instance of a phrase) and :mod:`seem.automatic` (everything mode). Masks are
``(N, H, W)`` bool tensors in one frame (usually the original image: row = y, column = x in pixels); nothing
here knows the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def mask_iou_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``(N, H, W)`` x ``(M, H, W)`` bool -> ``(N, M)`` float32 IoU (0 where both masks are empty).

    One matrix product of the flattened masks (``N * M`` intersections without an ``N x M x H x W`` tensor).
    """
    fa, fb = a.flatten(1).float(), b.flatten(1).float()
    inter = fa @ fb.t()
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


NMS_MAX_PIXELS = 1 << 18  # masks larger than this are compared on a strided subsample in mask_nms


def mask_nms(masks: Tensor, scores: Tensor, iou_threshold: float, max_keep: int | None = None,
             max_pixels: int = NMS_MAX_PIXELS) -> Tensor:
    """Greedy non-maximum suppression on masks: keep the best-scored mask, drop every mask whose mask IoU
    with a kept one is above ``iou_threshold``, repeat (the NMS of detectors and of SAM's automatic mask
    generator, with mask IoU instead of box IoU).

    Args:
        masks: ``(N, H, W)`` bool. scores: ``(N,)`` float, higher is better.
        iou_threshold: in ``[0, 1]``; 1 keeps every distinct mask.
        max_keep: stop after this many kept masks (None: no limit).
        max_pixels: masks of more pixels are compared on every ``s``-th row and column, ``s`` the smallest
            stride that brings them under this (bounded memory for the ``N x N`` IoU of large images).

    Returns:
        ``(K,)`` int64 indices into ``masks``, by descending score (ties: lower index first).

    Raises:
        ValueError: ``masks`` and ``scores`` of different lengths, or a threshold outside ``[0, 1]``.
    """
    if masks.shape[0] != scores.shape[0]:
        raise ValueError(f"{masks.shape[0]} masks but {scores.shape[0]} scores")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    if masks.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.from_numpy(np.argsort(-scores.detach().float().cpu().numpy(), kind="stable"))
    h, w = masks.shape[-2:]
    stride = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    small = masks[order][:, ::stride, ::stride]
    iou = mask_iou_matrix(small, small).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64)]


def masks_to_boxes(masks: Tensor) -> Tensor:
    """``(N, H, W)`` bool -> ``(N, 4)`` float32 XYXY boxes in pixels, continuous convention (pixel ``(c, r)``
    covers ``[c, c + 1) x [r, r + 1)``, so a one-pixel mask at (x, y) gives ``[x, y, x + 1, y + 1]``); an empty
    mask gives zeros."""
    n = masks.shape[0]
    out = torch.zeros(n, 4, dtype=torch.float32)
    if n == 0:
        return out
    rows, cols = masks.any(2).cpu(), masks.any(1).cpu()  # (N, H), (N, W)
    for i in range(n):
        ys, xs = torch.nonzero(rows[i]).flatten(), torch.nonzero(cols[i]).flatten()
        if len(ys):
            out[i] = torch.tensor([float(xs[0]), float(ys[0]), float(xs[-1]) + 1, float(ys[-1]) + 1])
    return out


def stability_score(mask_logits: Tensor, threshold: float = 0.0, offset: float = 1.0) -> Tensor:
    """SAM's stability score (``segment_anything/utils/amg.py::calculate_stability_score``): the IoU of the
    masks ``logits > threshold + offset`` and ``logits > threshold - offset``; near 1 when the mask's border
    does not move as the threshold does.

    Args:
        mask_logits: ``(N, H, W)`` float logits (any frame). threshold / offset: logit values.

    Returns:
        ``(N,)`` float32 in ``[0, 1]`` (1 for a mask empty at both thresholds).
    """
    high = (mask_logits > threshold + offset).flatten(1).sum(1).float()
    low = (mask_logits > threshold - offset).flatten(1).sum(1).float()
    return torch.where(low > 0, high / low.clamp(min=1.0), torch.ones_like(low))


def point_grid(points_per_side: int, size: tuple[int, int]) -> np.ndarray:
    """``(n*n, 2)`` float64 ``(x, y)`` pixel centres of an ``n x n`` grid over an image of ``size`` ``(H, W)``,
    each point at the centre of its cell (SAM's ``build_point_grid``, scaled to pixels).

    Raises:
        ValueError: ``points_per_side < 1``.
    """
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
    h, w = size
    steps = (np.arange(points_per_side) + 0.5) / points_per_side
    xs, ys = np.meshgrid(steps * w, steps * h)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)
