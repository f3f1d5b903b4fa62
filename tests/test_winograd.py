"""Winograd 3x3 convolutions (``seem.modeling.winograd``): equal to the direct conv, faithful to the official pixel
decoder on both fixtures, and the predictor's fp32 encoder built on them keeps the masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seem import SeemPredictor
from seem.modeling.pixel_decoder import ConvNormAct
from seem.modeling.precision import encoding_copy
from seem.modeling.winograd import (
    F2X2_3X3,
    F4X4_3X3,
    WinogradConv2d,
    transform_weight,
    winograd_conv3x3,
    winograd_copy,
    winograd_eligible,
)

from _fixture import fixture_pixel_decoder, image_names, load_tensors, require_fixture
from _parity import ATOL, case, fixture_model, image_uint8


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max())


@pytest.mark.parametrize("tf", [F2X2_3X3, F4X4_3X3], ids=["F2x2", "F4x4"])
@pytest.mark.parametrize("size", [(13, 10), (16, 24), (1, 1), (5, 3)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fp32_winograd_equals_the_direct_conv(tf, size, channels_last):
    """Odd sizes (partial last tiles), a 1x1 map, batch 2, both memory formats: within 2e-5 of the largest output
    (fp32 direct is within ~3e-6 of float64)."""
    gen = torch.Generator().manual_seed(sum(size))
    x = torch.randn(2, 24, *size, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, bias = torch.randn(40, 24, 3, 3, generator=gen), torch.randn(40, generator=gen)
    expected = F.conv2d(x.double(), w.double(), bias.double(), padding=1)
    for b in (bias, None):
        y = winograd_conv3x3(x, transform_weight(w, tf, torch.float32), b, tf)
        assert y.shape == expected.shape and y.dtype == torch.float32
        assert y.is_contiguous(memory_format=torch.channels_last)
        ref = expected if b is not None else expected - bias.double()[:, None, None]
        assert _rel(y, ref) < 2e-5, f"{tf.m}x{tf.m} tiles, {size}: rel error {_rel(y, ref):.2e}"


def test_chunks_of_tile_rows_give_the_same_result():
    """Bounded memory: one row of tiles at a time (and uneven last chunks) computes the same numbers."""
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 16, 23, 17, generator=gen), torch.randn(8, 16, 3, 3, generator=gen)
    u = transform_weight(w, F4X4_3X3, torch.float32)
    whole = winograd_conv3x3(x, u, None, F4X4_3X3, chunk_bytes=1 << 40)
    for chunk in (1, 3 * 36 * 2 * 5 * 24 * 4):  # one row of tiles; three rows (6 tile rows: 3 + 3)
        assert torch.equal(winograd_conv3x3(x, u, None, F4X4_3X3, chunk_bytes=chunk), whole)
    assert _rel(whole, F.conv2d(x.double(), w.double(), padding=1)) < 2e-5


def test_bf16_products_stay_within_bf16_error():
    """F(2x2, 3x3) with bf16 tile products: within 3 % of the largest output, the order of a direct bf16 conv
    (which is within ~1 %)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 20, 28, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, generator=gen) / 48
    expected = F.conv2d(x.double(), w.double(), padding=1)
    direct = F.conv2d(x.bfloat16(), w.bfloat16(), padding=1)
    y = winograd_conv3x3(x.bfloat16(), transform_weight(w, F2X2_3X3, torch.bfloat16), None, F2X2_3X3)
    assert y.dtype == torch.bfloat16
    assert _rel(y, expected) < max(3e-2, 3 * _rel(direct, expected))


def test_module_applies_norm_and_relu_follows_weight_changes_and_keeps_autograd():
    torch.manual_seed(0)
    conv = ConvNormAct(64, 64, 3, norm="GN", relu=True).eval()
    wino = WinogradConv2d(conv, F4X4_3X3, torch.float32, min_pixels=256)
    x = torch.randn(1, 64, 20, 20)
    assert wino.u is None  # computed on first use
    with torch.no_grad():
        assert _rel(wino(x), conv(x)) < 1e-5
        assert (wino(x) >= 0).all()  # the ReLU ran
        conv.weight.mul_(-2)  # trained / loaded in place: the tile-domain weight follows
        assert _rel(wino(x), conv(x)) < 1e-5
    y = wino(x.requires_grad_())  # autograd: the conv itself, gradients intact
    y.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
    small = torch.randn(1, 64, 8, 8)  # under min_pixels: the conv itself, bit for bit
    with torch.no_grad():
        assert torch.equal(wino(small), conv(small))


