"""Matching predictions to ground truth: Mask2Former Hungarian matching and SEEM's separate matching.

Follows ``modeling/modules/matcher.py::HungarianMatcher`` of the official code:

* :func:`match_generic` - ``memory_efficient_forward``: object queries vs panoptic segments, class cost
  ``-p[gt class]`` plus point-sampled BCE and dice costs.
* :func:`match_spatial` - ``spatial_forward`` (paper Eq. 5): visual prompts are matched through the
  queries' **mask embeddings** (``mask_embed @ positive_mean^T``), each object only among its own queries.
* :func:`match_grounding` - ``grounding_forward`` (paper Eq. 6): text prompts are matched through the
  queries' **class embeddings** (clamped-temperature cosine similarity with the sentence embedding).

All functions are pure, work on one image, run without gradient and take a ``torch.Generator`` for the
shared random points, so a seeded generator gives a deterministic match. The "IoU_mask" term of the paper
is, in code, the BCE + dice cost on ``num_points`` random points shared by all predictions and targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seem.postprocess import grounding_similarity
from seem.train.point_losses import batch_dice_cost, batch_sigmoid_ce_cost, point_sample, random_points


def _linear_sum_assignment(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Hungarian matching on a ``(Q, N)`` cost; returns ``(rows, cols)`` int64 ordered by column."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("seem.train needs SciPy for Hungarian matching: pip install scipy") from e
    rows, cols = linear_sum_assignment(cost.detach().float().cpu().numpy())
    rows = torch.as_tensor(rows, dtype=torch.int64)
    cols = torch.as_tensor(cols, dtype=torch.int64)
    order = cols.argsort()
    return rows[order], cols[order]


def point_mask_costs(
    mask_logits: Tensor, gt_masks: Tensor, num_points: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Pairwise BCE and dice costs ``(Q, N)`` on ``num_points`` random points shared by all masks.

    Args:
        mask_logits: ``(Q, h, w)`` predicted mask logits (any resolution).
        gt_masks: ``(N, H, W)`` bool/float ground truth (any resolution covering the same image extent,
            e.g. the padded input at 4x the logits); sampled in normalised coordinates.
    """
    logits = mask_logits.detach().float()
    coords = random_points(1, num_points, logits.device, logits.dtype, generator)
    pred = point_sample(logits[:, None], coords.expand(logits.shape[0], -1, -1))[:, 0]
    gt = gt_masks.to(device=logits.device, dtype=logits.dtype)
    tgt = point_sample(gt[:, None], coords.expand(gt.shape[0], -1, -1))[:, 0]
    return batch_sigmoid_ce_cost(pred, tgt), batch_dice_cost(pred, tgt)


def _empty(device: torch.device) -> Tensor:
    return torch.zeros(0, dtype=torch.int64, device=device)


