"""Pixel decoders (transformer encoder + FPN; MSDeformAttn) and sine position encoding: parity with the official
code on both golden fixtures (``kind``: the Focal one has the FPN decoder, the SAM-ViT one the deformable one)."""

from __future__ import annotations

import math

import torch

from seem.build import build_pixel_decoder
from seem.configs import PixelDecoderConfig
from seem.modeling.msdeform_pixel_decoder import MSDeformAttnPixelDecoder
from seem.modeling.pixel_decoder import PixelDecoderOutput, TransformerEncoderPixelDecoder
from seem.modeling.position_encoding import PositionEmbeddingSine
from seem.official_config import config_from_official

from _fixture import (
    fixture_backbone,
    fixture_pixel_decoder,
    image_names,
    load_official_config,
    load_tensors,
    max_abs_diff,
    model_input,
    require_fixture,
    strip_prefix,
)

TOL = 1e-4  # README: a faithful re-implementation matches to ~1e-5
PREFIX = "sem_seg_head.pixel_decoder."


def _compare(out: PixelDecoderOutput, expected: dict[str, torch.Tensor], tag: str) -> dict[str, float]:
    diffs = {
        f"{tag}.mask_features": max_abs_diff(out.mask_features, expected["pixel_decoder.mask_features"]),
        f"{tag}.transformer_encoder_features": max_abs_diff(
            out.transformer_encoder_features, expected["pixel_decoder.transformer_encoder_features"]
        ),
    }
    assert len(out.multi_scale_features) == 3
    for i, feature in enumerate(out.multi_scale_features):
        diffs[f"{tag}.multi_scale_features.{i}"] = max_abs_diff(
            feature, expected[f"pixel_decoder.multi_scale_features.{i}"]
        )
    return diffs


def _fixture_modules(path):
    weights = load_tensors(path / "model.safetensors")
    return fixture_backbone(path, weights), fixture_pixel_decoder(path, weights)


def test_pixel_decoder_keys_equal_official_keys(kind):
    path = require_fixture(kind)
    decoder = build_pixel_decoder(config_from_official(load_official_config(path)))
    official = {k: tuple(v.shape) for k, v in strip_prefix(load_tensors(path / "model.safetensors"), PREFIX).items()}
    assert {k: tuple(v.shape) for k, v in decoder.state_dict().items()} == official


def test_pixel_decoder_matches_official_outputs(kind):
    """Fed the stored official backbone features (isolates the pixel decoder) and, end to end, our own backbone."""
    path = require_fixture(kind)
    backbone, decoder = _fixture_modules(path)
    names = image_names(path)
    assert names, "fixture has no features_<image>.safetensors"
    diffs: dict[str, float] = {}
    for name in names:
        expected = load_tensors(path / f"features_{name}.safetensors")
        stored_backbone = {k: expected[f"backbone.{k}"] for k in ("res2", "res3", "res4", "res5")}
        with torch.no_grad():
            isolated = decoder(stored_backbone)
            end_to_end = decoder(backbone(model_input(path, name)))
        diffs.update(_compare(isolated, expected, f"{name}.from_official_backbone"))
        if isinstance(decoder, MSDeformAttnPixelDecoder):
            diffs.update(_compare_deform_internals(decoder, stored_backbone, expected, name))
        diffs.update(_compare(end_to_end, expected, f"{name}.end_to_end"))
        strides = [t.shape[-1] for t in isolated.multi_scale_features]
        assert strides == sorted(strides), "multi_scale_features must go from coarse (1/32) to fine (1/8)"
    bad = {k: v for k, v in diffs.items() if v > TOL}
    assert not bad, f"pixel decoder differs from the official outputs: {bad} (all: {diffs})"


