"""The fast interactive path gives the official outputs: per-image cache, prompt-only queries, low-res masks.

``Seem.cache_features`` + ``decode(object_queries=False, intermediate=False)`` is what every
``SeemPredictor.predict`` round runs. Its last-layer outputs are compared with the official golden tensors
(tolerance 1e-4, as the layer-by-layer parity tests) and with the full decoder pass, on both fixtures (``kind``).
"""

from __future__ import annotations

import pytest
import torch

from seem.modeling.decoder import QueryGroup
from seem.modeling.layers import SelfAttentionLayer
from seem.postprocess import select_grounding, select_spatial

from _fixture import require_fixture
from _parity import case, compare, fixture_model, image_features, recorded_sampler, vocabulary_embeddings

SPATIAL_CASES = ["case_c1_point_round1", "case_c2_point_round2_neg", "case_d1_box", "case_d2_scribble"]


@pytest.fixture(autouse=True)
def _fixture_present(kind):
    require_fixture(kind)
    with torch.no_grad():
        yield


def _decode_both(kind, meta, t, text=None):
    """(full decoder pass, fast pass) on the case's image with the official draws replayed in each."""
    model = fixture_model(kind)
    _, feats = image_features(meta["image"], kind)
    cached = model.cache_features(feats)
    outs = []
    for fast in (False, True):
        sampler = recorded_sampler(meta, t, kind=kind)
        visual = None
        if "decoder_input.spatial_query_pos_mask" in t:
            visual = model.encode_visual_prompt(feats, t["decoder_input.spatial_query_pos_mask"][0].bool(),
                                                t["decoder_input.spatial_query_neg_mask"][0].bool(), sampler)
        outs.append(model.decode(cached if fast else feats, visual=visual, text=text,
                                 memory_mask=t.get("decoder_input.prev_mask"), sampler=sampler,
                                 object_queries=not fast or visual is None and text is None, intermediate=not fast))
    return model, visual, outs[0], outs[1]


def _group(out, name, tensor):
    s, e = out.ranges[name]
    return tensor[:, s:e]


@pytest.mark.parametrize("name", SPATIAL_CASES)
def test_fast_visual_prompt_round_matches_official(kind, name):
    meta, t = case(name, kind)
    model, visual, full, fast = _decode_both(kind, meta, t)
    assert QueryGroup.OBJECT not in fast.ranges and len(fast.predictions) == 1
    smaskembs = _group(fast, QueryGroup.SPATIAL, fast.last.mask_embed)
    compare(t, "output.pred_smaskembs", smaskembs)
    compare(t, "output.pred_stexts", _group(fast, QueryGroup.SPATIAL, fast.last.class_embed))
    k = visual.num_objects
    chosen = select_spatial(smaskembs[0], visual.positive_mean[0], torch.arange(k).repeat_interleave(smaskembs.shape[1] // k))
    prev = _group(fast, QueryGroup.SPATIAL, fast.last.masks)[0, chosen][None]
    assert compare(t, "output.prev_mask", prev)
    # and the same as the full pass (object queries, full-resolution intermediate masks)
    torch.testing.assert_close(_group(fast, QueryGroup.SPATIAL, fast.last.masks),
                               _group(full, QueryGroup.SPATIAL, full.last.masks), atol=1e-4, rtol=0)


def test_fast_grounding_round_matches_official(kind):
    meta, t = case("case_b_grounding", kind)
    model = fixture_model(kind)
    text = model.encode_text([meta["text"]])
    _, _, full, fast = _decode_both(kind, meta, t, text)
    gtexts = _group(fast, QueryGroup.GROUNDING, fast.last.class_embed)
    assert compare(t, "output.pred_gtexts", gtexts)
    _, matched = select_grounding(gtexts[0], text.sentence_embeddings, model.text_encoder.logit_scale)
    torch.testing.assert_close(_group(fast, QueryGroup.GROUNDING, fast.last.masks)[0, matched],
                               _group(full, QueryGroup.GROUNDING, full.last.masks)[0, matched], atol=1e-4, rtol=0)


def test_cached_generic_pass_matches_official(kind):
    meta, t = case("case_a_generic", kind)
    model = fixture_model(kind)
    _, feats = image_features(meta["image"], kind)
    out = model.decode(model.cache_features(feats), sampler=recorded_sampler(meta, t, kind=kind), intermediate=False)
    logits = model.class_logits(_group(out, QueryGroup.OBJECT, out.last.class_embed), vocabulary_embeddings(kind))
    assert compare(t, "output.pred_logits", logits)
    assert compare(t, "output.pred_masks", _group(out, QueryGroup.OBJECT, out.last.masks))


def test_self_attention_rows_are_the_rows_of_the_full_output():
    torch.manual_seed(0)
    for pre_norm in (False, True):
        layer = SelfAttentionLayer(32, 4, normalize_before=pre_norm).eval()
        x, pos = torch.randn(10, 1, 32), torch.randn(10, 1, 32)
        mask = torch.rand(4, 10, 10) < 0.3
        mask[:, :, 0] = False  # every row sees at least one key
        rows = torch.tensor([0, 1, 2, 7, 9])
        torch.testing.assert_close(layer(x, mask, pos, rows=rows), layer(x, mask, pos)[rows], atol=1e-6, rtol=0)


def test_decoding_nothing_without_object_queries_is_refused(kind):
    model = fixture_model(kind)
    _, feats = image_features(case("case_a_generic", kind)[0]["image"], kind)
    with pytest.raises(ValueError, match="nothing to decode"):
        model.decode(feats, object_queries=False)


def test_point_sample_equals_grid_sample_and_is_deterministic_in_bf16():
    import torch.nn.functional as F

    from seem.modeling.visual_sampler import point_sample

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 7, 9, generator=g)
    pts = torch.rand(2, 50, 2, generator=g)
    pts[:, :4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.5]])  # corners and borders
    grid = 2.0 * pts.flip(-1) - 1.0
    expected = F.grid_sample(feats, grid[:, :, None, :], mode="bilinear", align_corners=True).squeeze(3)
    torch.testing.assert_close(point_sample(feats, pts), expected, atol=1e-5, rtol=0)
    strided = feats.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2).bfloat16()  # non-contiguous bf16
    first = point_sample(strided, pts)
    assert first.dtype == torch.bfloat16 and torch.isfinite(first).all()
    assert torch.equal(first, point_sample(strided, pts))
    torch.testing.assert_close(first.float(), expected, atol=0.05, rtol=0.02)
