"""Segment everything: open-vocabulary panoptic, semantic or instance segmentation of a predictor's image.

Kept apart from the prompt path (as SAM keeps its automatic mask generator apart from ``SamPredictor``): it
runs the decoder's object queries with no prompt, once per image, and scores them against any vocabulary.
:meth:`seem.SeemPredictor.segment_everything` delegates here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from seem import postprocess as pp
from seem.automatic import EverythingConfig, everything_masks
from seem.errors import PromptError
from seem.grounded_semantic import add_grounded_maps
from seem.object_queries import object_queries
from seem.prompts import checks
from seem.structures import InstanceResult, PanopticResult, Segment, SemanticResult
from seem.vocabularies import COCO_PANOPTIC_CLASSES, COCO_PANOPTIC_THING_FLAGS, check_vocabulary, display_name

if TYPE_CHECKING:
    from seem.configs import SeemConfig
    from seem.predictor import SeemPredictor

KINDS = ("panoptic", "semantic", "instance", "everything")
# query-mask elements post-processed at the original size (1.6 GB in fp32; ~4 MP images for 101 queries)
EVERYTHING_BUDGET = 400_000_000


@torch.inference_mode()  # callable directly too: the image features are inference tensors
def segment_everything(predictor: SeemPredictor, vocabulary: Sequence[str] | None = None, kind: str = "panoptic",
                       thing_classes: Sequence[str] | None = None,
                       config: EverythingConfig | Mapping[str, Any] | None = None, text_grounding: bool = False):
    """Open-vocabulary panoptic, semantic or instance segmentation of ``predictor``'s current image.

    Args:
        predictor: a :class:`seem.SeemPredictor` with an image set.
        vocabulary: class names (default: the predictor's vocabulary).
        kind: ``"panoptic"`` -> :class:`PanopticResult`; ``"semantic"`` -> :class:`SemanticResult`;
            ``"instance"`` -> :class:`InstanceResult`; ``"everything"`` -> :class:`EverythingResult`, class-agnostic
            masks of every object and region with their best label (:func:`seem.automatic.everything_masks`,
            settings in ``config``); every map and mask at the original image size ``(H, W)``.
        thing_classes: which names are countable things (stuff segments of one class are merged); default:
            the model's own thing classes for its default vocabulary, COCO's things for COCO names, else every class.
        config: ``kind="everything"`` only: an :class:`EverythingConfig`, a mapping of some of its fields
            (``{"points_per_side": 8}``, unknown keys rejected by name) or None for the defaults.
        text_grounding: ``kind="semantic"`` only: add each name's grounded mask (one text round per name,
            :mod:`seem.grounded_semantic`) to its class probabilities; for vocabularies of classes present in the
            image. ``SemanticResult.probabilities`` then hold the sum of the two maps.

    Post-processing follows the official ``evaluate`` path: query masks are upsampled, cropped and resized to the
    original size before semantic / panoptic / instance inference, with the thresholds of the config. Only when
    ``queries x H x W`` (``max(queries, classes + 1) x H x W`` for semantic) exceeds :data:`EVERYTHING_BUDGET`
    (images above about 4 MP for 101 queries) does inference run at the resized resolution, with labels resized
    to the original size afterwards (then ``SemanticResult.probabilities`` are ``(C, h, w)`` at the resized size).
    Instances keep thing classes only.

    Raises:
        PromptError: an invalid vocabulary or ``kind``; a ``config`` with another kind than ``"everything"``
            (it would be ignored), a ``config`` mapping with unknown keys or values out of range;
            ``text_grounding`` with another kind than ``"semantic"``.
        PromptTypeError (a PromptError and a TypeError): ``config`` neither an EverythingConfig nor a mapping,
            or one of its fields of the wrong type (named); ``text_grounding`` not a bool.
        ImageError: no image set.
    """
    if kind not in KINDS:
        raise PromptError(f"kind must be panoptic, semantic, instance or everything, got {kind!r}")
    if checks.flag(text_grounding, "text_grounding") and kind != "semantic":
        raise PromptError(f"text_grounding applies to kind='semantic' only, got it with kind={kind!r}")
    if kind == "everything":
        return everything_masks(predictor, vocabulary, config)
    if config is not None:
        raise PromptError(f"config (EverythingConfig) applies to kind='everything' only, got it with kind={kind!r}")
    names = check_vocabulary(vocabulary) if vocabulary is not None else predictor.vocabulary
    frame, _ = predictor._require_image()
    class_embed, query_masks = object_queries(predictor)
    emb = predictor.vocabularies.get(names + ("background",))
    logits = predictor.model.class_logits(class_embed, emb)
    # official: masks to the original size first, then inference there; for very large images (query
    # masks above the memory budget) inference runs at the resized size and labels are resized after
    rows = max(len(query_masks), len(names) + 1) if kind == "semantic" else len(query_masks)  # + (C, H, W) scores
    exact = rows * frame.original_size[0] * frame.original_size[1] <= EVERYTHING_BUDGET
    work_size = frame.original_size if exact else frame.resized_size
    masks = pp.sem_seg_postprocess(pp.upsample_to_input(query_masks, frame.padded_size), frame.resized_size, work_size)
    is_thing = thing_flags(predictor.model.config, names, thing_classes)
    cfg = predictor.model.config.inference
    if kind == "semantic":
        probs = pp.semantic_inference(logits, masks)
        if text_grounding:
            add_grounded_maps(predictor, names, probs)
        label_map = frame.maps_to_original(probs.argmax(0)[None])[0].long()
        return SemanticResult(probs.cpu().numpy(), label_map.cpu().numpy(), names)
    if kind == "panoptic":
        pano = pp.panoptic_inference(logits, masks, is_thing, cfg.object_mask_threshold, cfg.overlap_threshold)
        seg = frame.maps_to_original(pano.segmentation[None])[0].to(torch.int32)
        segments = []
        for d in pano.segments:
            area = int((seg == d["id"]).sum())
            if area:
                segments.append(Segment(d["id"], d["label_id"], names[d["label_id"]], d["isthing"], d["score"], area))
        return PanopticResult(seg.cpu().numpy(), segments, names)
    inst = pp.instance_inference(logits, masks, cfg.detections_per_image, thing_only=is_thing)
    # one mask at a time: a (K, H, W) float copy at the original size would be 4x the boolean result
    inst_masks = torch.stack([frame.maps_to_original(m[None].float())[0] > 0.5 for m in inst.masks]) \
        if len(inst.scores) else inst.masks
    order = inst.scores.argsort(descending=True)
    ids = inst.label_ids[order].cpu().numpy()
    return InstanceResult(inst_masks[order].cpu().numpy(), inst.scores[order].cpu().numpy(), ids,
                          [names[i] for i in ids], names)


def thing_flags(config: SeemConfig, names: Sequence[str], thing_classes: Sequence[str] | None) -> list[bool]:
    """One flag per name: is it a countable thing (see ``thing_classes`` of :func:`segment_everything`)."""
    if thing_classes is None and config.default_thing_classes and set(names) <= set(config.default_vocabulary):
        thing_classes = config.default_thing_classes
    if thing_classes is not None:
        things = set(thing_classes)
        return [n in things for n in names]
    coco = {display_name(c): f for c, f in zip(COCO_PANOPTIC_CLASSES, COCO_PANOPTIC_THING_FLAGS)}
    coco.update(dict(zip(COCO_PANOPTIC_CLASSES, COCO_PANOPTIC_THING_FLAGS)))
    if all(n in coco for n in names):
        return [coco[n] for n in names]
    return [True] * len(names)