@torch.no_grad()
def match_generic(
    class_logits: Tensor,
    mask_logits: Tensor,
    gt_labels: Tensor,
    gt_masks: Tensor,
    cost_class: float = 2.0,
    cost_mask: float = 5.0,
    cost_dice: float = 5.0,
    num_points: int = 12544,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Mask2Former Hungarian matching of object queries to panoptic segments (one image).

    Args:
        class_logits: ``(Q, C+1)`` logits; the last column is "no object".
        mask_logits: ``(Q, h, w)``.
        gt_labels: ``(N,)`` int64 class ids in ``[0, C)``.
        gt_masks: ``(N, H, W)`` bool.
        cost_class, cost_mask, cost_dice: weights of ``-softmax(class_logits)[:, label]``, point BCE, point
            dice (official: the loss weights ``CLASS_WEIGHT 2``, ``MASK_WEIGHT 5``, ``DICE_WEIGHT 5``).

    Returns:
        ``(query_idx, gt_idx)`` int64 of length ``min(Q, N)`` on the input device, ordered by ``gt_idx``.
    """
    device = mask_logits.device
    if gt_labels.numel() == 0 or class_logits.shape[0] == 0:
        return _empty(device), _empty(device)
    prob = class_logits.detach().float().softmax(-1)
    cost = -cost_class * prob[:, gt_labels.to(prob.device)]
    bce, dice = point_mask_costs(mask_logits, gt_masks, num_points, generator)
    cost = cost + cost_mask * bce + cost_dice * dice
    rows, cols = _linear_sum_assignment(cost)
    return rows.to(device), cols.to(device)


@torch.no_grad()
def match_spatial(
    mask_embed: Tensor,
    positive_mean: Tensor,
    query_object: Tensor,
    mask_logits: Tensor,
    gt_masks: Tensor,
    cost_class: float = 2.0,
    cost_mask: float = 5.0,
    cost_dice: float = 5.0,
    num_points: int = 12544,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Separate matching for visual prompts (paper Eq. 5; official ``spatial_forward``).

    ``logits = mask_embed @ positive_mean^T``; queries of other objects get ``-inf`` before the softmax over
    queries and ``+inf`` mask costs. The cost is ``-softmax * cost_class + cost_mask * BCE + cost_dice * dice``.
    Because each object may only take a query of its own (disjoint) group, the Hungarian solution of the
    official code is the per-object argmin of this restricted cost, which is what is computed here.

    Args:
        mask_embed: ``(Ns, Dm)`` mask embeddings of the spatial queries.
        positive_mean: ``(K, Dm)`` mean positive prompt feature per object.
        query_object: ``(Ns,)`` int64 object index of each spatial query.
        mask_logits: ``(Ns, h, w)`` mask logits of the spatial queries.
        gt_masks: ``(K, H, W)`` ground truth per object, in the order of the prompt's objects.
        cost_class, cost_mask, cost_dice: official uses the generic weights 2/5/5 (its ``COST_SPATIAL`` is
            ignored, SEEM-REFERENCE.md §2.2).

    Returns:
        ``(K,)`` int64 index into the spatial queries, one per object.

    Raises:
        ValueError: an object has no spatial query, or the shapes disagree.
    """
    k = positive_mean.shape[0]
    if gt_masks.shape[0] != k:
        raise ValueError(f"{gt_masks.shape[0]} ground-truth masks for {k} prompted objects")
    if k == 0:
        return _empty(mask_embed.device)
    device = mask_embed.device
    own = query_object.to(device)[:, None] == torch.arange(k, device=device)[None, :]  # (Ns, K)
    if not bool(own.any(0).all()):
        raise ValueError("every prompted object needs at least one spatial query")
    logits = mask_embed.detach().float() @ positive_mean.detach().float().t()
    prob = logits.masked_fill(~own, float("-inf")).softmax(0)
    bce, dice = point_mask_costs(mask_logits, gt_masks, num_points, generator)
    cost = -cost_class * prob + cost_mask * bce + cost_dice * dice
    cost = cost.masked_fill(~own, float("inf"))
    return cost.argmin(0)


@torch.no_grad()
def match_grounding(
    class_embed: Tensor,
    sentence_embed: Tensor,
    logit_scale: Tensor,
    mask_logits: Tensor,
    gt_masks: Tensor,
    cost_class: float = 2.0,
    cost_mask: float = 5.0,
    cost_dice: float = 5.0,
    num_points: int = 12544,
    generator: torch.Generator | None = None,
    max_scale: float = 100.0,
) -> tuple[Tensor, Tensor]:
    """Separate matching for text prompts (paper Eq. 6; official ``grounding_forward``).

    ``similarity = min(exp(logit_scale), max_scale) * cos(class_embed, sentence_embed)`` (``vl_similarity``);
    cost ``= -softmax_over_queries(similarity) * cost_class + cost_mask * BCE + cost_dice * dice``; Hungarian.

    Args:
        class_embed: ``(Qg, Dp)`` class embeddings of the grounding queries.
        sentence_embed: ``(S, Dp)`` sentence (end-of-text) embeddings, not necessarily normalised.
        logit_scale: scalar tensor, the text encoder's raw ``logit_scale`` (used as ``exp``).
        mask_logits: ``(Qg, h, w)``.
        gt_masks: ``(S, H, W)`` ground truth per sentence.

    Returns:
        ``(query_idx, sentence_idx)`` int64 of length ``min(Qg, S)``, ordered by ``sentence_idx``.
    """
    device = mask_logits.device
    s = sentence_embed.shape[0]
    if gt_masks.shape[0] != s:
        raise ValueError(f"{gt_masks.shape[0]} ground-truth masks for {s} sentences")
    if s == 0 or class_embed.shape[0] == 0:
        return _empty(device), _empty(device)
    sim = grounding_similarity(
        class_embed.detach().float(), sentence_embed.detach().float(), logit_scale.detach().float(), max_scale
    )
    bce, dice = point_mask_costs(mask_logits, gt_masks, num_points, generator)
    cost = -cost_class * sim.softmax(0) + cost_mask * bce + cost_dice * dice
    rows, cols = _linear_sum_assignment(cost)
    return rows.to(device), cols.to(device)
