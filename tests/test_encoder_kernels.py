"""Encoder-side kernels: packed linear layers over many rows and their activations (GELU fused), whole-factor bilinear
downsampling of the cached mask features, and FocalNet's focal modulation against the official formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seem.modeling.backbones.focal import FocalModulation
from seem.modeling.downsample import bilinear_downsample, resize_to_levels
from seem.modeling.packed_linear import MIN_PACKED_ELEMENTS, MIN_PACKED_ROWS, MIN_ROWS_WEIGHT_ELEMENTS, Linear, _dtypes


def _interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("factor", [(2, 2), (4, 4), (8, 8), (3, 3), (2, 3), (5, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_bilinear_downsample_equals_interpolate(factor, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8 * factor[0], 6 * factor[1], generator=g).to(dtype)
    before = x.clone()
    out = bilinear_downsample(x, (8, 6))
    ref = _interpolate(x, (8, 6))
    assert out.dtype == dtype and out.shape == ref.shape and out.is_contiguous()
    tol = {torch.float32: 1e-6, torch.bfloat16: 0.0, torch.float64: 1e-12}[dtype]
    assert (out.double() - ref.double()).abs().max().item() <= tol
    assert torch.equal(x, before)  # slices of the input are never written through


def test_bilinear_downsample_falls_back_where_the_factor_is_not_whole():
    x = torch.randn(1, 3, 10, 15)
    assert torch.equal(bilinear_downsample(x, (4, 6)), _interpolate(x, (4, 6)).contiguous())
    assert torch.equal(bilinear_downsample(x, (10, 15)), x)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtypes", [(torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32),
                                    (torch.float32, torch.float32), (torch.float32, torch.bfloat16)])
def test_resize_to_levels_is_interpolate_in_the_asked_dtype(channels_last, dtypes):
    """The decoder cache's level mask features: what ``F.interpolate`` gives in fp32, cast once to ``dtype``,
    row-major, from either layout (the channels-last bf16 map is pooled in place, one rounding)."""
    source, target = dtypes
    x = torch.randn(1, 16, 32, 48, generator=torch.Generator().manual_seed(1)).to(source)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    sizes = [(16, 24), (8, 12), (4, 6)]
    outs = resize_to_levels(x, sizes, target)
    for out, size in zip(outs, sizes):
        ref = _interpolate(x.float(), size).to(target)
        assert out.dtype == target and out.is_contiguous() and tuple(out.shape[-2:]) == size
        assert (out.float() - ref.float()).abs().max().item() <= (1e-6 if target == torch.float32 else 0.0)


def test_packed_linear_serves_small_weights_over_many_rows():
    """A weight under MIN_PACKED_ELEMENTS is packed once the rows reach MIN_PACKED_ROWS (an encoder's tokens),
    not for a prompt round's few rows, nor a tiny weight; all give F.linear's values."""
    if torch.float32 not in _dtypes():
        pytest.skip("no oneDNN fp32 linear")
    torch.manual_seed(0)
    layer, tiny = Linear(96, 384).eval(), Linear(16, 16).eval()
    assert MIN_ROWS_WEIGHT_ELEMENTS <= layer.weight.numel() < MIN_PACKED_ELEMENTS
    assert tiny.weight.numel() < MIN_ROWS_WEIGHT_ELEMENTS
    with torch.inference_mode():
        few = torch.randn(1, MIN_PACKED_ROWS - 1, 96)
        assert torch.allclose(layer(few), F.linear(few, layer.weight, layer.bias), atol=1e-5)
        assert layer.pack._entry is None
        many = torch.randn(1, 16, MIN_PACKED_ROWS // 16, 96)  # rows counted over every leading axis
        assert torch.allclose(layer(many), F.linear(many, layer.weight, layer.bias), atol=1e-5)
        assert layer.pack._entry is not None
        tiny(torch.randn(4 * MIN_PACKED_ROWS, 16))
        assert tiny.pack._entry is None


@pytest.mark.parametrize("activation", ["relu", "gelu", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_activation_equals_activation_after_the_product(activation, dtype):
    if dtype not in _dtypes():
        pytest.skip(f"no oneDNN {dtype} linear")
    torch.manual_seed(1)
    layer = Linear(64, 256, activation=activation).to(dtype).eval()
    x = torch.randn(2048, 64).to(dtype)  # over MIN_PACKED_ROWS: the packed product
    act = {"relu": F.relu, "gelu": F.gelu, "none": lambda y: y}[activation]
    with torch.inference_mode():
        out = layer(x)
        ref = act(F.linear(x.double(), layer.weight.double(), layer.bias.double()))
    assert layer.pack._entry is not None and out.dtype == dtype
    # bf16: the fused GELU rounds once (after the activation), the unfused form twice
    tol = 1e-5 if dtype == torch.float32 else 2 ** -7 * ref.abs().max().item()
    assert (out.double() - ref).abs().max().item() <= tol
    if dtype == torch.float32:  # autograd and FX tracing run the unfused form, with the same values
        assert torch.allclose(layer(x.requires_grad_()), out, atol=1e-5)
        assert torch.allclose(torch.fx.symbolic_trace(layer)(x.detach()), out, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_activation_keeps_nan_and_hooks_see_the_activated_output(activation):
    """NaN stays NaN (oneDNN's fused ReLU would zero it); the activation is part of the layer's output."""
    torch.manual_seed(3)
    layer = Linear(64, 128, activation=activation).eval()
    seen = []
    layer.register_forward_hook(lambda module, args, out: seen.append(out))
    x = torch.randn(2048, 64)
    x[5, 0] = float("nan")
    with torch.inference_mode():
        out = layer(x)
    assert torch.isnan(out[5]).all() and not torch.isnan(out[:5]).any()
    assert len(seen) == 1 and seen[0] is out and (out[:5] >= -0.2).all()
    assert f"activation={activation}" in repr(layer)


def test_linear_refuses_an_unknown_activation_and_keeps_nn_linear_state():
    with pytest.raises(ValueError, match="activation"):
        Linear(8, 8, activation="silu")
    assert set(Linear(8, 8, activation="gelu").state_dict()) == {"weight", "bias"}


def _official_modulation(m: FocalModulation, x: torch.Tensor) -> torch.Tensor:
    """Official ``FocalModulation.forward`` (NCHW, mean over H then W, gated sum divided at the end)."""
    c = x.shape[-1]
    y = F.linear(x, m.f.weight, m.f.bias).permute(0, 3, 1, 2).contiguous()
    q, ctx, gates = torch.split(y, (c, c, m.focal_level + 1), 1)
    ctx_all = 0
    for level in range(m.focal_level):
        ctx = m.focal_layers[level](ctx)
        ctx_all = ctx_all + ctx * gates[:, level : level + 1]
    ctx_global = F.gelu(ctx.mean(2, keepdim=True).mean(3, keepdim=True))
    ctx_all = ctx_all + ctx_global * gates[:, m.focal_level :]
    if m.scaling_modulator:
        ctx_all = ctx_all / (m.focal_level + 1)
    out = (q * m.h(ctx_all)).permute(0, 2, 3, 1)
    return F.linear(out, m.proj.weight, m.proj.bias)


@pytest.mark.parametrize("scaling", [False, True])
@pytest.mark.parametrize("focal_level", [1, 3])
def test_focal_modulation_equals_the_official_formula(scaling, focal_level):
    torch.manual_seed(2)
    m = FocalModulation(32, focal_level=focal_level, focal_window=3, scaling_modulator=scaling).eval()
    x = torch.randn(2, 24, 20, 32)
    with torch.inference_mode():
        assert torch.allclose(m(x), _official_modulation(m, x), atol=1e-5, rtol=1e-5)


def test_downsample_rounds_once_between_half_types_and_refuses_integers():
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    out = resize_to_levels(x, [(8, 8)], torch.float16)[0]
    assert torch.equal(out, _interpolate(x.float(), (8, 8)).to(torch.float16))
    with pytest.raises(RuntimeError):
        bilinear_downsample(torch.ones(1, 1, 4, 4, dtype=torch.int64), (2, 2))


def test_int8_refuses_a_linear_layer_that_ends_in_an_activation():
    from seem.modeling.int8 import Int8Linear

    with pytest.raises(ValueError, match="gelu"):
        Int8Linear.from_float(Linear(8, 8, activation="gelu"))
    assert isinstance(Int8Linear.from_float(Linear(8, 8)), Int8Linear)
