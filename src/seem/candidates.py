"""A learned choice among a visual prompt's spatial-query candidates (``SeemConfig.candidate_scorer_hidden``).

SEEM decodes each visually prompted object with spatial queries (v1: ``query_number`` object queries drawn by
the seeded sampler; ``InferenceConfig.spatial_queries == "all"``: every object query, ``seem_tiny``'s 24) and
keeps the one whose mask embedding best matches the prompt's mean feature (paper Eq. 5;
:func:`seem.postprocess.select_spatial`). On the bundled model's held-out whole objects the best of its 24
candidates would make the first click 8.7 points better (56.1 -> 64.7 %), but the match picks it only part of
the time.
Like SAM's IoU prediction head, the :class:`CandidateScorer` ranks the candidates by the mask each would
return: it reads 22 numbers per candidate (:func:`candidate_features`: area, stability and confidence of its
final low-resolution mask, the same minus the object's candidate mean, the Eq. 5 match, the click counts, the
embedding norm, its agreement with the object's other candidates and where the clicks sit in it,
:mod:`seem.click_geometry`; a later round's scorer also reads 2 more: the candidate's overlap with the memory
prompt, the previous round's mask) and the highest score wins. Not in the
official code: official checkpoints have none and keep Eq. 5. The predictor uses it for click-fitted rounds of
clicks alone without a memory prompt (``InferenceConfig.candidate_scorer``); scorers of the same form: the refine
scorer (``SeemConfig.refine_scorer_hidden``) for later rounds of click-fitted clicks alone (the previous mask as
memory), the box scorer (``SeemConfig.box_scorer_hidden``, the first 17 features) for first rounds of boxes alone
(:func:`visual_scorer`).
An empty candidate mask never wins over a non-empty one (:func:`pick`).

The features are read from each candidate's *final* mask (after the click fit, the prompt-connected masks and
the box bound, as the predictor returns it), so all candidates of an object go through that post-processing in
one batch. Training: :mod:`seem.train.candidate_scorer` (``--prompt refine`` for the refine scorer, ``--prompt boxes``
for the box scorer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

NUM_FEATURES = 24
# the first-click scorer reads the first 22 columns: the last two compare a candidate with the memory prompt (the
# previous round's mask), which only later rounds have (the refine scorer reads all of them)
CLICK_FEATURES = 22
# the box scorer reads the first 17 columns: the click-geometry ones (seem.click_geometry) are for clicks
BOX_FEATURES = 17


SCORER_PREFIXES = ("candidate_scorer.", "grounding_scorer.", "box_scorer.", "refine_scorer.")
# the leading feature columns each visual scorer reads (its CandidateScorer's num_features; see pick)
SCORER_FEATURES = {"candidate_scorer": CLICK_FEATURES, "refine_scorer": NUM_FEATURES, "box_scorer": BOX_FEATURES}


def without_scorer(state: dict, prefixes: tuple[str, ...] = SCORER_PREFIXES) -> dict:
    """``state`` without the keys of the learned scorers under ``prefixes`` (default: all of them, the click
    candidate scorer, the box scorer and the grounding scorer of :mod:`seem.grounding_choice`): for a model built
    without them (training, a re-fit), since a scorer is fitted to the candidates of the weights it came with."""
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


class CandidateScorer(nn.Module):
    """``(N, F)`` candidate features -> ``(N,)`` scores (higher: the better mask); a 2-layer MLP on standardised
    features. ``F`` = ``num_features``: 22 for a first click's spatial-query candidates (:data:`CLICK_FEATURES`, the
    leading columns of :func:`candidate_features`), 24 for a later round's (:data:`NUM_FEATURES`, with the memory
    columns), 17 for a box's (:data:`BOX_FEATURES`), 15 for a text prompt's grounding queries
    (:mod:`seem.grounding_choice`). Keys (under ``candidate_scorer.``, ``refine_scorer.``, ``box_scorer.`` or
    ``grounding_scorer.``): ``feature_mean`` / ``feature_std`` ``(F,)``, ``fc1`` ``(hidden, F)``, ``fc2`` ``(1, hidden)``."""

    feature_mean: Tensor
    feature_std: Tensor

    def __init__(self, hidden: int, num_features: int = CLICK_FEATURES, name: str = "candidate scorer") -> None:
        super().__init__()
        self.name = name  # for load errors
        for name, v in (("hidden width", hidden), ("feature count", num_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"candidate scorer {name} must be a positive integer, got {v!r}")
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        self.fc1 = nn.Linear(num_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        self.register_load_state_dict_post_hook(_check_loaded)

    @property
    def num_features(self) -> int:
        """``F``, the feature columns the scorer reads."""
        return int(self.feature_mean.shape[0])

    def forward(self, features: Tensor) -> Tensor:
        x = (features.to(self.feature_mean.dtype) - self.feature_mean) / self.feature_std
        return self.fc2(torch.relu(self.fc1(x)))[..., 0]


def _check_loaded(module: CandidateScorer, incompatible) -> None:
    """Refuse a checkpoint whose scorer would rank with NaN / infinite numbers or divide by a zero spread."""
    from seem.errors import CheckpointError

    bad = [name for name, t in module.state_dict().items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{module.name}: non-finite values in {', '.join(bad)}")
    if not bool((module.feature_std > 0).all()):
        raise CheckpointError(f"{module.name}: feature_std must be > 0 everywhere")


def candidate_features(logits: Tensor, mask_embed: Tensor, positive_mean: Tensor, query_object: Tensor,
                       valid_size: tuple[int, int], num_clicks: Tensor, num_negative: Tensor,
                       clicks: Tensor | None = None, labels: Tensor | None = None,
                       memory: Tensor | None = None) -> Tensor:
    """``(N, 24)`` float32 features of ``N`` spatial-query candidates of ``K`` objects.

    Args:
        logits: ``(N, h, w)`` each candidate's final mask logits at 1/4 of the padded input.
        mask_embed: ``(N, Dm)`` the candidates' mask embeddings as the decoder made them (before any click fit).
        positive_mean: ``(K, Dm)`` each object's mean positive prompt feature (Eq. 5's right-hand side).
        query_object: ``(N,)`` int64 object of each candidate.
        valid_size: ``(h', w')`` the cells of ``logits`` that cover the resized image (not the padding).
        num_clicks, num_negative: ``(K,)`` each object's click count (all points) and negative click count.
        clicks, labels: ``(K', M, 2)`` the clicks of the first ``K' <= K`` objects in low-resolution cell units
            (:func:`seem.click_geometry.clicks_to_cells`) and their ``(K', M)`` labels, or ``None`` (no clicks).
        memory: ``(K, h, w)`` the memory prompt's logits (the previous round's masks) or ``None`` (a first round).

    The columns: fraction of cells with logit > 0, stability (cells > 1 over cells > -1), mean probability
    inside, mean |logit|; those four minus the object's candidate mean; Eq. 5's match minus the object's best,
    the match / 100; (clicks - 1) / 4 capped at 1; negative clicks / 4; the embedding norm / 100; how the
    candidate agrees with the object's other candidates (:func:`consensus_features`); then the 5 columns of
    :func:`seem.click_geometry.click_geometry` (zeros for objects without clicks); then the candidate's IoU with
    its object's memory mask and the share of the memory mask it keeps (both 1 when the two are empty; zeros
    without memory).
    """
    from seem.click_geometry import click_geometry

    stats, inside, prob = mask_statistics(logits, valid_size)
    k = positive_mean.shape[0]
    count = torch.bincount(query_object, minlength=k).clamp(min=1).to(stats)
    mean = torch.zeros(k, 4, dtype=stats.dtype, device=stats.device).index_add_(0, query_object, stats) / count[:, None]
    match = (mask_embed.float() * positive_mean.float()[query_object]).sum(1)
    best = torch.full((k,), -math.inf, device=match.device).scatter_reduce(0, query_object, match, "amax")
    rows = [stats, stats - mean[query_object], (match - best[query_object])[:, None], match[:, None] / 100,
            ((num_clicks.to(stats) - 1) / 4).clamp(max=1)[query_object, None], (num_negative.to(stats) / 4)[query_object, None],
            mask_embed.float().norm(dim=1, keepdim=True) / 100, consensus_features(inside, prob, match, query_object, k),
            click_geometry(logits, valid_size, clicks, labels, query_object, inside).to(stats),
            memory_features(inside, memory, valid_size, query_object)]
    return torch.cat(rows, 1)


def memory_features(inside: Tensor, memory: Tensor | None, valid_size: tuple[int, int], query_object: Tensor) -> Tensor:
    """``(N, 2)`` each candidate's IoU with its object's memory mask (logit > 0 over the valid cells) and the share
    of that mask it covers; ``inside`` ``(N, P)`` float 1 where the candidate's logit is > 0 over the same cells;
    ``memory`` ``(K, h, w)`` or ``None`` (zeros). An empty memory mask gives share 1; both empty, IoU 1."""
    if memory is None:
        return inside.new_zeros(inside.shape[0], 2)
    on = memory[:, : valid_size[0], : valid_size[1]].detach().float().cpu().flatten(1).numpy() > 0
    mem = torch.from_numpy(on.astype(np.float32)).to(inside)[query_object]
    inter, area, mem_area = (inside * mem).sum(1), inside.sum(1), mem.sum(1)
    union = area + mem_area - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    share = torch.where(mem_area > 0, inter / mem_area.clamp(min=1), torch.ones_like(inter))
    return torch.stack([iou, share], 1)


def mask_statistics(logits: Tensor, valid_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """``(N, h, w)`` candidate mask logits -> (``(N, 4)`` statistics: fraction of the valid cells with logit > 0,
    stability (cells > 1 over cells > -1), mean probability inside, mean |logit|; ``inside`` ``(N, P)`` float 1
    where the logit is > 0; ``prob`` ``(N, P)`` sigmoid), over the ``valid_size`` ``(h', w')`` cells that cover
    the resized image."""
    lo = logits[:, : valid_size[0], : valid_size[1]].detach().float().cpu().flatten(1)
    # comparisons in NumPy, arithmetic on floats: torch's bool-producing kernels are ~10x slower on these maps
    values = lo.numpy()
    inside, prob = torch.from_numpy((values > 0).astype(np.float32)), torch.sigmoid(lo)
    n_in = inside.sum(1)
    strong, weak = (torch.from_numpy(np.count_nonzero(values > t, axis=1)).float() for t in (1, -1))
    stats = torch.stack([
        n_in / max(lo.shape[1], 1),
        strong / weak.clamp(min=1),
        (prob * inside).sum(1) / n_in.clamp(min=1),
        lo.abs().mean(1),
    ], 1)
    return stats.to(logits.device), inside.to(logits.device), prob.to(logits.device)


def consensus_features(inside: Tensor, prob: Tensor, match: Tensor, query_object: Tensor, num_objects: int) -> Tensor:
    """``(N, 4)`` how each candidate agrees with its object's other candidates: mean mask IoU with them, IoU with
    the object's Eq. 5 candidate (the first of the best ``match``), soft IoU (sum of minima over sum of maxima)
    of its probabilities with the object's mean probability map, and its area's rank among them in [0, 1] (the
    share of the others with a smaller area: equal areas share a rank). ``inside`` ``(N, P)`` float 1 where the
    logit is > 0, ``prob`` ``(N, P)`` the probabilities, both over the valid cells; an object with one candidate
    gets IoU 1 with itself and rank 0."""
    groups = [(query_object == k).nonzero()[:, 0] for k in range(num_objects)] if num_objects > 1 else []
    parts = [(inside[i], prob[i], match[i]) for i in groups] if groups else [(inside, prob, match)]  # one: no copies
    rows = []
    for b, p, m in parts:
        c = b.shape[0]
        if not c:
            continue
        area = b.sum(1)
        inter = b @ b.t()
        union = area[:, None] + area[None] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
        centre = p.mean(0, keepdim=True)
        rows.append(torch.stack([
            (iou.sum(1) - 1) / (c - 1) if c > 1 else torch.ones(1, device=b.device),
            iou[int(m.argmax())],
            torch.minimum(p, centre).sum(1) / torch.maximum(p, centre).sum(1).clamp(min=1e-6),
            (area[None] < area[:, None]).sum(1).float() / max(c - 1, 1),  # ties share the lower rank
        ], 1))
    out = torch.cat(rows) if rows else inside.new_zeros(0, 4)
    if num_objects > 1:  # back to the candidates' order
        out = out.new_zeros(out.shape).index_copy_(0, torch.cat(groups), out)
    return out


def choose(scores: Tensor, query_object: Tensor, num_objects: int) -> Tensor:
    """``(K,)`` int64: the index (into the ``N`` candidates) of each object's highest-scoring candidate (NaN scores
    count as the lowest; ties: the first). ``ValueError``: an object without candidates."""
    if bool((torch.bincount(query_object, minlength=num_objects)[:num_objects] == 0).any()):
        raise ValueError(f"every one of the {num_objects} objects needs a candidate; query_object {query_object.tolist()}")
    scores = torch.nan_to_num(scores.float(), nan=-math.inf)
    best = torch.full((num_objects,), -math.inf, device=scores.device).scatter_reduce(0, query_object, scores, "amax")
    hit = scores >= best[query_object]
    index = torch.arange(scores.shape[0], device=scores.device)
    # the first candidate reaching the object's best (ties: the earlier query, as argmax does)
    return torch.full((num_objects,), scores.shape[0], device=scores.device).scatter_reduce(
        0, query_object[hit], index[hit], "amin")


def clicks_only(prompts) -> bool:
    """Whether a round's :class:`~seem.prompts.Prompts` are clicks alone (what the candidate scorer was trained
    on); with text, boxes, scribbles, polygons, masks or reference regions the candidate scorer is not used."""
    return _only(prompts, "points")


def boxes_only(prompts) -> bool:
    """Whether a round's :class:`~seem.prompts.Prompts` are boxes alone (what the box scorer was trained on)."""
    return _only(prompts, "boxes")


