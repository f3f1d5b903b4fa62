"""SEEM training losses for one image: generic, visual-prompt (spatial) and text-prompt (grounding) terms.

Follows ``modeling/modules/criterion.py::SetCriterion`` (``loss_labels``, ``loss_masks``, ``loss_spatials``,
``loss_groundings``, ``forward``) and the weight dictionary of ``seem_model_v1.py::from_config``
(SEEM-REFERENCE.md §2.2-2.3). Every prediction set of the decoder is supervised (deep supervision) and
matched anew. Keys follow the official names: ``loss_{group}_{term}_{i}`` with ``i = 0`` the final prediction
set and ``i = L`` the one made from the raw queries before layer 1. Values are already multiplied by their
weights; ``"loss"`` is their sum.

Per prediction set:

* **mask** (object queries vs all panoptic segments; :func:`match_generic`): softmax CE over ``C+1`` classes
  with weight ``no_object_weight`` on the no-object class (the last column) for unmatched queries; BCE and
  dice on ``num_points`` importance-sampled points of each matched mask, divided by ``max(N, 1)``.
* **spatial** (spatial queries vs the K visual-prompted objects; :func:`match_spatial`, paper Eq. 5): CE over
  the object's own spatial queries of ``mask_embed @ positive_mean^T`` with the matched query as target
  (mean over objects); BCE / dice of the matched query's mask, divided by the number of objects. Objects with
  an empty ground-truth mask are skipped (official ``keep``).
* **grounding** (grounding queries vs the S sentences; :func:`match_grounding`, paper Eq. 6): per sentence, CE
  over the grounding queries of ``min(exp(logit_scale), 100) * cos(class_embed, sentence)`` with the matched
  query as target (duplicate sentences share their targets); BCE / dice divided by the number of sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.modeling.decoder import DecoderOutput, HeadOutput, QueryGroup
from seem.postprocess import grounding_similarity, spatial_query_objects
from seem.train.matcher import match_generic, match_grounding, match_spatial
from seem.train.point_losses import dice_loss, point_sample, sigmoid_ce_loss, uncertain_point_coords


@dataclass(frozen=True)
class LossWeights:
    """Loss weights, defaults from the v1 configs (``MODEL.DECODER.*``). Also the matching cost weights."""

    mask_ce: float = 2.0  # CLASS_WEIGHT; also the class cost of every matcher
    mask_bce: float = 5.0  # MASK_WEIGHT; also the BCE cost of every matcher
    mask_dice: float = 5.0  # DICE_WEIGHT; also the dice cost of every matcher
    spatial_ce: float = 0.4  # SCLASS_WEIGHT (paper: 0.2)
    spatial_bce: float = 1.0  # SMASK_WEIGHT (paper: 2)
    spatial_dice: float = 1.0  # SDICE_WEIGHT (paper: 2)
    grounding_ce: float = 0.4  # GCLASS_WEIGHT (paper: 0.2)
    grounding_bce: float = 1.0  # GMASK_WEIGHT (paper: 2)
    grounding_dice: float = 1.0  # GDICE_WEIGHT (paper: 2)


@dataclass(frozen=True)
class ImageTargets:
    """Ground truth of one image. Masks may be at any resolution covering the padded input (e.g. 4x logits).

    Attributes:
        labels: ``(N,)`` int64 class id of every panoptic segment, indexing the vocabulary behind
            ``class_logits_fn`` (whose last column is "no object").
        masks: ``(N, H, W)`` bool segment masks.
        spatial_masks: ``(K, H, W)`` bool ground truth of the K visual-prompted objects, in the order of the
            visual prompt's objects; None = no visual prompt this step.
        grounding_masks: ``(S, H, W)`` bool ground truth of the S referring expressions; None = no text.
        sentence_embeddings: ``(S, Dp)`` the sentences' embeddings (``TextPrompt.sentence_embeddings``).
        grounding_groups: ``(S,)`` int64, optional; sentences with the same id are duplicates and share
            their CE targets (official ``grounding_hash``).
        grounding_ce_scale: factor on this image's grounding CE (official ``GROUNDING.TEXT_WEIGHT`` 2.0 for
            referring sentences, ``GROUNDING.CLASS_WEIGHT`` 0.5 for the class-name fallback).
        generic: whether object-query (generic) losses apply; False for class-agnostic images, whose
            unlabelled objects must not be taught as "no object".
    """

    labels: Tensor
    masks: Tensor
    spatial_masks: Tensor | None = None
    grounding_masks: Tensor | None = None
    sentence_embeddings: Tensor | None = None
    grounding_groups: Tensor | None = None
    grounding_ce_scale: float = 1.0
    generic: bool = True  # False: the image has no object-query labels (class-agnostic data); skip that group

    def __post_init__(self) -> None:
        if self.labels.ndim != 1 or self.masks.ndim != 3 or self.labels.shape[0] != self.masks.shape[0]:
            raise ValueError(f"labels {tuple(self.labels.shape)} and masks {tuple(self.masks.shape)} disagree")
        if self.spatial_masks is not None and self.spatial_masks.ndim != 3:
            raise ValueError(f"spatial_masks must be (K, H, W), got {tuple(self.spatial_masks.shape)}")
        if (self.grounding_masks is None) != (self.sentence_embeddings is None):
            raise ValueError("grounding_masks and sentence_embeddings go together")
        if self.grounding_masks is not None:
            assert self.sentence_embeddings is not None  # checked just above: they go together
            s = self.grounding_masks.shape[0]
            if self.grounding_masks.ndim != 3 or self.sentence_embeddings.ndim != 2 or self.sentence_embeddings.shape[0] != s:
                raise ValueError(
                    f"grounding_masks {tuple(self.grounding_masks.shape)} and sentence_embeddings "
                    f"{tuple(self.sentence_embeddings.shape)} disagree"
                )
            if self.grounding_groups is not None and tuple(self.grounding_groups.shape) != (s,):
                raise ValueError(f"grounding_groups must be ({s},), got {tuple(self.grounding_groups.shape)}")


class _MatchCosts(TypedDict):
    """Keyword arguments shared by the three matchers."""

    cost_class: float
    cost_mask: float
    cost_dice: float
    num_points: int


class SeemCriterion(nn.Module):
    """SEEM loss for one image (the trainer sums or averages over images).

    Args:
        weights: loss weights; ``mask_ce`` / ``mask_bce`` / ``mask_dice`` are also the matching costs of all
            three matchers (official ``HungarianMatcher`` set-up).
        num_points: points per mask for matching and losses (``TRAIN_NUM_POINTS``).
        oversample_ratio, importance_sample_ratio: PointRend importance sampling for the losses.
        no_object_weight: CE weight of the no-object class (``NO_OBJECT_WEIGHT``).
    """

    def __init__(
        self,
        weights: LossWeights = LossWeights(),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        no_object_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.weights = weights
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.no_object_weight = no_object_weight

    @property
    def _costs(self) -> _MatchCosts:
        w = self.weights
        return {"cost_class": w.mask_ce, "cost_mask": w.mask_bce, "cost_dice": w.mask_dice, "num_points": self.num_points}

    def forward(
        self,
        output: DecoderOutput,
        class_logits_fn: Callable[[Tensor], Tensor],
        targets: ImageTargets,
        logit_scale: Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Losses of every prediction set of one image.

        Args:
            output: decoder output for one image (batch size 1).
            class_logits_fn: ``(Q, Dp)`` class embeddings -> ``(Q, C+1)`` logits over the step's vocabulary
                plus "no object" last (e.g. ``lambda e: model.class_logits(e, vocab_with_background)``).
            targets: the image's ground truth.
            logit_scale: the text encoder's raw ``logit_scale`` (for the grounding similarity).
            generator: source of the random points (matching and losses).

        Returns:
            ``{"loss_mask_ce_0": ..., ..., "loss": total}``; spatial / grounding keys only when the targets
            have visual / text prompts. Every value is a weighted scalar.
        """
        if output.predictions[0].masks.shape[0] != 1:
            raise ValueError(f"the criterion works on one image, got a batch of {output.predictions[0].masks.shape[0]}")
        if targets.spatial_masks is not None and (output.visual is None or QueryGroup.SPATIAL not in output.ranges):
            raise ValueError("spatial targets given but the decoder ran without a visual prompt")
        if targets.grounding_masks is not None and QueryGroup.GROUNDING not in output.ranges:
            raise ValueError("grounding targets given but the decoder ran without a text prompt")
        losses: dict[str, Tensor] = {}
        for i, head in enumerate(reversed(output.predictions)):
            terms = self._generic(head, output.ranges, class_logits_fn, targets, generator) if targets.generic else {}
            if targets.spatial_masks is not None:
                terms.update(self._spatial(head, output, targets.spatial_masks, generator))
            if targets.grounding_masks is not None:
                terms.update(self._grounding(head, output.ranges, targets, logit_scale, generator))
            for name, value in terms.items():
                losses[f"loss_{name}_{i}"] = value * getattr(self.weights, name)
        if not losses:  # nothing to supervise in this image: a zero that keeps the graph connected
            losses["loss_none_0"] = output.predictions[-1].masks.sum() * 0.0
        losses["loss"] = torch.stack(list(losses.values())).sum()
        return losses

    # ------------------------------------------------------------------ shared
    def _mask_losses(
        self, pred: Tensor, gt: Tensor, num_masks: float, anchor: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Point-sampled BCE and dice of matched ``pred`` ``(M, h, w)`` vs ``gt`` ``(M, H, W)`` (official
        ``loss_masks``). ``anchor`` keeps the graph connected (zero loss) when ``M == 0``."""
        if pred.shape[0] == 0:
            zero = anchor.sum() * 0.0
            return zero, zero
        pred = pred[:, None]
        with torch.no_grad():
            coords = uncertain_point_coords(
                pred.detach(), self.num_points, self.oversample_ratio, self.importance_sample_ratio, generator
            )
            labels = point_sample(gt[:, None].to(device=pred.device, dtype=pred.dtype), coords)[:, 0]
        logits = point_sample(pred, coords)[:, 0]
        return sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)

    # ------------------------------------------------------------------ generic
    def _generic(self, head: HeadOutput, ranges, class_logits_fn, targets: ImageTargets, generator) -> dict[str, Tensor]:
        s, e = ranges[QueryGroup.OBJECT]
        masks = head.masks[0, s:e]
        logits = class_logits_fn(head.class_embed[0, s:e]).float()  # (Q, C+1)
        num_classes = logits.shape[-1] - 1
        labels = targets.labels.to(logits.device)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"labels must be in [0, {num_classes}) (the last logit column is no-object)")
        q_idx, g_idx = match_generic(logits, masks, labels, targets.masks, generator=generator, **self._costs)
        target_classes = torch.full((logits.shape[0],), num_classes, dtype=torch.int64, device=logits.device)
        target_classes[q_idx] = labels[g_idx]
        class_weight = torch.ones(num_classes + 1, device=logits.device)
        class_weight[-1] = self.no_object_weight
        ce = F.cross_entropy(logits, target_classes, class_weight)
        gt = targets.masks.to(masks.device)[g_idx]
        bce, dice = self._mask_losses(masks[q_idx], gt, max(labels.numel(), 1), head.masks, generator)
        return {"mask_ce": ce, "mask_bce": bce, "mask_dice": dice}

    # ------------------------------------------------------------------ visual prompts
    def _spatial(self, head: HeadOutput, output: DecoderOutput, gt_masks: Tensor, generator) -> dict[str, Tensor]:
        visual = output.visual
        assert visual is not None  # forward calls this only when the decoder ran with a visual prompt
        k = visual.num_objects
        if gt_masks.shape[0] != k:
            raise ValueError(f"{gt_masks.shape[0]} spatial ground-truth masks for {k} prompted objects")
        s, e = output.ranges[QueryGroup.SPATIAL]
        device = head.mask_embed.device
        query_object = spatial_query_objects(e - s, k, device)
        gt_masks = gt_masks.to(device)
        kept = gt_masks.flatten(1).any(1).nonzero()[:, 0]  # objects with a non-empty ground truth
        if kept.numel() == 0:
            zero = head.mask_embed.sum() * 0.0 + head.masks.sum() * 0.0
            return {"spatial_ce": zero, "spatial_bce": zero, "spatial_dice": zero}
        # renumber queries by kept object (-1 = query of a skipped object: belongs to no kept object)
        remap = torch.full((k,), -1, dtype=torch.int64, device=device)
        remap[kept] = torch.arange(kept.numel(), device=device)
        query_kept = remap[query_object]
        emb = head.mask_embed[0, s:e]
        masks = head.masks[0, s:e]
        positive = visual.positive_mean[0][kept].to(emb.dtype)
        idx = match_spatial(emb, positive, query_kept, masks, gt_masks[kept], generator=generator, **self._costs)
        own = query_kept[:, None] == torch.arange(kept.numel(), device=device)[None, :]
        logits = (emb @ positive.t()).float().masked_fill(~own, float("-inf"))  # (Ns, K')
        ce = F.cross_entropy(logits.t(), idx)
        bce, dice = self._mask_losses(masks[idx], gt_masks[kept], kept.numel(), head.masks, generator)
        return {"spatial_ce": ce, "spatial_bce": bce, "spatial_dice": dice}

    # ------------------------------------------------------------------ text prompts
    def _grounding(self, head: HeadOutput, ranges, targets: ImageTargets, logit_scale: Tensor, generator) -> dict[str, Tensor]:
        s, e = ranges[QueryGroup.GROUNDING]
        class_embed = head.class_embed[0, s:e]
        masks = head.masks[0, s:e]
        # forward calls this only with grounding targets; ImageTargets checks the embeddings come with them
        assert targets.grounding_masks is not None and targets.sentence_embeddings is not None
        gt_masks = targets.grounding_masks.to(masks.device)
        num_sentences = gt_masks.shape[0]
        if num_sentences == 0:
            zero = head.class_embed.sum() * 0.0 + head.masks.sum() * 0.0
            return {"grounding_ce": zero, "grounding_bce": zero, "grounding_dice": zero}
        sentences = targets.sentence_embeddings.to(device=class_embed.device, dtype=class_embed.dtype)
        sim = grounding_similarity(class_embed, sentences, logit_scale.to(class_embed.device), 100.0).float()  # (Qg, S)
        q_idx, s_idx = match_grounding(class_embed, sentences, logit_scale, masks, gt_masks, generator=generator, **self._costs)
        target = torch.zeros_like(sim)
        target[q_idx, s_idx] = 1.0
        if targets.grounding_groups is not None:
            groups = targets.grounding_groups.to(sim.device)
            table = (groups[:, None] == groups[None, :]).float()
            target = target @ (table / table.sum(-1, keepdim=True))
        ce = -(target.t() * F.log_softmax(sim.t(), dim=-1)).sum(-1).mean() * targets.grounding_ce_scale
        bce, dice = self._mask_losses(masks[q_idx], gt_masks[s_idx], max(q_idx.numel(), 1), head.masks, generator)
        return {"grounding_ce": ce, "grounding_bce": bce, "grounding_dice": dice}


__all__ = ["ImageTargets", "LossWeights", "SeemCriterion", "spatial_query_objects"]
