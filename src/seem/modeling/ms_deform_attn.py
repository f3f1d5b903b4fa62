"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021, sec. 4.1) in plain PyTorch.

Follows Mask2Former's ``MSDeformAttn`` as used by the official SEEM ``transformer_encoder_deform`` pixel decoder
(``modeling/vision/encoder/ops/modules/ms_deform_attn.py``). The official code needs a compiled CUDA op and falls
back to ``ms_deform_attn_core_pytorch`` (``F.grid_sample``) on CPU; here the sampling is plain PyTorch in two
interchangeable forms (:func:`sample_grid` = the official fallback, :func:`sample_gather`, tested equal):

* ``sample_gather`` computes each output as one weighted sum of value rows with ``F.embedding_bag`` (4 bilinear
  corners x levels x points per query and head): no ``(heads, channels, queries, points)`` temporaries, and the
  coordinates and weights stay float32 for any value dtype. The default.
* ``sample_grid`` runs ``F.grid_sample`` per level. On CPU with bfloat16 values it rounds the sampling grid to
  bfloat16 (about 2 decimal digits of a coordinate), so it is only used for float32 / float64.

Parameter names equal the official ``self_attn.{sampling_offsets, attention_weights, value_proj, output_proj}``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.modeling.packed_linear import Linear


def _level_sizes(spatial_shapes: Tensor | list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(int(h), int(w)) for h, w in (spatial_shapes.tolist() if isinstance(spatial_shapes, Tensor) else spatial_shapes)]


