"""A learned choice among a text prompt's grounding queries (``SeemConfig.grounding_scorer_hidden``).

A text prompt alone is decoded by the grounding queries (``seem_tiny``: 24), and SEEM keeps the one whose class
embedding best matches the phrase's sentence embedding (paper Eq. 6 at inference;
:func:`seem.postprocess.select_grounding`). On the bundled model that match often picks a query with an *empty*
mask: on CamVid val it did so for 24 % of the class-name prompts (97 of 101 "pedestrian" prompts, every
"bicyclist"), while another grounding query's mask covered the objects (the best of the 24 would make text
"bicyclist" 63 % cIoU instead of 0).

As the click's :class:`~seem.candidates.CandidateScorer` does for spatial queries, a scorer of the same form
ranks the grounding queries by the mask each would return: 15 numbers per query (:func:`grounding_features`:
area, stability and confidence of its low-resolution mask, the same minus the mean over the queries, its Eq. 6
similarity minus the best and / 100, its embedding norm, its agreement with the other queries' masks), and the
highest score wins; an empty mask never wins over a non-empty one (:func:`pick_grounding`). Not in the
official code: official checkpoints have none and keep Eq. 6. The predictor uses it for a prompt round of text
alone (``InferenceConfig.grounding_scorer``). Training: :mod:`seem.train.grounding_scorer`.

Near ties between two queries' scores can be broken differently in ``precision="bf16-all"`` (bf16 decoder
outputs move the features a little): on the VOC photo one of 12 phrases picked another query than in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seem.candidates import consensus_features, mask_statistics

GROUNDING_FEATURES = 15


def grounding_features(logits: Tensor, mask_embed: Tensor, similarity: Tensor, valid_size: tuple[int, int]) -> Tensor:
    """``(S, Q, 15)`` float32 features of ``Q`` grounding queries for each of ``S`` phrases.

    Args:
        logits: ``(Q, h, w)`` the queries' mask logits at 1/4 of the padded input.
        mask_embed: ``(Q, Dm)`` their mask embeddings.
        similarity: ``(Q, S)`` Eq. 6's grounding similarity of each query with each phrase
            (:func:`seem.postprocess.select_grounding`).
        valid_size: ``(h', w')`` the cells of ``logits`` that cover the resized image (not the padding).

    The columns: the four :func:`~seem.candidates.mask_statistics`, the same minus their mean over the queries,
    the similarity minus the phrase's best, the similarity / 100, the embedding norm / 100, then the four
    :func:`~seem.candidates.consensus_features` (agreement with the other queries' masks; "Eq. 5's candidate"
    there is the phrase's best match). Only the similarity columns and the IoU with the best match depend on
    the phrase; the rest is computed once.

    Raises:
        ValueError: ``mask_embed`` or ``similarity`` not of ``Q`` rows, or ``similarity`` not 2-D.
    """
    q = logits.shape[0]
    if similarity.ndim != 2 or similarity.shape[0] != q or mask_embed.shape[0] != q:
        raise ValueError(f"{q} grounding queries' logits, but mask_embed {tuple(mask_embed.shape)} and similarity "
                         f"{tuple(similarity.shape)} (expected (Q, Dm) and (Q, S))")
    if similarity.shape[1] == 0:
        return logits.new_zeros(0, q, GROUNDING_FEATURES, dtype=torch.float32)
    stats, inside, prob = mask_statistics(logits, valid_size)
    sims = similarity.float()
    consensus = consensus_features(inside, prob, sims[:, 0], torch.zeros(q, dtype=torch.long, device=logits.device), 1)
    base = torch.cat([stats, stats - stats.mean(0, keepdim=True), mask_embed.float().norm(dim=1, keepdim=True) / 100,
                      consensus], 1)
    area = inside.sum(1)
    rows = []
    for s in range(sims.shape[1]):
        sim = sims[:, s]
        best = int(sim.argmax())  # consensus_features' choice: the first of the best
        inter = inside @ inside[best]
        union = area + area[best] - inter
        with_best = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
        rows.append(torch.cat([base[:, :8], (sim - sim.max())[:, None], sim[:, None] / 100, base[:, 8:10],
                               with_best[:, None], base[:, 11:]], 1))
    return torch.stack(rows)


def pick_grounding(scorer: nn.Module, features: Tensor, empty: Tensor | None = None) -> Tensor:
    """``(S,)`` int64: each phrase's grounding query by ``scorer`` from ``features`` ``(S, Q, 15)``
    (:func:`grounding_features`). A query with an empty mask never wins over a non-empty one; when every mask is
    empty, Eq. 6's best match is kept. Ties: the first query. ``empty``: ``(Q,)`` bool, which queries' masks are
    empty (default: no logit > 0 over the image at low resolution, feature 0).

    Raises:
        ValueError: ``features`` not ``(S, Q, 15)`` or ``empty`` not ``(Q,)``.
    """
    if features.ndim != 3 or features.shape[-1] != GROUNDING_FEATURES:
        raise ValueError(f"grounding features must be (S, Q, {GROUNDING_FEATURES}), got {tuple(features.shape)}")
    if empty is None:
        empty = features[..., 0] <= 0
    elif tuple(empty.shape) != (features.shape[1],):
        raise ValueError(f"empty must be ({features.shape[1]},) bool, got {tuple(empty.shape)}")
    empty = empty.to(features.device).bool().expand(features.shape[:2])
    # non-finite scores (a degenerate scorer) still rank above an empty mask
    scores = torch.nan_to_num(scorer(features).float(), nan=-1e30, posinf=1e30, neginf=-1e30)
    scores = scores.masked_fill(empty, -math.inf)
    eq6 = (features[..., 8] >= 0).float().argmax(-1)  # column 8: similarity minus the best, 0 at the best
    return torch.where(empty.all(-1), eq6, scores.argmax(-1))


@dataclass(frozen=True)
class GroundingCandidates:
    """A text round's grounding queries: ``start`` (their first index on the pass's query axis), ``logits``
    ``(Q, h, w)`` float32 mask logits at 1/4 of the padded input, ``similarity`` ``(Q, S)`` Eq. 6's, ``features``
    ``(S, Q, 15)`` (:func:`grounding_features`)."""

    start: int
    logits: Tensor
    similarity: Tensor
    features: Tensor


def grounding_candidates(out, features, decoder, text_prompt, frame, logit_scale: Tensor,
                         max_scale: float) -> GroundingCandidates:
    """Every grounding query of a text round with its mask logits and features.

    Args:
        out: the round's :class:`~seem.modeling.decoder_types.DecoderOutput`; features: the image's
            :class:`~seem.modeling.seem.ImageFeatures`; decoder: the :class:`~seem.modeling.decoder.SeemDecoder`
            that decoded it; text_prompt: the round's :class:`~seem.modeling.seem.TextPrompt` (``S`` phrases);
            frame: the image's :class:`~seem.transforms.ImageFrame`.
        logit_scale, max_scale: the text encoder's raw ``logit_scale`` and its clamp (Eq. 6's similarity).
    """
    from seem.modeling.decoder_types import QueryGroup
    from seem.postprocess import select_grounding

    s, e = out.ranges[QueryGroup.GROUNDING]
    last = out.last
    similarity, _ = select_grounding(last.class_embed[0, s:e].float(), text_prompt.sentence_embeddings,
                                     logit_scale, max_scale)
    logits = decoder.mask_logits(last.mask_embed[:, s:e], features.mask_features, features.packs)[0].float()
    feats = grounding_features(logits, last.mask_embed[0, s:e], similarity, frame.lowres_valid_size)
    return GroundingCandidates(s, logits, similarity, feats)


def grounding_queries(out, features, decoder, text_prompt, frame, logit_scale: Tensor, max_scale: float,
                      scorer: nn.Module | None) -> Tensor:
    """``(S,)`` int64 each phrase's grounding query on the pass's query axis, for a prompt round of text alone:
    Eq. 6's best match (official ``evaluate_grounding``) when ``scorer`` is ``None``, else :func:`pick_grounding`
    over :func:`grounding_candidates` (arguments as there). On an image smaller than the logit grid, "empty"
    is judged on the masks at the original size (a few positive low-resolution cells can vanish there)."""
    from seem.modeling.decoder_types import QueryGroup
    from seem.postprocess import masks_with_scores, select_grounding

    if scorer is None:
        s, e = out.ranges[QueryGroup.GROUNDING]
        _, matched = select_grounding(out.last.class_embed[0, s:e].float(), text_prompt.sentence_embeddings,
                                      logit_scale, max_scale)
        return s + matched
    c = grounding_candidates(out, features, decoder, text_prompt, frame, logit_scale, max_scale)
    empty = None
    if frame.smaller_than_logit_grid:
        empty = ~masks_with_scores(frame, c.logits, "bilinear", True)[0].flatten(1).any(1)
    return c.start + pick_grounding(scorer, c.features, empty).to(c.similarity.device)


def grounded_text(predictor, run) -> tuple[Tensor, Tensor]:
    """For a pass of text alone (``run`` from :func:`seem.prompt_round.decode_round`): each phrase's grounding
    query ``(S,)`` int64 on the pass's query axis (:func:`grounding_queries` with the model's grounding scorer when
    it has one and ``InferenceConfig.grounding_scorer`` is on, else Eq. 6) and its ``(S, H_pad/4, W_pad/4)``
    float32 mask logits (official ``evaluate_grounding``)."""
    from seem.prompt_round import round_logits

    frame, feats = predictor._require_image()
    assert run.text is not None and run.out.visual is None, "grounded_text takes a pass of text alone"
    inference, decoder = predictor.model.config.inference, predictor.decoding_model.decoder
    scorer = predictor.model.grounding_scorer if inference.grounding_scorer else None
    chosen = grounding_queries(run.out, feats, decoder, run.text, frame, predictor.model.text_encoder.logit_scale,
                               inference.grounding_logit_scale_max, scorer)
    logits, _ = round_logits(run.out.last.mask_embed[:, chosen], feats, decoder, run.prompts, frame, None,
                             inference, False)
    return chosen, logits
