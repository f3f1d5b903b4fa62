"""Point-sampled mask losses and matching costs (Mask2Former / PointRend).

Follows ``modeling/modules/point_features.py`` (``point_sample``,
``get_uncertain_point_coords_with_randomness``), ``modeling/modules/criterion.py`` (``sigmoid_ce_loss``,
``dice_loss``, ``calculate_uncertainty``) and ``modeling/modules/matcher.py`` (``batch_sigmoid_ce_loss``,
``batch_dice_loss``) of the official code.

Coordinates are normalised ``(x, y)`` in ``[0, 1]`` over the *whole extent* of a map (``align_corners=False``),
so one set of points addresses the same image locations in a ``h x w`` mask-logit map and in a ground-truth
mask at 4x that resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_points(
    n: int, num_points: int, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None = None
) -> Tensor:
    """``(n, num_points, 2)`` uniform points in ``[0, 1)``; drawn on the generator's device, then moved.

    Drawing on the generator's device keeps results identical for a CPU generator whatever ``device`` is.
    """
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, num_points, 2, generator=generator, device=gen_device, dtype=dtype).to(device)


def point_sample(input: Tensor, coords: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinearly sample ``input`` ``(N, C, H, W)`` at ``coords`` ``(N, P, 2)`` normalised ``(x, y)`` in [0, 1].

    Returns ``(N, C, P)``. Zero padding outside the map (``F.grid_sample`` default), like the official code.
    """
    out = F.grid_sample(input, 2.0 * coords[:, :, None].to(input.dtype) - 1.0, align_corners=align_corners)
    return out[..., 0]


def uncertain_point_coords(
    mask_logits: Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PointRend importance sampling: ``(N, 1, h, w)`` logits -> ``(N, num_points, 2)`` coords in [0, 1].

    Draws ``num_points * oversample_ratio`` uniform points, keeps the ``importance_sample_ratio`` share with
    the highest uncertainty ``-|logit|`` (computed on the *sampled* logits) and fills the rest with fresh
    uniform points. Not differentiable (call it on detached logits or under ``no_grad``).
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    n = mask_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    device, dtype = mask_logits.device, mask_logits.dtype
    coords = random_points(n, num_sampled, device, dtype, generator)
    uncertainty = -point_sample(mask_logits, coords)[:, 0].abs()  # (N, num_sampled)
    idx = uncertainty.topk(num_uncertain, dim=1).indices
    coords = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    extra = num_points - num_uncertain
    if extra > 0:
        coords = torch.cat([coords, random_points(n, extra, device, dtype, generator)], dim=1)
    return coords


def sigmoid_ce_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Per-mask mean binary cross-entropy, summed over masks and divided by ``num_masks``.

    ``logits``, ``targets`` ``(N, P)``; targets in [0, 1] (bilinear samples of a binary mask).
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """``sum_n [1 - (2 <p_n, t_n> + 1) / (|p_n| + |t_n| + 1)] / num_masks`` with ``p = sigmoid(logits)``.

    ``logits``, ``targets`` ``(N, P)``.
    """
    p = logits.sigmoid().flatten(1)
    numerator = 2 * (p * targets).sum(-1)
    denominator = p.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def batch_sigmoid_ce_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """Pairwise mean BCE: ``logits`` ``(Q, P)``, ``targets`` ``(N, P)`` -> ``(Q, N)``."""
    num_points = logits.shape[1]
    pos = F.softplus(-logits)  # BCE against target 1
    neg = F.softplus(logits)  # BCE against target 0
    return (pos @ targets.t() + neg @ (1 - targets).t()) / num_points


def batch_dice_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """Pairwise dice loss: ``logits`` ``(Q, P)``, ``targets`` ``(N, P)`` -> ``(Q, N)``."""
    p = logits.sigmoid()
    numerator = 2 * p @ targets.t()
    denominator = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)
