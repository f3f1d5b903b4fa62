"""One prompt round's decoder pass for :class:`seem.predictor.SeemPredictor` (the image already encoded).

Object queries never see prompts, so a prompt round runs only the prompt side of the decoder and computes no
full-resolution masks; the caller picks the returned queries (Eq. 5 / 6, or :mod:`seem.candidates`) and makes
their masks.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from seem import box_anchor
from seem.errors import PromptError
from seem.modeling.decoder import VisualPromptTokens
from seem.modeling.decoder_types import DecoderOutput
from seem.modeling.seem import TextPrompt
from seem.modeling.visual_sampler import PromptSampler
from seem.prompts import Prompts, ReferencePrompt, checks
from seem.prompts.value import VISUAL_FIELDS


@dataclass(frozen=True)
class RoundPass:
    """What :func:`decode_round` returns: the decoder output, the ``(K, H_pad, W_pad)`` bool positive regions of
    this image's visual objects (``None`` without any), the text prompt (``None`` without text), the prompts the
    pass decoded (the round's own, or their anchored clicks, :mod:`seem.box_anchor`) and, for anchored clicks,
    the ``(K, H_pad, W_pad)`` bool positive regions of the round's own prompts that bound the masks (else
    ``None``), and the ``(1, K, H_pad/4, W_pad/4)`` memory prompt logits the pass took (``None`` without)."""

    out: DecoderOutput
    positive: Tensor | None
    text: TextPrompt | None
    prompts: Prompts
    bound: Tensor | None = None
    memory: Tensor | None = None


def decode_round(predictor, prompts: Prompts, memory, joint_prompts: bool, spatial_queries: str | None = None) -> RoundPass:
    """The decoder pass of one round of ``prompts`` (+ the previous round's ``memory``) on the predictor's image;
    ``spatial_queries`` overrides the model's ``InferenceConfig.spatial_queries``. With the model's
    ``InferenceConfig.box_anchor``, a refinement round of boxes and clicks decodes the clicks and an anchor click
    per box instead (:mod:`seem.box_anchor`; the boxes then bound the masks through ``RoundPass.bound``).

    Raises:
        PromptError: no prompt; several visual objects for a v0 model; a bad ``memory``
            (:func:`seem.prompts.checks.memory_logits`).
        ImageError: no image set.
    """
    frame, feats = predictor._require_image()
    bound = None
    anchored = None
    if predictor.model.config.inference.box_anchor and box_anchor.applies(prompts, memory):
        anchored = box_anchor.anchored_prompts(prompts, memory, frame)
    if anchored is not None:
        regions = prompts.to_regions(frame)
        assert regions is not None  # applies: the round has boxes
        bound, prompts = regions.positive, anchored
    sampler = predictor.sampler()
    visual, positive = _visual_tokens(predictor, prompts, sampler)
    model = predictor.decoding_model
    if visual is not None and visual.num_objects > 1 and model.config.decoder.version != "v1":
        raise PromptError(f"{visual.num_objects} visual objects given: v0 models segment one visual object per call")
    text = _text_prompt(predictor, prompts.text)
    if visual is None and text is None:
        raise PromptError("no prompt given: pass text, points, boxes, scribbles, polygons, masks or reference")
    memory_mask = _memory(predictor, memory, visual)
    with predictor.autocast(decoder=True):
        out = model.decode(feats, visual=visual, text=text, memory_mask=memory_mask, sampler=sampler,
                           joint_prompts=joint_prompts, object_queries=False, intermediate=False, final_masks=False,
                           all_spatial_queries=(spatial_queries or predictor.model.config.inference.spatial_queries) == "all")
    return RoundPass(out, positive, text, prompts, bound, memory_mask)


def round_logits(mask_embed: Tensor, features, decoder, prompts: Prompts, frame, positive: Tensor | None,
                 inference, click_fit: bool, rows_per_object: int = 1, bound: Tensor | None = None
                 ) -> tuple[Tensor, Tensor | None]:
    """The low-resolution mask logits a round returns for the embeddings ``mask_embed`` ``(1, K r, Dm)`` (``r`` =
    ``rows_per_object`` rows per visual object, this image's objects first): fitted to their object's clicks
    (``click_fit``, :func:`seem.click_fit.fit_to_clicks`), ``mask_embed . features``, then prompt-connected
    (``inference.prompt_connected_masks``, with ``positive`` ``(K', H_pad, W_pad)``) and, in a round with boxes,
    bounded by them (``inference.box_bounds_masks``, :func:`seem.box_bounds.box_bounded`); ``bound`` ``(K', H_pad,
    W_pad)`` bool: the regions that bound the masks instead (a box turned into an anchor click, ``RoundPass.bound``).
    Returns ``(K r, h, w)`` float32 logits and the +-1 support field the masks are limited to (``None`` without
    any of these)."""
    from seem.box_bounds import box_bounded
    from seem.click_fit import fit_to_clicks
    from seem.postprocess import prompt_connected

    if click_fit and prompts.points is not None:
        mask_embed = fit_to_clicks(mask_embed, features.mask_features, prompts, frame, inference, rows_per_object)
    logits = decoder.mask_logits(mask_embed, features.mask_features, features.packs)[0].float()
    bounded = (inference.box_bounds_masks and prompts.boxes is not None) or bound is not None
    if positive is None or not (inference.prompt_connected_masks or bounded):
        return logits, None
    positive = positive.to(logits.device)
    support = None
    # boxes alone, bounded: every region left touches its box and the support near it covers the box, so the
    # prompt-connected step would change nothing (and costs a labelling of every candidate)
    boxes_alone = all(getattr(prompts, f) is None for f in VISUAL_FIELDS if f != "boxes")
    if inference.prompt_connected_masks and not (bounded and boxes_alone):
        logits, support = prompt_connected(logits, positive, rows_per_object)
    if not bounded:
        return logits, support
    return box_bounded(logits, support, positive if bound is None else bound.to(logits.device), rows_per_object)


def _text_prompt(predictor, texts) -> TextPrompt | None:
    """Text tokens in the decoder's dtype, from the decoding model's text encoder (a bf16 copy in bf16-all)."""
    t = predictor.decoding_model.encode_text(list(texts)) if texts else None
    return None if t is None else TextPrompt(t.tokens.to(predictor._dtype), t.padding, t.sentence_embeddings.float())


def _visual_tokens(predictor, prompts: Prompts, sampler: PromptSampler) -> tuple[VisualPromptTokens | None, Tensor | None]:
    """The visual objects' prompt tokens (those of the regions on this image, then the reference's) and the
    positive regions of this image's objects ``(K, H_pad, W_pad)`` bool (``None`` without any)."""
    frame, feats = predictor._require_image()
    regions = prompts.to_regions(frame)
    parts = []
    if regions is not None:
        parts.append(ReferencePrompt(predictor.decoding_model.encode_visual_prompt(
            feats, regions.positive.to(predictor.device), regions.negative.to(predictor.device), sampler)))
    if prompts.reference is not None:
        parts.append(prompts.reference.to(predictor._dtype))
    return (ReferencePrompt.concat(parts).tokens if parts else None), (None if regions is None else regions.positive)


def _memory(predictor, memory, visual: VisualPromptTokens | None) -> Tensor | None:
    if memory is None or (feats := predictor.features) is None:  # decode_round required an image
        return None
    expect = (feats.padded_size[0] // 4, feats.padded_size[1] // 4)
    logits = checks.memory_logits(memory, None if visual is None else visual.num_objects, expect)
    return logits.to(predictor.device, predictor._dtype)[None]
