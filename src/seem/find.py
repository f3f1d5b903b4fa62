"""Find every instance of one or more phrases (:meth:`seem.SeemPredictor.find`).

SEEM's way of getting *all* instances of a class (official ``instance_inference``, SEEM-REFERENCE.md §1.7):
the phrases become the class vocabulary of the generic object queries, which are decoded once per image
(:func:`seem.object_queries.object_queries`, shared with panoptic output and every other ``find`` call on the image),
then instance post-processing keeps the queries labelled with a phrase whose score clears a threshold and
removes duplicates by mask NMS. Referring grounding (``predict(text=...)``) stays the path for a description
of *one* object: it returns exactly one mask per sentence.

A query belongs to at most one phrase: the phrase it matches best among the phrases and a *context*
vocabulary of other names (by default the predictor's vocabulary). Without the context, a road query would be
called "car" whenever "car" is the only name offered; with it, the road query is "road" and drops out. A
phrase's score is ``p(phrase | phrase, background) x mean mask probability inside the mask``, so each phrase's
group does not depend on the other phrases of the call: ``find(["car", "person"])`` gives the groups of
``find("car")`` and ``find("person")`` from one decoder pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from seem import postprocess as pp
from seem.errors import PromptError, PromptTypeError
from seem.mask_ops import mask_nms, masks_to_boxes
from seem.object_queries import object_queries
from seem.setting_checks import config_of, number_fields
from seem.structures import FindResult, PhraseInstances, Prediction
from seem.vocabularies import check_vocabulary

if TYPE_CHECKING:
    from seem.predictor import SeemPredictor

MAX_PHRASES = 256  # phrases of one call (each one is embedded with the vocabulary templates)


@dataclass(frozen=True)
class FindConfig:
    """Instance post-processing of :func:`find_instances`.

    Attributes:
        score_threshold: keep instances scoring at least this (score in [0, 1], see :class:`PhraseInstances`).
        nms_threshold: drop an instance whose mask IoU with a better one of the same phrase is above this.
        max_instances: at most this many instances per phrase (the official ``detections_per_image`` is 100).

    Raises:
        PromptTypeError (a PromptError and a TypeError): a threshold that is not a real number (``"0.3"``,
            ``True``) or a ``max_instances`` that is not an integer (``2.5``; NumPy integers are fine).
        PromptError: NaN, an infinity or a value outside its range, naming the field.
    """

    score_threshold: float = 0.3
    nms_threshold: float = 0.5
    max_instances: int = 100

    def __post_init__(self) -> None:
        number_fields(self)  # types first (stored as int / float), then the ranges
        if not 0.0 <= self.score_threshold <= 1.0:
            raise PromptError(f"score_threshold must lie in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.nms_threshold <= 1.0:
            raise PromptError(f"nms_threshold must lie in [0, 1], got {self.nms_threshold}")
        if self.max_instances < 1:
            raise PromptError(f"max_instances must be >= 1, got {self.max_instances}")


def check_phrases(texts: str | Sequence[str], field: str = "texts") -> tuple[str, ...]:
    """A phrase or a list (tuple, any sequence) of phrases -> a tuple of distinct, non-blank phrases, in order.

    Raises:
        PromptTypeError (a PromptError and a TypeError): neither a str nor a sequence, e.g. a set, a dict or a
            generator (their order would decide the order of the groups), None or bytes.
        PromptError: an empty string or list, blank or non-string phrases, duplicates, more than
            :data:`MAX_PHRASES`.
    """
    if isinstance(texts, str):
        if not texts.strip():
            raise PromptError(f"{field}: the phrase {texts!r} is blank; expected a non-blank phrase")
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        unordered = isinstance(texts, Iterable) and not isinstance(texts, (bytes, bytearray))
        raise PromptTypeError(f"{field}: expected a phrase or a list of phrases (str, list or tuple of str), got "
                              f"{type(texts).__name__}" + ("; its order is not fixed, pass a list" if unordered else ""))
    count = len(texts)
    if not count:
        raise PromptError(f"{field}: no phrase given (an empty {type(texts).__name__})")
    if count > MAX_PHRASES:
        raise PromptError(f"{field}: {count} phrases, at most {MAX_PHRASES} in one call")
    return check_vocabulary(texts, field)


def _phrase_logits(predictor: SeemPredictor, class_embed: Tensor, phrases: tuple[str, ...],
                   context: tuple[str, ...] | None) -> tuple[Tensor, Tensor]:
    """``(Q, P)`` phrase probabilities (each against "background" alone) and ``(Q,)`` the phrase index each
    query belongs to (-1 when a context name matches it better)."""
    model = predictor.model
    phrase_logits = model.class_logits(class_embed, predictor.vocabularies.get(phrases))
    ctx = context or ()
    # the context with "background" is the predictor's label space when context is its vocabulary (cached)
    other = model.class_logits(class_embed, predictor.vocabularies.get(ctx + ("background",)))
    background = other[:, -1:]
    probs = torch.sigmoid(phrase_logits - background)  # = softmax over (phrase, background), per phrase
    same = {p.casefold() for p in phrases}
    ctx_logits = other[:, :-1].clone()
    for j, name in enumerate(ctx):
        if name.strip().casefold() in same:  # a phrase in the context competes as the phrase, not against it
            ctx_logits[:, j] = float("-inf")
    best_phrase, owner = phrase_logits.max(dim=1)
    if ctx_logits.shape[1]:
        owner = torch.where(best_phrase >= ctx_logits.max(dim=1).values, owner, torch.full_like(owner, -1))
    return probs, owner


def _query_masks(predictor: SeemPredictor, query_masks: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """``(K, H, W)`` bool masks at the original size and ``(K,)`` mean mask probability inside them, for the
    queries ``index`` (official post-processing: bilinear to the padded input, crop, bicubic to the original
    size). One query at a time, so memory stays at one original-size float map."""
    frame = predictor.frame
    assert frame is not None  # object_queries checked that an image is set
    masks, scores = [], []
    for q in index.tolist():
        up = pp.upsample_to_input(query_masks[q:q + 1], frame.padded_size)
        logits = pp.sem_seg_postprocess(up, frame.resized_size, frame.original_size)[0]
        m = logits > 0
        masks.append(m)
        scores.append(logits.sigmoid()[m].mean() if m.any() else logits.new_zeros(()))
    if not masks:
        h, w = frame.original_size
        return torch.zeros(0, h, w, dtype=torch.bool), torch.zeros(0)
    return torch.stack(masks), torch.stack(scores).float()


@torch.inference_mode()  # callable directly too: the image features are inference tensors
def find_instances(predictor: SeemPredictor, texts: str | Sequence[str],
                   config: FindConfig | Mapping[str, Any] | None = None,
                   context: Sequence[str] | None | str = "vocabulary") -> FindResult:
    """Every instance of each phrase on ``predictor``'s current image, from one decoder pass.

    Args:
        predictor: a :class:`seem.SeemPredictor` with an image set.
        texts: a phrase (``"car"``) or a list / tuple of phrases; one group of instances per phrase, in order.
        config: score threshold, mask NMS threshold and the most instances per phrase: a :class:`FindConfig`,
            a mapping of some of its fields (``{"score_threshold": 0.5}``) or None for the defaults.
        context: names that compete with the phrases for each query (see the module docstring):
            ``"vocabulary"`` (default) the predictor's vocabulary, a list of names, or None for none.

    Returns:
        :class:`FindResult`: per phrase, ``masks`` ``(N, H, W)`` bool at the original size, ``scores`` ``(N,)``
        float32 descending, ``boxes`` ``(N, 4)`` float32 XYXY pixels.

    Raises:
        PromptError: no phrase, blank / duplicate phrases, an invalid context, a ``config`` mapping with unknown
            keys (named) or values out of range.
        PromptTypeError (a PromptError and a TypeError): ``texts`` neither a str nor a list / tuple (a set, a
            generator), ``config`` neither a FindConfig nor a mapping, or a field of the wrong type (named).
        ImageError: no image set.
    """
    phrases = check_phrases(texts)
    config = config_of(FindConfig, config)
    ctx = tuple(predictor.vocabulary) if isinstance(context, str) and context == "vocabulary" else (
        None if context is None else check_vocabulary(context, "context"))
    predictor._require_image()
    class_embed, query_masks = object_queries(predictor)
    probs, owner = _phrase_logits(predictor, class_embed, phrases, ctx)
    groups = []
    for k, phrase in enumerate(phrases):
        # score = p(phrase) x mask score <= p(phrase): queries below the threshold are not upsampled at all
        candidates = torch.nonzero((owner == k) & (probs[:, k] >= config.score_threshold)).flatten()
        masks, mask_scores = _query_masks(predictor, query_masks, candidates)
        scores = probs[candidates, k].float() * mask_scores
        ok = (scores >= config.score_threshold) & masks.flatten(1).any(1)
        masks, scores, candidates = masks[ok], scores[ok], candidates[ok]
        keep = mask_nms(masks, scores, config.nms_threshold, config.max_instances)
        masks, scores = masks[keep], scores[keep]
        groups.append(PhraseInstances(phrase, masks.cpu().numpy(), scores.cpu().numpy().astype(np.float32),
                                      masks_to_boxes(masks).numpy(), candidates[keep].cpu().numpy().astype(np.int64)))
    return FindResult(groups)


@torch.inference_mode()  # callable directly too: the image features are inference tensors
def instances_prediction(predictor: SeemPredictor, phrase: str) -> Prediction:
    """``predict(text=phrase, all_instances=True)``: the instances of :func:`find_instances` (default settings) as
    a :class:`Prediction`: K masks all labelled ``phrase`` (``vocabulary == (phrase,)``), ``logits_lowres`` the
    ``(K, H_pad/4, W_pad/4)`` logits of their object queries."""
    group = find_instances(predictor, phrase).groups[0]
    _, query_masks = object_queries(predictor)
    n = len(group)
    return Prediction(masks=group.masks, scores=group.scores, labels=[group.phrase] * n,
                      label_ids=np.zeros(n, dtype=np.int64), vocabulary=(group.phrase,),
                      logits_lowres=query_masks[torch.as_tensor(group.queries, dtype=torch.long)].float().cpu())