def _only(prompts, field: str) -> bool:
    from seem.prompts.value import VISUAL_FIELDS

    others = [getattr(prompts, name) for name in VISUAL_FIELDS if name != field] + [prompts.reference]
    return getattr(prompts, field) is not None and not prompts.text and all(v is None for v in others)


def visual_scorer(model, prompts, memory, click_fit: bool, anchored: bool = False) -> nn.Module | None:
    """The learned scorer that picks the spatial query of this visual round, or ``None`` for Eq. 5: a round of
    clicks alone with the click fit on takes ``model.candidate_scorer`` when it is the first (no ``memory``) and
    ``model.refine_scorer`` when it refines a previous mask (``memory`` given); a first round of boxes alone takes
    ``model.box_scorer`` (each ``None`` when the model has none: every official checkpoint). ``prompts`` are the
    round's prompts as decoded; ``anchored``: a box refined with clicks, decoded as clicks plus an anchor click
    bounded by the box (:mod:`seem.box_anchor`), keeps Eq. 5."""
    if anchored:
        return None
    if clicks_only(prompts):
        if not click_fit:
            return None
        return model.candidate_scorer if memory is None else model.refine_scorer
    return model.box_scorer if memory is None and boxes_only(prompts) else None


def pick(scorer: nn.Module, candidates: Candidates, num_objects: int, frame=None) -> Tensor:
    """``(K,)`` each object's candidate by ``scorer`` (index into ``candidates``); an empty mask never wins over a
    non-empty one of the same object, and an object whose candidates are all empty keeps Eq. 5's pick (the first
    best match, feature 8). Empty: no logit > 0 over the image at low resolution (feature 0); with the image's
    ``frame`` (:class:`~seem.transforms.ImageFrame`) of an image smaller than the logit grid, no pixel of the mask
    at the original size (a few positive cells can vanish there, or appear by bicubic overshoot)."""
    empty = candidates.features[:, 0] <= 0
    if frame is not None and frame.smaller_than_logit_grid:
        from seem.postprocess import masks_with_scores

        masks = masks_with_scores(frame, candidates.logits, "bicubic", False, candidates.support)[0]
        empty = ~masks.flatten(1).any(1).to(empty.device)
    # non-finite scores (a degenerate scorer) still rank above an empty mask
    # a CandidateScorer reads its leading num_features columns (the box scorer: BOX_FEATURES)
    features = candidates.features[:, : scorer.num_features] if isinstance(scorer, CandidateScorer) else candidates.features
    scores = torch.nan_to_num(scorer(features).float(), nan=-1e30, posinf=1e30, neginf=-1e30)
    scores = scores.masked_fill(empty, -math.inf)
    non_empty = torch.bincount(candidates.query_object[~empty], minlength=num_objects)[:num_objects]
    eq5 = torch.where(candidates.features[:, 8] >= 0, 0.0, -math.inf).to(scores)
    scores = torch.where((non_empty == 0)[candidates.query_object], eq5, scores)
    return choose(scores, candidates.query_object, num_objects)


