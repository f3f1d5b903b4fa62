"""Parity of the SEEM decoder, output selection and post-processing with the official implementation.

Every case of both golden fixtures (``kind``: Focal ``$SEEM_PARITY_FIXTURE`` and SAM-ViT
``$SEEM_PARITY_FIXTURE_SAMVIT``, see ``_fixture.py``) is rebuilt from the PNGs, prompts and config, with the
official random draws replayed, and compared layer by layer (tolerance 1e-4 absolute).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seem.modeling.decoder import QueryGroup
from seem.modeling.seem import TextPrompt
from seem.postprocess import (
    instance_inference,
    panoptic_inference,
    select_grounding,
    select_spatial,
    sem_seg_postprocess,
    semantic_inference,
    upsample_to_input,
)

from _fixture import require_fixture
from _parity import (
    assert_close,
    assert_masks_equal,
    case,
    compare,
    fixture_model,
    image_features,
    recorded_sampler,
    vocabulary_embeddings,
)

SPATIAL_CASES = ["case_c1_point_round1", "case_c2_point_round2_neg", "case_d1_box", "case_d2_scribble"]


@pytest.fixture(autouse=True)
def _fixture_present(kind):
    require_fixture(kind)
    with torch.no_grad():
        yield


def _decode(kind, meta, t, text: TextPrompt | None = None):
    model = fixture_model(kind)
    frame, feats = image_features(meta["image"], kind)
    sampler = recorded_sampler(meta, t, kind=kind)
    visual = None
    with torch.no_grad():
        if "decoder_input.spatial_query_pos_mask" in t:
            visual = model.encode_visual_prompt(
                feats,
                t["decoder_input.spatial_query_pos_mask"][0].bool(),
                t["decoder_input.spatial_query_neg_mask"][0].bool(),
                sampler,
            )
        out = model.decode(feats, visual=visual, text=text, memory_mask=t.get("decoder_input.prev_mask"), sampler=sampler)
    return model, frame, feats, visual, out


def _check_layers(kind, model, out, t):
    vocab = vocabulary_embeddings(kind)
    for i, pred in enumerate(out.predictions):
        for name, value in (
            ("class_embed", pred.class_embed),
            ("mask_embed", pred.mask_embed),
            ("class_logits", model.class_logits(pred.class_embed, vocab)),
        ):
            key = f"decoder.layer{i}.{name}"
            if key in t:
                assert_close(value, t[key], key)
    key = f"decoder.layer{len(out.predictions) - 1}.masks"
    if key in t:
        assert_close(out.last.masks[:, : t[key].shape[1]], t[key], key)
    if QueryGroup.OBJECT in out.ranges:  # official pred_captions: the object queries' last class embeddings
        compare(t, "output.pred_captions", _group(out, QueryGroup.OBJECT, out.last.class_embed))


def _group(out, name, tensor):
    s, e = out.ranges[name]
    return tensor[:, s:e]


def test_generic_segmentation_matches_official(kind):
    meta, t = case("case_a_generic", kind)
    model, frame, feats, _, out = _decode(kind, meta, t)
    _check_layers(kind, model, out, t)
    logits = model.class_logits(_group(out, QueryGroup.OBJECT, out.last.class_embed), vocabulary_embeddings(kind))
    masks = _group(out, QueryGroup.OBJECT, out.last.masks)
    compare(t, "output.pred_logits", logits)
    compare(t, "output.pred_masks", masks)

    # post-processing happens before inference (panoptic/instance on): upsample, crop, resize
    mask_orig = sem_seg_postprocess(upsample_to_input(masks[0], frame.padded_size), frame.resized_size, frame.original_size)
    compare(t, "post.sem_seg", semantic_inference(logits[0], mask_orig))

    classes = meta["classes"]
    is_thing = [c in meta["thing_classes"] for c in classes]
    cfg = model.config.inference
    pano = panoptic_inference(logits[0], mask_orig, is_thing, cfg.object_mask_threshold, cfg.overlap_threshold)
    if "post.panoptic_seg" in t:
        assert torch.equal(pano.segmentation, t["post.panoptic_seg"])
    expected = [(s["id"], s["category_id"], s["isthing"]) for s in meta.get("panoptic_segments_info", [])]
    if "panoptic_segments_info" in meta:
        assert [(s["id"], s["label_id"], s["isthing"]) for s in pano.segments] == expected

    inst = instance_inference(logits[0], mask_orig, cfg.detections_per_image, thing_only=is_thing)
    if "post.instances.scores" not in t:
        return
    order = inst.scores.argsort(descending=True)
    ref_order = t["post.instances.scores"].argsort(descending=True)
    assert_close(inst.scores[order], t["post.instances.scores"][ref_order], "instances.scores")
    assert torch.equal(inst.label_ids[order], t["post.instances.pred_classes"][ref_order])
    assert torch.equal(inst.masks[order], t["post.instances.pred_masks"][ref_order].bool())


def test_grounding_matches_official(kind):
    meta, t = case("case_b_grounding", kind)
    model = fixture_model(kind)
    with torch.no_grad():
        text = model.encode_text([meta["text"]])
    compare(t, "decoder_input.grounding_tokens", text.tokens)
    compare(t, "text.class_emb", text.sentence_embeddings)
    assert torch.equal(text.padding, t["decoder_input.grounding_nonzero_mask"].bool())
    model, frame, _, _, out = _decode(kind, meta, t, text)
    _check_layers(kind, model, out, t)
    gtexts = _group(out, QueryGroup.GROUNDING, out.last.class_embed)
    compare(t, "output.pred_gtexts", gtexts)
    sim, matched = select_grounding(gtexts[0], text.sentence_embeddings, model.text_encoder.logit_scale)
    compare(t, "post.out_prob", sim)
    if "post.matched_id" in t:
        assert torch.equal(matched, t["post.matched_id"])
    gmask = _group(out, QueryGroup.GROUNDING, out.last.masks)[0, matched]
    result = sem_seg_postprocess(upsample_to_input(gmask, frame.padded_size), frame.resized_size, frame.original_size)
    compare(t, "post.grounding_mask", result)


def _check_spatial(model, frame, visual, out, t):
    smaskembs = _group(out, QueryGroup.SPATIAL, out.last.mask_embed)
    compare(t, "output.pred_smaskembs", smaskembs)
    compare(t, "output.pred_pspatials", visual.positive_mean)
    compare(t, "output.pred_nspatials", visual.negative_mean)
    compare(t, "output.pred_stexts", _group(out, QueryGroup.SPATIAL, out.last.class_embed))
    k = visual.num_objects
    q_obj = torch.arange(k).repeat_interleave(smaskembs.shape[1] // k)
    chosen = select_spatial(smaskembs[0], visual.positive_mean[0], q_obj)
    prev = _group(out, QueryGroup.SPATIAL, out.last.masks)[0, chosen][None]
    compare(t, "output.prev_mask", prev)
    return prev


@pytest.mark.parametrize("name", SPATIAL_CASES)
def test_visual_prompt_matches_official(kind, name):
    meta, t = case(name, kind)
    model, frame, _, visual, out = _decode(kind, meta, t)
    _check_layers(kind, model, out, t)
    prev = _check_spatial(model, frame, visual, out, t)
    if "post.pred_mask_ori" in t:  # official evaluate_interactive_single: bicubic up, crop, bicubic resize
        up = F.interpolate(prev, size=frame.padded_size, mode="bicubic")
        crop = up[:, :, : frame.resized_size[0], : frame.resized_size[1]]
        logits = F.interpolate(crop, size=frame.original_size, mode="bicubic")[:, 0]
        assert_masks_equal(logits.sigmoid() > 0.5, t["post.pred_mask_ori"], logits, 0.0, "post.pred_mask_ori")


def test_text_plus_point_composition_matches_official(kind):
    meta, t = case("case_f_text_plus_point", kind)
    model = fixture_model(kind)
    with torch.no_grad():
        text = model.encode_text([meta["text"]])
        quirk = model.encode_text([meta["text"]], official_sign_mask=True)
    compare(t, "decoder_input.grounding_tokens", text.tokens)
    assert not text.padding.any()  # our default: every real token takes part
    assert torch.equal(quirk.padding, t["decoder_input.grounding_nonzero_mask"].bool())
    model, frame, _, visual, out = _decode(kind, meta, t, quirk)
    _check_layers(kind, model, out, t)
    compare(t, "output.pred_gtexts", _group(out, QueryGroup.GROUNDING, out.last.class_embed))
    prev = _check_spatial(model, frame, visual, out, t)
    if "post.mask_iou" in t:
        up = F.interpolate(prev, size=frame.padded_size, mode="bilinear")
        crop = up[:, :, : frame.resized_size[0], : frame.resized_size[1]]
        pred = F.interpolate(crop, size=frame.original_size, mode="bilinear")[:, 0].sigmoid() > 0.5
        gt = t["gt_mask_for_iou"].bool()
        iou = (pred & gt).sum() / (pred | gt).sum()
        assert abs(float(iou) - float(t["post.mask_iou"][0])) < 1e-3


def test_reference_source_tokens_match_official(kind):
    meta, t = case("case_e_visual_reference", kind)
    model = fixture_model(kind)
    frame, feats = image_features(meta["source_image"], kind)
    sampler = recorded_sampler(meta, t, prefix="source.sampling.", kind=kind)
    region = frame.mask_to_model(t["source.prompt_mask"][0].bool())  # image size -> zero-padded model frame
    if "source.decoder_input.spatial_query_pos_mask" in t:
        assert torch.equal(region, t["source.decoder_input.spatial_query_pos_mask"][0].bool())
    with torch.no_grad():
        tokens = model.encode_visual_prompt(feats, region, torch.zeros_like(region), sampler)
    compare(t, "refimg.spatial_query_pos", tokens.positive_mean)
    compare(t, "refimg.spatial_query_neg", tokens.negative_mean)
    for i, tok in enumerate(tokens.tokens):
        assert_close(tok, t[f"refimg.src_spatial_queries.{i}"], f"refimg.src_spatial_queries.{i}")
        assert torch.equal(tokens.padding[i], t[f"refimg.src_spatial_maskings.{i}"].bool())