def sample_grid(value: Tensor, spatial_shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """Deformable sampling with ``F.grid_sample`` per level (official ``ms_deform_attn_core_pytorch``).

    Args and return as :func:`ms_deform_attn_sample`.
    """
    n, _, heads, dim = value.shape
    _, lq, _, levels, points, _ = locations.shape
    sizes = _level_sizes(spatial_shapes)
    per_level = value.split([h * w for h, w in sizes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(sizes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1).to(v.dtype)  # (n * heads, lq, points, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    a = weights.transpose(1, 2).reshape(n * heads, 1, lq, levels * points).to(value.dtype)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(n, heads * dim, lq)
    return out.transpose(1, 2).contiguous()


def sample_gather(value: Tensor, spatial_shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """Deformable sampling as one ``F.embedding_bag`` (weighted sum of gathered value rows).

    Bilinear interpolation with ``align_corners=False`` and zero padding, as ``grid_sample`` does: a location
    ``(x, y)`` in [0, 1] of a ``h x w`` level is the pixel coordinate ``(x * w - 0.5, y * h - 0.5)``; corners outside
    the map contribute zero. Coordinates and weights are float32 whatever ``value``'s dtype.

    Args and return as :func:`ms_deform_attn_sample`.
    """
    n, s, heads, dim = value.shape
    _, lq, _, levels, points, _ = locations.shape
    sizes = _level_sizes(spatial_shapes)
    starts = [0]
    for h, w in sizes[:-1]:
        starts.append(starts[-1] + h * w)
    dev = value.device
    size_wh = torch.tensor([[w, h] for h, w in sizes], dtype=torch.float32, device=dev)[:, None]  # (levels, 1, 2)
    pix = locations.float() * size_wh - 0.5  # (n, lq, heads, levels, points, 2) pixel coordinates
    # far-off points sample zeros either way; bounding them keeps their integer corners from overflowing
    pix = torch.minimum(pix.clamp(min=-2.0), size_wh + 1)
    corner = pix.floor()
    frac = pix - corner
    x0, y0 = corner[..., 0].to(torch.int32), corner[..., 1].to(torch.int32)
    wl, hl = size_wh[..., 0].to(torch.int32), size_wh[..., 1].to(torch.int32)  # (levels, 1)
    start = torch.tensor(starts, dtype=torch.int32, device=dev)[:, None]
    # per axis: the weight of the low / high neighbour, zero where it lies outside the map
    a = weights.float()
    wx = ((1 - frac[..., 0]) * ((x0 >= 0) & (x0 < wl)) * a, frac[..., 0] * ((x0 >= -1) & (x0 < wl - 1)) * a)
    wy = ((1 - frac[..., 1]) * ((y0 >= 0) & (y0 < hl)), frac[..., 1] * ((y0 >= -1) & (y0 < hl - 1)))
    top_left = start + y0 * wl + x0  # row within one image's (s,) positions; corners outside get zero weight
    # rows of the (n * s * heads, dim) table: ((batch * s) + position) * heads + head
    base = (top_left + (torch.arange(n, device=dev, dtype=torch.int32) * s).view(n, 1, 1, 1, 1)) * heads
    base = base + torch.arange(heads, device=dev, dtype=torch.int32).view(1, 1, heads, 1, 1)
    step_y = wl * heads
    rows = torch.stack([base, base + heads, base + step_y, base + step_y + heads], -1)
    rows = rows.clamp_(0, n * s * heads - 1).reshape(n * lq * heads, -1)
    per_sample = torch.stack([wy[0] * wx[0], wy[0] * wx[1], wy[1] * wx[0], wy[1] * wx[1]], -1)
    per_sample = per_sample.reshape(n * lq * heads, -1).to(value.dtype)
    out = F.embedding_bag(rows, value.reshape(n * s * heads, dim), per_sample_weights=per_sample, mode="sum")
    return out.view(n, lq, heads * dim)


def ms_deform_attn_sample(value: Tensor, spatial_shapes: Tensor | list[tuple[int, int]], locations: Tensor,
                          weights: Tensor, method: str = "gather") -> Tensor:
    """Attention-weighted bilinear samples of multi-level value maps.

    Args:
        value: ``(N, S, heads, Dh)``; the levels' maps flattened row-major and concatenated (``S = sum h_l * w_l``).
        spatial_shapes: ``(levels, 2)`` int ``(h_l, w_l)`` (tensor or list), in the order of ``value``.
        locations: ``(N, Lq, heads, levels, points, 2)`` float, normalised ``(x, y)`` in [0, 1] of each level
            (0 and 1 are the outer edges of the map; values outside sample zeros).
        weights: ``(N, Lq, heads, levels, points)``, the attention weights (softmaxed over levels x points).
        method: ``"gather"`` (:func:`sample_gather`) or ``"grid_sample"`` (:func:`sample_grid`).

    Returns:
        ``(N, Lq, heads * Dh)`` in ``value``'s dtype.

    Raises:
        ValueError: an unknown ``method``.
    """
    sizes = _level_sizes(spatial_shapes)
    if method == "gather":
        return sample_gather(value, sizes, locations, weights)
    if method == "grid_sample":
        return sample_grid(value, sizes, locations, weights)
    raise ValueError(f"unknown deformable sampling method {method!r}; expected 'gather' or 'grid_sample'")


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (official ``MSDeformAttn``, 2-D reference points).

    Each query predicts ``points`` offsets per head and level (``sampling_offsets``, in pixels of that level) and
    their softmaxed weights (``attention_weights``); values are ``value_proj`` of the input maps split into heads.

    Args:
        d_model: channels; ``num_heads`` must divide it.
        num_levels, num_heads, num_points: as named (official SEEM: 3, ``DECODER.NHEADS``, 4).
        method: the sampler, see :func:`ms_deform_attn_sample`.
    """

    def __init__(self, d_model: int, num_levels: int, num_heads: int, num_points: int, method: str = "gather") -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"MSDeformAttn: d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_levels, self.num_heads, self.num_points = num_levels, num_heads, num_points
        self.method = method
        self.sampling_offsets = Linear(d_model, num_heads * num_levels * num_points * 2)
        self.attention_weights = Linear(d_model, num_heads * num_levels * num_points)
        self.value_proj = Linear(d_model, d_model)
        self.output_proj = Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Official init: zero offset weights, offsets biased to a ring of directions (one per head, growing with
        the point index), zero attention logits, Xavier value/output projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        for lin in (self.attention_weights,):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def sampling(self, query: Tensor, reference_points: Tensor, sizes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """``(locations (N, Lq, heads, levels, points, 2), weights (N, Lq, heads, levels, points))`` for
        ``query (N, Lq, C)`` and ``reference_points (N, Lq, levels, 2)`` (normalised ``(x, y)``)."""
        n, lq, _ = query.shape
        shape = (n, lq, self.num_heads, self.num_levels, self.num_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(n, lq, self.num_heads, -1).softmax(-1).view(shape)
        normalizer = torch.tensor([[w, h] for h, w in sizes], dtype=offsets.dtype, device=offsets.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return locations, weights

    def forward(self, query: Tensor, reference_points: Tensor, value_input: Tensor,
                sizes: list[tuple[int, int]]) -> Tensor:
        """``query (N, Lq, C)``, ``reference_points (N, Lq, levels, 2)``, ``value_input (N, S, C)`` (levels of
        ``sizes`` = ``[(h_l, w_l)]`` flattened and concatenated; no padding mask: every position is valid)
        -> ``(N, Lq, C)``."""
        n, s, c = value_input.shape
        value = self.value_proj(value_input).view(n, s, self.num_heads, c // self.num_heads)
        locations, weights = self.sampling(query, reference_points, sizes)
        out = ms_deform_attn_sample(value, sizes, locations, weights, self.method)
        return self.output_proj(out)


__all__ = ["MSDeformAttn", "ms_deform_attn_sample", "sample_gather", "sample_grid"]
