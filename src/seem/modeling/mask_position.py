"""Learned position features added to the per-pixel mask features (``PixelDecoderConfig.mask_position_frequencies``).

SEEM's masks are ``mask_embed . mask_features`` (Mask2Former): a query can only say *what* a pixel looks like.
Two objects that look alike (two people, two copies of a cup) then get one mask, and a negative click on the
wrong one cannot take it away, because nothing in the product depends on where a pixel is. Instance masks
that condition on position (CoordConv, Liu et al. 2018; CondInst's relative coordinates, Tian et al. 2020)
fix this by giving the mask head coordinates. Here the mask features get ``W @ phi(y, x)``, ``phi`` the
Fourier features ``sin / cos(pi * 2^k * u)`` (``k < F``) of the normalised row and column, so a query can add
``e . W phi`` terms that peak at a prompt's place. ``W`` starts at zero: a model trained without it computes
the same outputs until training moves ``W`` (weights grow without a restart). Off (``F = 0``) in every
official architecture; the bundled ``seem_tiny`` may use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

POSITION_KEY = ".mask_position."  # in the state-dict keys of the projection (``pixel_decoder.mask_position.proj.weight``)


def with_zero_position(state: Mapping[str, Tensor], reference: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` plus zeros for the position projections of ``reference`` it lacks: a checkpoint trained before
    them computes the same function with them at zero (so it can be loaded into, or averaged with, a grown one)."""
    out = dict(state)
    for key, value in reference.items():
        if POSITION_KEY in key and key not in out:
            out[key] = torch.zeros_like(value)
    return out


def fourier_grid(h: int, w: int, frequencies: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(4 F, h, w)``: ``sin, cos(pi 2^k u)`` for ``u`` = row centre ``/ h`` (first ``2F`` channels), then
    column centre ``/ w``; ``k = 0 .. F-1`` (one half period across the map up to ``2^(F-1)``)."""
    scales = math.pi * (2.0 ** torch.arange(frequencies, device=device, dtype=torch.float32))
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    fy = ys[None, :] * scales[:, None]  # (F, h)
    fx = xs[None, :] * scales[:, None]  # (F, w)
    rows = torch.cat([fy.sin(), fy.cos()])[:, :, None].expand(-1, h, w)
    cols = torch.cat([fx.sin(), fx.cos()])[:, None, :].expand(-1, h, w)
    return torch.cat([rows, cols]).to(dtype)


class MaskPositionEncoding(nn.Module):
    """``forward(mask_features)`` -> ``mask_features + W @ phi`` (same shape ``(B, Dm, h, w)`` and dtype).

    Args:
        frequencies: ``F >= 1`` octaves per axis (``4 F`` Fourier channels).
        mask_dim: ``Dm``, the mask feature width.

    ``proj.weight`` ``(Dm, 4 F)`` is zero at construction (see the module docstring). The features are computed
    in float32 even under bf16 autocast (and :func:`seem.modeling.precision.bf16_conv_linear_copy` keeps this
    weight in float32): they are a few thousand multiply-adds per image, and bf16 rounding of them moved the
    edges of weak masks.
    """

    def __init__(self, frequencies: int, mask_dim: int) -> None:
        super().__init__()
        if frequencies < 1:
            raise ValueError(f"MaskPositionEncoding needs frequencies >= 1, got {frequencies}")
        self.frequencies = frequencies
        self.proj = nn.Linear(4 * frequencies, mask_dim, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, mask_features: Tensor) -> Tensor:
        h, w = mask_features.shape[-2:]
        phi = fourier_grid(h, w, self.frequencies, torch.float32, mask_features.device)
        with torch.autocast(device_type=mask_features.device.type, enabled=False):
            pos = (self.proj.weight.float() @ phi.flatten(1)).view(1, -1, h, w)
            return (mask_features.float() + pos).to(mask_features.dtype)