def _compare_deform_internals(decoder, features, expected, tag):
    """The deformable encoder's inputs, levels, reference layout, layer-0 sampling and each layer's output."""
    with torch.no_grad():
        levels, outs, _ = decoder.encode(features)
        sizes = [tuple(t.shape[-2:]) for t in levels]
        src = torch.cat([t.flatten(2).transpose(1, 2) for t in levels], 1)
        pos = torch.cat([decoder.pe_layer(t).flatten(2).transpose(1, 2) + decoder.transformer.level_embed[i]
                         for i, t in enumerate(levels)], 1)
        ref = decoder.transformer.reference_points(sizes, src.device)
        locations, weights = decoder.transformer.encoder.layers[0].self_attn.sampling(src + pos, ref, sizes)
    key = "pixel_decoder.encoder."
    assert torch.equal(torch.tensor(sizes), expected[key + "spatial_shapes"])
    starts = torch.tensor([0, *torch.tensor([h * w for h, w in sizes]).cumsum(0)[:-1].tolist()])
    assert torch.equal(starts, expected[key + "level_start_index"])
    diffs = {f"{tag}.input_proj.{i}": max_abs_diff(t, expected[f"{key}input_proj.{i}"]) for i, t in enumerate(levels)}
    diffs.update({f"{tag}.layer{i}": max_abs_diff(o, expected[f"{key}layer{i}"])
                  for i, o in enumerate(outs) if f"{key}layer{i}" in expected})
    diffs[f"{tag}.sampling_locations"] = max_abs_diff(locations, expected[key + "layer0.self_attn.sampling_locations"])
    diffs[f"{tag}.attention_weights"] = max_abs_diff(weights, expected[key + "layer0.self_attn.attention_weights"])
    return diffs


def test_official_size_shapes_and_key_names():
    """Full official size (Focal-T channels, 512 dims, 6 layers, 8 heads, FFN 2048) with random weights."""
    torch.manual_seed(0)
    config = PixelDecoderConfig(in_channels=(96, 192, 384, 768))
    decoder = TransformerEncoderPixelDecoder(config).eval()
    feats = {f"res{i + 2}": torch.randn(1, c, 16 >> i, 24 >> i) for i, c in enumerate(config.in_channels)}
    with torch.no_grad():
        out = decoder(feats)
    assert tuple(out.mask_features.shape) == (1, 512, 16, 24)
    assert tuple(out.transformer_encoder_features.shape) == (1, 512, 2, 3)
    assert [tuple(t.shape) for t in out.multi_scale_features] == [(1, 512, 2, 3), (1, 512, 4, 6), (1, 512, 8, 12)]

    shapes = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert shapes["input_proj.weight"] == (512, 768, 1, 1) and shapes["input_proj.bias"] == (512,)
    assert shapes["transformer.encoder.layers.5.self_attn.in_proj_weight"] == (1536, 512)
    assert shapes["transformer.encoder.layers.5.linear1.weight"] == (2048, 512)
    assert "transformer.encoder.layers.6.norm1.weight" not in shapes
    assert "transformer.encoder.norm.weight" not in shapes  # post-norm: no final encoder norm
    for i, c in enumerate(config.in_channels[:-1]):
        assert shapes[f"adapter_{i + 1}.weight"] == (512, c, 1, 1)
        assert shapes[f"adapter_{i + 1}.norm.weight"] == (512,)
        assert f"adapter_{i + 1}.bias" not in shapes
    for i in range(4):
        assert shapes[f"layer_{i + 1}.weight"] == (512, 512, 3, 3)
        assert shapes[f"layer_{i + 1}.norm.bias"] == (512,)
        assert f"layer_{i + 1}.bias" not in shapes
    assert "adapter_4.weight" not in shapes
    assert shapes["mask_features.weight"] == (512, 512, 3, 3) and shapes["mask_features.bias"] == (512,)


def test_position_embedding_sine_values():
    """No ``-0.5`` offset: positions are 1..H (1..W), normalised by the last one (+1e-6), times 2*pi."""
    h, w, f = 3, 5, 8
    pos = PositionEmbeddingSine(f, normalize=True)(torch.zeros(2, 7, h, w))
    assert tuple(pos.shape) == (2, 2 * f, h, w)
    y = torch.arange(1, h + 1, dtype=torch.float64) / (h + 1e-6) * 2 * math.pi
    x = torch.arange(1, w + 1, dtype=torch.float64) / (w + 1e-6) * 2 * math.pi
    for c in range(f):
        freq = 10000 ** (2 * (c // 2) / f)
        fn = torch.sin if c % 2 == 0 else torch.cos
        assert torch.allclose(pos[0, c, :, 0].double(), fn(y / freq), atol=1e-6)
        assert torch.allclose(pos[1, f + c, 0, :].double(), fn(x / freq), atol=1e-6)
    # A padding mask excludes padded pixels from the count: the valid part equals the unpadded encoding.
    mask = torch.zeros(1, h, w + 2, dtype=torch.bool)
    mask[..., w:] = True
    padded = PositionEmbeddingSine(f)(torch.zeros(1, 1, h, w + 2), mask)
    assert torch.allclose(padded[..., :w], pos[:1], atol=1e-6)