@dataclass(frozen=True)
class Candidates:
    """Every spatial-query candidate of a prompt round, post-processed as the predictor returns a mask.

    Attributes:
        query_index: ``(N,)`` int64 index of each candidate on the pass's query axis.
        query_object: ``(N,)`` int64 the visual object each belongs to.
        logits: ``(N, h, w)`` float32 final mask logits at 1/4 of the padded input.
        support: ``(N, h, w)`` the +-1 support field the masks are limited to (prompt-connected masks,
            :func:`seem.postprocess.prompt_connected`; box bounds, :func:`seem.box_bounds.box_bounded`), or
            ``None`` without either.
        features: ``(N, 24)`` :func:`candidate_features`.
    """

    query_index: Tensor
    query_object: Tensor
    logits: Tensor
    support: Tensor | None
    features: Tensor

    def take(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(query indices, logits, support) of the candidates ``index`` ``(K,)``."""
        return self.query_index[index], self.logits[index], None if self.support is None else self.support[index]


def spatial_candidates(out, features, decoder, prompts, frame, positive: Tensor | None, inference,
                       click_fit: bool, bound: Tensor | None = None, memory: Tensor | None = None) -> Candidates:
    """All spatial-query candidates of a visual prompt round (:class:`Candidates`).

    Args:
        out: the round's :class:`~seem.modeling.decoder_types.DecoderOutput` (decoded with visual prompts).
        features: the image's :class:`~seem.modeling.seem.ImageFeatures`.
        decoder: the :class:`~seem.modeling.decoder.SeemDecoder` that decoded ``out`` (its ``mask_logits``).
        prompts: the round's :class:`~seem.prompts.Prompts`; frame: the image's :class:`~seem.transforms.ImageFrame`.
        positive: ``(K', H_pad, W_pad)`` bool positive regions of this image's objects, or ``None``.
        inference: the model's :class:`~seem.configs.InferenceConfig` (click fit, prompt-connected masks, box bound).
        click_fit: whether to fit each candidate to its object's clicks (:func:`seem.click_fit.fit_to_clicks`).
        bound: ``(K', H_pad, W_pad)`` bool regions that bound each object's masks (a box refined with clicks,
            :mod:`seem.box_anchor`), or ``None`` (:func:`seem.prompt_round.round_logits`).
        memory: ``(K, h, w)`` (or ``(1, K, h, w)``) the round's memory prompt logits, or ``None``.
    """
    from seem.click_geometry import clicks_to_cells
    from seem.modeling.decoder_types import QueryGroup
    from seem.postprocess import spatial_query_objects
    from seem.prompt_round import round_logits

    s, e = out.ranges[QueryGroup.SPATIAL]
    k = out.visual.num_objects
    raw = out.last.mask_embed[:, s:e]
    objects = spatial_query_objects(e - s, k, raw.device)
    per_object = (e - s) // k
    logits, support = round_logits(raw, features, decoder, prompts, frame, positive, inference, click_fit, per_object,
                                   bound)
    clicks, negative = torch.zeros(k), torch.zeros(k)
    labels = cells = None
    if prompts.point_labels is not None:
        labels = torch.from_numpy(np.array(prompts.point_labels))
        clicks[: labels.shape[0]] = labels.shape[1]
        negative[: labels.shape[0]] = (labels == 0).sum(1).float()
        cells = clicks_to_cells(prompts.points, frame)
    valid = frame.lowres_valid_size
    if memory is not None:
        memory = memory.reshape(-1, *memory.shape[-2:]).to(logits.device)
    feats = candidate_features(logits, raw[0], out.visual.positive_mean[0], objects.to(logits.device), valid,
                               clicks.to(logits.device), negative.to(logits.device), cells, labels, memory)
    return Candidates(torch.arange(s, e, device=raw.device), objects, logits, support, feats)
