"""Kernels of a prompt round in the reduced-precision modes: few-query attention over bf16 keys/values, click
features gathered from bf16 mask features, row-major cached mask features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seem.click_fit import click_features
from seem.modeling.decoder_types import DecoderImageCache, LevelFeatures
from seem.modeling.layers import MIN_MATMUL_KEY_ELEMENTS, MultiheadAttention, reduced_precision_attention
from seem.modeling.seem import ImageFeatures
from seem.transforms import plan_frame


def _qkv(heads=4, length=3, keys=1500, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, heads, n, dim, generator=g) for n in (length, keys, keys))
    return q, k, v


def test_reduced_precision_attention_matches_sdpa_within_bf16_rounding():
    q, k, v = _qkv()
    allowed = torch.rand(1, 1, 3, k.shape[2], generator=torch.Generator().manual_seed(1)) > 0.4
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    out = reduced_precision_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), allowed)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    # inputs rounded to bf16 (2^-9 relative), scores and output rounded once more
    assert (out.float() - ref).abs().max() < 0.03
    assert not torch.allclose(out.float(), ref, atol=1e-6)  # it did run in bf16
    # fp32 inputs: the same maths as SDPA
    assert torch.allclose(reduced_precision_attention(q, k, v, allowed), ref, atol=1e-5)
    assert torch.allclose(reduced_precision_attention(q, k, v, None), F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def test_reduced_precision_attention_fully_blocked_row_attends_to_nothing():
    q, k, v = _qkv(keys=64)
    allowed = torch.ones(1, 1, 3, 64, dtype=torch.bool)
    allowed[..., 1, :] = False
    out = reduced_precision_attention(q, k, v, allowed)
    assert torch.isfinite(out).all()
    assert out[:, :, 1].abs().max() == 0
    assert torch.allclose(out[:, :, 0], F.scaled_dot_product_attention(q, k, v)[:, :, 0], atol=1e-5)


@pytest.mark.parametrize("keys", [64, 2048])
def test_attention_over_bf16_cache_agrees_with_fp32(keys):
    """MultiheadAttention with a bf16 key/value cache: the flash kernel below the size threshold, two matmuls
    above it; both within bf16 rounding of the fp32 result."""
    torch.manual_seed(0)
    attn = MultiheadAttention(128, 4).eval()
    memory, query = torch.randn(keys, 1, 128), torch.randn(3, 1, 128)
    assert (keys * 128 >= MIN_MATMUL_KEY_ELEMENTS) == (keys == 2048)
    k, v = attn.project_kv(memory, memory)
    blocked = torch.rand(1, 1, 3, keys) > 0.7
    ref = attn(query, None, None, blocked, kv=(k, v))
    out = attn(query, None, None, blocked, kv=(k.bfloat16(), v.bfloat16()))
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_click_features_from_bf16_mask_features_match_grid_sample():
    frame = plan_frame((100, 150), 64, None, 32)
    feats = torch.randn(1, 16, frame.padded_size[0] // 4, frame.padded_size[1] // 4)
    # corners, border and interior clicks, in original-image pixels
    points = np.array([[[0.0, 0.0], [149.9, 99.9], [75.3, 40.2]], [[10.0, 99.0], [149.0, 0.5], [3.3, 50.0]]])
    ref = click_features(feats, points, frame)
    out = click_features(feats.bfloat16(), points, frame)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 16)
    exact = click_features(feats.double(), points, frame)  # the gather path at full precision
    assert torch.allclose(exact.float(), ref, atol=1e-5)
    assert (out - ref).abs().max() < 0.05


def test_cached_mask_features_are_row_major():
    """Prompt rounds read mask features as (B, Dm, h*w) views; channels-last ones would be copied each round."""
    mf = torch.randn(1, 8, 6, 10).contiguous(memory_format=torch.channels_last)
    levels = LevelFeatures([torch.randn(60, 1, 8)], [torch.randn(60, 1, 8)], [(6, 10)])
    cache = DecoderImageCache([torch.randn(2, 60, 4)], [torch.randn(2, 60, 4)], [mf[:, :, :3, :5].contiguous(
        memory_format=torch.channels_last)])
    feats = ImageFeatures(mf, [mf], levels, (24, 40), cache)
    for out in (feats.to(torch.bfloat16), feats.to(torch.bfloat16, torch.float32), feats.with_cache_dtype(torch.bfloat16)):
        assert out.mask_features.is_contiguous() and out.cache is not None
        assert all(f.is_contiguous() for f in out.cache.level_mask_features)
        assert torch.equal(out.mask_features.float(), mf.to(out.mask_features.dtype).float())


@pytest.mark.parametrize("original", [(512, 683), (333, 250), (1000, 1500)])
@pytest.mark.parametrize("mode, antialias", [("bilinear", True), ("bicubic", False)])
def test_banded_resampling_equals_the_dense_product_and_interpolation(original, mode, antialias):
    frame = plan_frame(original, 512, None, 32)
    h, w = frame.padded_size[0] // 4, frame.padded_size[1] // 4
    logits = torch.randn(2, h, w, generator=torch.Generator().manual_seed(0))
    rows, cols = frame.resampling_matrices((h, w), mode, antialias)
    out = frame.logits_to_original(logits, mode, antialias)
    assert out.shape == (2, *original)
    assert torch.allclose(out, rows @ logits @ cols, atol=1e-5)
    # the official chain: upsample to the padded size, crop, resize to the original size
    up = F.interpolate(logits[None], size=frame.padded_size, mode=mode, align_corners=False)[0]
    up = up[:, : frame.resized_size[0], : frame.resized_size[1]]
    if frame.resized_size != frame.original_size:
        up = F.interpolate(up[None], size=original, mode="bicubic", align_corners=False, antialias=antialias)[0]
    assert torch.allclose(out, up, atol=1e-4)


def test_row_bands_cover_every_non_zero():
    from seem.banded import row_bands

    m = torch.zeros(150, 200)
    for i in range(150):
        m[i, (i + 3) % 200] = 1.0
        m[i, min(199, i + 20)] = 2.0
    m[70:80] = 0  # an all-zero stretch inside a block
    m[128:] = 0  # an all-zero last block
    bands = row_bands(m, block=64)
    assert [(a, b) for a, b, _, _ in bands] == [(0, 64), (64, 128), (128, 150)]
    covered = torch.zeros_like(m, dtype=torch.bool)
    for a, b, s, e in bands:
        covered[a:b, s:e] = True
    assert covered[m != 0].all()
    assert bands[2][2] == bands[2][3]  # empty band
    assert bands[0] == (0, 64, 3, 84)


def test_reduced_precision_attention_in_query_chunks_matches_sdpa():
    """Many queries over many keys go in chunks of rows; a fully blocked row in a later chunk attends to nothing."""
    from seem.modeling.layers import SCORE_CHUNK_BYTES

    q, k, v = _qkv(heads=8, length=70, keys=4096, dim=64, seed=3)
    assert SCORE_CHUNK_BYTES // (4 * 8 * 4096) < 70  # several chunks
    allowed = torch.rand(1, 1, 70, 4096, generator=torch.Generator().manual_seed(4)) > 0.5
    allowed[..., 60, :] = False
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    out = reduced_precision_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), allowed).float()
    assert out[:, :, 60].abs().max() == 0
    keep = torch.ones(70, dtype=torch.bool)
    keep[60] = False
    assert (out[:, :, keep] - ref[:, :, keep]).abs().max() < 0.03
    unmasked = reduced_precision_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), None).float()
    assert (unmasked - F.scaled_dot_product_attention(q, k, v)).abs().max() < 0.03


def test_bf16_all_encodes_text_prompts_with_a_bf16_copy_and_vocabularies_in_fp32():
    from seem import SeemPredictor, from_pretrained

    model = from_pretrained()
    pred = SeemPredictor(model, precision="bf16-all", vocabulary_cache_dir=None)
    text_encoder = pred.decoding_model.text_encoder
    assert text_encoder is not model.text_encoder
    assert {p.dtype for p in text_encoder.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.text_encoder.parameters()} == {torch.float32}
    ref, low = model.encode_text(["a red car"]), pred.decoding_model.encode_text(["a red car"])
    cos = F.cosine_similarity(ref.sentence_embeddings, low.sentence_embeddings.float())
    assert cos.item() > 0.99
    # class-name vocabularies come from the fp32 model (the label scores of every mode)
    voc = pred.vocabularies.get(("car", "background"))
    assert voc.dtype == torch.float32
    assert torch.allclose(voc, model.embed_vocabulary(["car", "background"]), atol=1e-6)


def test_packed_linear_matches_f_linear_and_follows_weight_changes():
    """Inference on a oneDNN-packed weight: the same products as F.linear (fp32 rounding), repacked after an
    in-place update and after a dtype change; autograd, small weights and foreign autocast use F.linear."""
    import copy

    from seem.modeling.packed_linear import MIN_PACKED_ELEMENTS, Linear, _dtypes

    torch.manual_seed(0)
    layer = Linear(512, 512).eval()
    assert layer.weight.numel() >= MIN_PACKED_ELEMENTS
    x = torch.randn(3, 1, 512)
    with torch.no_grad():
        out = layer(x)
        if torch.float32 in _dtypes():
            assert layer.pack._entry is not None
        assert torch.allclose(out, F.linear(x, layer.weight, layer.bias), atol=1e-5)
        layer.weight.mul_(-2.0)  # in place: the version counter moves, the packed copy is remade
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
        low = copy.deepcopy(layer).to(torch.bfloat16)
        assert low.pack is not layer.pack
        ref = F.linear(x.bfloat16(), low.weight, low.bias).float()
        assert (low(x.bfloat16()).float() - ref).abs().max() < 1e-2
        with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 input cast as autocast would
            assert low(x).dtype == torch.bfloat16
            assert layer(x).dtype == torch.bfloat16  # fp32 weight under bf16 autocast: F.linear's rule
    y = layer(x.requires_grad_())
    y.sum().backward()  # autograd runs on F.linear
    assert layer.weight.grad is not None and x.grad is not None
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_reduced_precision_attention_accepts_every_mask_shape_sdpa_does():
    q, k, v = _qkv(heads=8, length=40, keys=5632, dim=64, seed=5)
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    g = torch.Generator().manual_seed(6)
    for allowed in (torch.rand(40, 5632, generator=g) > 0.5, torch.rand(1, 1, 1, 5632, generator=g) > 0.5,
                    torch.rand(1, 40, 5632, generator=g) > 0.5):
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        assert (reduced_precision_attention(qb, kb, vb, allowed).float() - ref).abs().max() < 0.03


def test_packed_linear_is_not_fooled_by_a_new_tensor_at_a_freed_address_and_clears_on_train():
    from seem.modeling.packed_linear import Linear, WeightPack

    pack, x = WeightPack(), torch.randn(3, 512)
    with torch.no_grad():
        for _ in range(20):
            w = torch.randn(512, 512)
            assert torch.allclose(pack.linear(x, w, None), F.linear(x, w), atol=1e-4)
            del w
        layer = Linear(512, 512).eval()
        layer(x)
        layer.weight.data.copy_(torch.randn(512, 512))  # around the version counter
        layer.train().eval()
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-4)
        strided = Linear(512, 768)
        strided.bias = torch.nn.Parameter(torch.randn(1536)[::2])
        assert torch.allclose(strided(x), F.linear(x, strided.weight, strided.bias), atol=1e-4)


def test_mask_scores_and_banded_products_handle_edge_shapes():
    from seem.banded import left_product, right_product
    from seem.postprocess import _masks_and_scores

    masks, scores = _masks_and_scores(torch.randn(0, 50, 60))
    assert masks.shape == (0, 50, 60) and scores.shape == (0,)
    with pytest.raises(ValueError, match="do not multiply"):
        left_product(torch.zeros(300, 200), torch.zeros(150, 7))
    with pytest.raises(ValueError, match="do not multiply"):
        right_product(torch.zeros(7, 150), torch.zeros(200, 300))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.fx's own use of torch.jit
def test_packed_linear_under_forward_ad_and_fx_uses_f_linear():
    from seem.modeling.packed_linear import Linear

    layer = Linear(512, 512).requires_grad_(False)
    x, t = torch.randn(3, 512), torch.randn(3, 512)
    _, tangent = torch.func.jvp(layer, (x,), (t,))
    assert torch.allclose(tangent, F.linear(t, layer.weight), atol=1e-4)
    traced = torch.fx.symbolic_trace(layer)
    with torch.no_grad():
        assert torch.allclose(traced(x), F.linear(x, layer.weight, layer.bias), atol=1e-4)


@pytest.mark.parametrize("src, dst", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                                      (torch.float32, torch.bfloat16), (torch.bfloat16, torch.bfloat16)])
def test_row_major_copies_channels_last_maps_exactly(src, dst):
    from seem.modeling.layout import row_major

    t = torch.randn(2, 24, 7, 9).to(src).contiguous(memory_format=torch.channels_last)
    out = row_major(t, dst)
    assert out.is_contiguous() and out.dtype == dst and torch.equal(out, t.to(dst).contiguous())
    plain = torch.randn(2, 3, 4, 5)
    assert row_major(plain) is plain
    assert torch.equal(row_major(plain[:, :, ::2], torch.bfloat16), plain[:, :, ::2].bfloat16())


def test_attention_projections_pack_once_also_for_weights_made_in_inference_mode():
    """A bf16 copy made under inference_mode (the predictor's) has inference-tensor weights, whose views get a
    new base object per call: the q / k / v packs are tied to the parameter, so a round does not repack them."""
    import copy

    from seem.modeling.packed_linear import _dtypes

    if torch.bfloat16 not in _dtypes():
        pytest.skip("no oneDNN bf16 here")
    attn = MultiheadAttention(512, 8).eval()
    x = torch.randn(3, 512).bfloat16()
    with torch.inference_mode():
        low = copy.deepcopy(attn).to(torch.bfloat16)
        low.project_q(x)
        low.project_kv_rows(x, x)
        entries = [p._entry for p in low.in_proj_packs]
        low.project_q(x)
        low.project_kv_rows(x, x)
        assert all(e is not None and e is p._entry for e, p in zip(entries, low.in_proj_packs))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_feature_logits_from_packed_features_match_bmm_and_pack_once_per_image(dtype):
    from seem.modeling.feature_products import feature_logits

    g = torch.Generator().manual_seed(7)
    feats = torch.randn(1, 128, 40, 56, generator=g).to(dtype)
    embed = torch.randn(1, 3, 128, generator=g)
    ref = torch.bmm(embed.to(dtype).float(), feats.float().reshape(1, 128, -1)).view(1, 3, 40, 56)
    packs: dict = {}
    with torch.no_grad():
        out = feature_logits(embed, feats, packs, "mask_features")
        entry = packs["mask_features"]._entry if "mask_features" in packs else None
        again = feature_logits(embed, feats, packs, "mask_features")
    assert out.dtype == dtype and out.shape == (1, 3, 40, 56)
    tol = 1e-3 if dtype == torch.float32 else 0.05 * ref.abs().max().item()
    assert (out.float() - ref).abs().max() < tol and torch.equal(out, again)
    if entry is not None:  # oneDNN present: packed once, reused by the next round
        assert packs["mask_features"]._entry is entry
    # autograd (training) multiplies by bmm and gets gradients
    e = embed.clone().requires_grad_()
    feature_logits(e, feats.float(), packs, "other").sum().backward()
    assert e.grad is not None and "other" not in packs


def test_cleared_feature_packs_follow_features_written_in_place():
    from seem.modeling.feature_products import feature_logits

    with torch.inference_mode():  # as the predictor encodes: no version counter on the features
        feats = torch.randn(1, 64, 48, 64)
        embed = torch.randn(1, 2, 64)
        packs: dict = {}
        feature_logits(embed, feats, packs, "mask_features")
        feats.mul_(-1.0)
        packs.clear()
        out = feature_logits(embed, feats, packs, "mask_features")
        ref = torch.bmm(embed, feats.reshape(1, 64, -1)).view(1, 2, 48, 64)
    assert torch.allclose(out, ref, atol=1e-4)