def test_eligibility_and_shared_parameters():
    assert winograd_eligible(torch.nn.Conv2d(128, 128, 3, padding=1))
    for conv in (torch.nn.Conv2d(128, 128, 3, padding=1, stride=2), torch.nn.Conv2d(128, 128, 3, padding=2,
                 dilation=2), torch.nn.Conv2d(128, 128, 3, padding=1, groups=2), torch.nn.Conv2d(128, 128, 1),
                 torch.nn.Conv2d(128, 128, 3, padding=1, padding_mode="reflect"), torch.nn.Conv2d(32, 128, 3, padding=1)):
        assert not winograd_eligible(conv)
    with pytest.raises(ValueError, match="3x3"):
        WinogradConv2d(torch.nn.Conv2d(8, 8, 1), F2X2_3X3, torch.float32)
    net = torch.nn.Sequential(torch.nn.Conv2d(128, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(128, 8, 3, padding=1))
    copy = winograd_copy(net, torch.float32)
    assert isinstance(copy[0], WinogradConv2d) and isinstance(copy[2], torch.nn.Conv2d)  # 8 < 128 channels
    assert copy[0].conv.weight is net[0].weight and copy[2].weight is net[2].weight  # shared, not copied


def test_winograd_pixel_decoder_matches_official_outputs(kind):
    """Every 3x3 conv of the fixture's pixel decoder on Winograd (``min_channels=1``): parity with the official
    outputs holds at the same 1e-4."""
    path = require_fixture(kind)
    weights = load_tensors(path / "model.safetensors")
    decoder = winograd_copy(fixture_pixel_decoder(path, weights), torch.float32, min_channels=1)
    assert any(isinstance(m, WinogradConv2d) for m in decoder.modules())
    diffs: dict[str, float] = {}
    for name in image_names(path):
        expected = load_tensors(path / f"features_{name}.safetensors")
        with torch.no_grad():
            out = decoder({k: expected[f"backbone.{k}"] for k in ("res2", "res3", "res4", "res5")})
        ours = {"mask_features": out.mask_features, "transformer_encoder_features": out.transformer_encoder_features}
        ours.update({f"multi_scale_features.{i}": t for i, t in enumerate(out.multi_scale_features)})
        for key, value in ours.items():
            diffs[f"{name}.{key}"] = float((value - expected[f"pixel_decoder.{key}"]).abs().max())
    bad = {k: v for k, v in diffs.items() if v > ATOL}
    assert not bad, f"Winograd pixel decoder differs from the official outputs: {bad}"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_winograd_encoder_keeps_the_fp32_masks(kind):
    """The predictor's fp32 encoder with every pixel-decoder 3x3 conv on Winograd F(4x4) against the plain model on
    the fixture's click, box and scribble regions: mask IoU >= 0.999."""
    require_fixture(kind)
    model = fixture_model(kind)
    plain = SeemPredictor(model, shorter_side=None, max_size=None, vocabulary_cache_dir=None)
    plain._encoding_model = model
    wino = SeemPredictor(model, shorter_side=None, max_size=None, vocabulary_cache_dir=None)
    wino._encoding_model = encoding_copy(model, torch.float32, winograd_min_channels=1)
    for name in ("case_c1_point_round1", "case_d1_box", "case_d2_scribble"):
        meta, t = case(name, kind)
        image = image_uint8(meta["image"], kind)
        h, w = image.shape[:2]
        pos = t["decoder_input.spatial_query_pos_mask"][0, 0, :h, :w].numpy().astype(bool)
        masks = []
        for p in (plain, wino):
            p.set_image(image)
            masks.append(p.predict(masks=pos[None]).masks[0])
        assert masks[0].any() and _iou(*masks) >= 0.999, f"{name}: IoU {_iou(*masks):.4f}"


def test_predictor_encoders_share_the_model_weights():
    """fp32 encodes with the model's own parameters (Winograd convs where wide enough); bf16 copies keep direct
    convs."""
    require_fixture()
    model = fixture_model()
    fp32 = SeemPredictor(model, vocabulary_cache_dir=None).encoding_model
    assert fp32.backbone is model.backbone and fp32.decoder is model.decoder
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert all(p.data_ptr() in ptrs for p in fp32.parameters())
    wide = torch.nn.Sequential(torch.nn.Conv2d(256, 256, 3, padding=1))
    assert isinstance(winograd_copy(wide, torch.float32)[0], WinogradConv2d)
    assert winograd_copy(wide, torch.bfloat16) is wide  # bf16: opt-in only (min_channels given)
    assert isinstance(winograd_copy(wide, torch.bfloat16, min_channels=256)[0], WinogradConv2d)
