"""Winograd minimal filtering for the pixel decoder's 3x3 convolutions (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016).

A stride-1 3x3 convolution producing ``m x m`` outputs per tile is computed as ``Y = A^T [(G g G^T) * (B^T d
B)] A`` over overlapping ``(m + 2) x (m + 2)`` input tiles ``d``: the channel reduction becomes ``(m + 2)^2``
batched matrix products over the tiles, which need ``(m + 2)^2 / (9 m^2)`` of the direct convolution's
multiplications: 0.44 for ``F(2x2, 3x3)``, 0.25 for ``F(4x4, 3x3)``. The pixel decoder's two 512 -> 512 3x3
convs at 1/4 resolution are about 60 % of a Focal-T encode's FLOPs, so this is the encoder's largest saving on
a CPU (oneDNN, which PyTorch's convolutions run on, is not asked for Winograd by PyTorch).

Numerics: the transforms are exact in exact arithmetic; in floating point ``F(4x4, 3x3)`` in fp32 is within
about ``1e-5`` of the largest output (direct fp32: ``3e-6``), ``F(2x2, 3x3)`` with bf16 products within about
``1e-2`` (direct bf16: ``4e-3``). ``F(4x4, 3x3)`` is not used with bf16 products (errors of ``0.1``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class WinogradTransform:
    """The matrices of ``F(m x m, 3 x 3)``: ``bt`` ``(a, a)``, ``g`` ``(a, 3)``, ``at`` ``(m, a)``, ``a = m + 2``
    (Lavin & Gray Eq. 7-10, interpolation points 0, +-1, +-2, infinity)."""

    m: int
    bt: tuple[tuple[float, ...], ...]
    g: tuple[tuple[float, ...], ...]
    at: tuple[tuple[float, ...], ...]

    @property
    def alpha(self) -> int:
        """Input tile side ``m + 2``."""
        return self.m + 2


F2X2_3X3 = WinogradTransform(
    m=2,
    bt=((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
    g=((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
    at=((1, 1, 1, 0), (0, 1, -1, -1)),
)
F4X4_3X3 = WinogradTransform(
    m=4,
    bt=((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0),
        (0, 4, 0, -5, 0, 1)),
    g=((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
       (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
    at=((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
)


def transform_weight(weight: Tensor, tf: WinogradTransform, dtype: torch.dtype) -> Tensor:
    """``(C_out, C_in, 3, 3)`` conv weight -> ``(a*a, C_in, C_out)`` tile-domain weight ``G g G^T`` in ``dtype``
    (computed in float64, rounded once).

    Raises:
        ValueError: ``weight`` is not a 3x3 kernel.
    """
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise ValueError(f"Winograd F(m, 3x3) needs a (C_out, C_in, 3, 3) weight, got {tuple(weight.shape)}")
    g = torch.tensor(tf.g, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ak,oikl,bl->abio", g, weight.detach().double(), g)
    return u.reshape(tf.alpha * tf.alpha, weight.shape[1], weight.shape[0]).to(dtype).contiguous()


def _combine(coefs: tuple[float, ...], terms: list[Tensor], out: Tensor) -> Tensor:
    """``out = sum(c * t)`` over the non-zero coefficients, written into ``out`` (no temporaries)."""
    nonzero = [(c, t) for c, t in zip(coefs, terms) if c != 0]
    # start from a +1 term when there is one: an add instead of a multiply
    nonzero.sort(key=lambda ct: ct[0] != 1)
    c0, t0 = nonzero[0]
    if len(nonzero) > 1 and c0 == 1:
        c1, t1 = nonzero[1]
        torch.add(t0, t1, alpha=c1, out=out)
        rest = nonzero[2:]
    else:
        torch.mul(t0, c0, out=out)
        rest = nonzero[1:]
    for c, t in rest:
        out.add_(t, alpha=c)
    return out


CHUNK_BYTES = 32 << 20  # tile-domain operand + product held at once: bounds the extra memory on large images


def winograd_conv3x3(x: Tensor, u: Tensor, bias: Tensor | None, tf: WinogradTransform,
                     out_dtype: torch.dtype | None = None, chunk_bytes: int = CHUNK_BYTES) -> Tensor:
    """``F.conv2d(x, w, bias, padding=1)`` for a 3x3 ``w`` given as ``u = transform_weight(w, tf, dtype)``.

    Args:
        x: ``(B, C_in, H, W)`` float input, any memory format (channels_last is read without a copy).
        u: ``(a*a, C_in, C_out)`` tile-domain weight; the tile products run in ``u.dtype``.
        bias: ``(C_out,)`` or None.
        tf: the transform ``u`` was made with.
        out_dtype: dtype of the result (default ``x.dtype``).
        chunk_bytes: rows of tiles are transformed and multiplied a chunk at a time, each chunk's tile-domain
            input and product within about this many bytes (at least one row of tiles).

    Returns:
        ``(B, C_out, H, W)`` in channels_last memory format.
    """
    b, c, h, w = x.shape
    m, a = tf.m, tf.alpha
    th, tw = -(-h // m), -(-w // m)
    k_out = u.shape[-1]
    # NHWC, zero border of 1 (the conv's padding) plus what completes the last tile
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, tw * m + 1 - w, 1, th * m + 1 - h))
    y = torch.empty(b, th, m, tw, m, k_out, dtype=out_dtype or x.dtype, device=x.device)
    row_bytes = a * a * b * tw * (c + k_out) * u.element_size()
    step = max(1, chunk_bytes // row_bytes)
    for r0 in range(0, th, step):
        r1 = min(th, r0 + step)
        v = _input_tiles(xp[:, m * r0:m * r1 + 2], tf, tw, u.dtype)
        prod = torch.bmm(v.view(a * a, -1, c), u).view(a, a, b, r1 - r0, tw, k_out)
        _output_tiles(prod, tf, y[:, r0:r1])
    out = y.view(b, th * m, tw * m, k_out)[:, :h, :w]
    if not out.is_contiguous():  # cropped: partial last tiles
        out = out.contiguous()
    if bias is not None:
        out.add_(bias.to(out.dtype))
    return out.permute(0, 3, 1, 2)


def _input_tiles(xp: Tensor, tf: WinogradTransform, tw: int, dtype: torch.dtype) -> Tensor:
    """``B^T d B`` of every tile of the padded NHWC rows ``xp`` ``(B, m*rows + 2, m*tw + 2, C)``: rows, then
    columns, written straight into the batched-GEMM operand ``(a, a, B, rows, tw, C)``."""
    m, a = tf.m, tf.alpha
    b, rows_px, _, c = xp.shape
    rows = (rows_px - 2) // m
    strided = [xp[:, k:k + m * rows:m] for k in range(a)]
    v = torch.empty(a, a, b, rows, tw, c, dtype=dtype, device=xp.device)
    t = torch.empty(b, rows, xp.shape[2], c, dtype=xp.dtype, device=xp.device)
    for j in range(a):
        _combine(tf.bt[j], strided, t)
        cols = [t[:, :, k:k + m * tw:m] for k in range(a)]
        for i in range(a):
            _combine(tf.bt[i], cols, v[j, i])
    return v


def _output_tiles(prod: Tensor, tf: WinogradTransform, y: Tensor) -> None:
    """``A^T M A`` of the tile products ``prod`` ``(a, a, B, rows, tw, K)`` into the interleaved output tiles
    ``y`` ``(B, rows, m, tw, m, K)``."""
    s = torch.empty(prod.shape[1:], dtype=prod.dtype, device=prod.device)
    for j in range(tf.m):
        _combine(tf.at[j], list(prod.unbind(0)), s)
        for i in range(tf.m):
            _combine(tf.at[i], list(s.unbind(0)), y[:, :, j, :, i])


def winograd_eligible(conv: nn.Module, min_channels: int = 64) -> bool:
    """A dense stride-1 'same' 3x3 ``nn.Conv2d`` (zero padding, no dilation, one group) with at least
    ``min_channels`` input and output channels: the convs this module computes exactly."""
    return (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and min(conv.in_channels, conv.out_channels) >= min_channels)


class WinogradConv2d(nn.Module):
    """Runs an eligible 3x3 ``conv`` (see :func:`winograd_eligible`) with Winograd ``tf`` and products in
    ``dtype``; a ``conv`` with an ``activate(y)`` method (:class:`~seem.modeling.pixel_decoder.ConvNormAct`:
    norm and ReLU) gets it applied after. Inputs smaller than ``min_pixels`` use ``conv`` itself (default 4096:
    the 1/4 and 1/8 maps of a 512 px image, where Winograd saves most; at 1/16 and 1/32 it saves ~20 ms of a
    Focal-T encode but would hold 38 MB of tile-domain weight per conv).

    The tile-domain weight (fp32 ``F(4x4)``: 4x the 3x3 weight's size; ``F(2x2)``: 1.8x) is computed on the
    first input large enough, and again whenever ``conv.weight`` has been replaced or changed in place since
    (its version counter).
    """

    u: Tensor | None

    def __init__(self, conv: nn.Conv2d, tf: WinogradTransform, dtype: torch.dtype, min_pixels: int = 4096) -> None:
        super().__init__()
        if not winograd_eligible(conv, min_channels=1):
            raise ValueError(f"WinogradConv2d: {conv} is not a stride-1 'same' dense 3x3 convolution")
        self.conv = conv
        self.tf = tf
        self.min_pixels = min_pixels
        self.dtype = dtype
        self.register_buffer("u", None, persistent=False)
        self._weight_key = (0, 0)

    def _key(self) -> tuple[int, int]:
        weight = self.conv.weight
        # inference tensors (a copy made under inference_mode) have no version counter
        return weight.data_ptr(), -1 if weight.is_inference() else weight._version

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H, W)`` (channels_last); under autocast the products run in the
        weight's dtype and the result has it, as autocast's conv would."""
        # the conv itself: small maps, other devices (cuDNN picks its own algorithms) and autograd (the
        # transforms write into preallocated buffers)
        grad = torch.is_grad_enabled() and (x.requires_grad or self.conv.weight.requires_grad)
        if x.shape[-2] * x.shape[-1] < self.min_pixels or x.device.type != "cpu" or grad:
            return self.conv(x)
        if self.u is None or self._key() != self._weight_key:  # first use, or the weight changed since
            self.u = transform_weight(self.conv.weight, self.tf, self.dtype)
            self._weight_key = self._key()
        u = self.u
        out_dtype = u.dtype if torch.is_autocast_enabled(x.device.type) else x.dtype
        y = winograd_conv3x3(x, u, self.conv.bias, self.tf, out_dtype=out_dtype)
        activate = getattr(self.conv, "activate", None)
        return activate(y) if activate is not None else y


def winograd_copy(module: nn.Module, dtype: torch.dtype, min_channels: int | None = None) -> nn.Module:
    """A copy of ``module`` whose eligible 3x3 convs (:func:`winograd_eligible`) run through
    :class:`WinogradConv2d` (``F(4x4, 3x3)`` for float32 products, ``F(2x2, 3x3)`` for bfloat16); parameters and
    buffers are shared with ``module``, not copied.

    ``min_channels`` (default 128 for float32; for bfloat16 no conv unless given): narrower convs stay direct.
    On this project's CPU (2 cores, AVX-512) Winograd is 1.85x faster than oneDNN's direct conv at 512 channels
    and 1/4 of a 683x512 image in fp32, 1.2x at 128 channels and slower at 64: its transforms are memory-bound,
    so it pays only when the channel reduction is long. With bf16 products it is 1.2x faster at 512 channels
    but doubles the conv's rounding error (the bf16 tile products are rounded before the output transform sums
    nine of them), which cost a fixture's masks up to 0.13 IoU against fp32 (direct bf16: 0.003): not a default.
    """
    tf = F4X4_3X3 if dtype == torch.float32 else F2X2_3X3
    if min_channels is None:
        if dtype != torch.float32:
            return module
        min_channels = 128
    memo: dict[int, object] = {id(p): p for p in module.parameters()}
    memo.update({id(buf): buf for buf in module.buffers()})
    out = copy.deepcopy(module, memo)
    for name, sub in list(out.named_modules()):
        if name and winograd_eligible(sub, min_channels):
            parent, _, leaf = name.rpartition(".")
            holder = out.get_submodule(parent) if parent else out
            setattr(holder, leaf, WinogradConv2d(sub, tf, dtype))
    return out.eval()


__all__ = ["F2X2_3X3", "F4X4_3X3", "WinogradConv2d", "WinogradTransform", "transform_weight", "winograd_conv3x3",
           "winograd_copy", "winograd_eligible"]
