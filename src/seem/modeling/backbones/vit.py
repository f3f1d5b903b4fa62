"""SAM's ViT image encoder with a SimpleFPN neck, the backbone of SEEM SAM-ViT-B / ViT-L.

Follows the official ``modeling/vision/backbone/vit.py::D2ViT`` (SAM's ``ImageEncoderViT`` from
``segment_anything/modeling/image_encoder.py`` whose ``neck`` is replaced by a SimpleFPN,
:mod:`seem.modeling.backbones.simple_fpn`). Parameter names equal the official ``backbone.*`` keys without that
prefix: ``patch_embed.proj``, ``pos_embed``, ``blocks.{i}.{norm1, attn.{qkv, proj, rel_pos_h, rel_pos_w}, norm2,
mlp.{lin1, lin2}}``, ``neck.down_{4,8,16,32}.*``.

Data flow for a padded input ``(B, 3, H, W)`` (``H``, ``W`` multiples of 32)::

    patch_embed (16x16 conv, stride 16) -> channels-last (B, H/16, W/16, D) + pos_embed
    -> blocks: x + attn(norm1(x)), then x + mlp(norm2(x)); window attention (14x14, zero-padded) except
       the global blocks; decomposed relative positions in every attention
    -> (B, D, H/16, W/16) -> SimpleFPN -> res2..res5 (strides 4, 8, 16, 32)

The official code adds ``pos_embed`` as is, so its inputs must be exactly ``image_size`` square (the configs
pad to ``SIZE_DIVISIBILITY: 1024``); here another token grid gets the embedding bicubically resized to it
(as ViTDet does) and relative-position tables of another length are linearly resized (as SAM's
``get_rel_pos`` does). At the official size both are the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.configs import STRIDES, ViTConfig
from seem.modeling.backbones.simple_fpn import SimpleFPN
from seem.modeling.packed_linear import Linear

_LN_EPS = 1e-6  # SAM: partial(nn.LayerNorm, eps=1e-6)
_MAX_BIAS_ELEMENTS = 1 << 25  # rows of a global attention are processed in chunks whose bias has at most this


def relative_position_table(table: Tensor, size: int) -> Tensor:
    """``(size, size, C)`` embeddings of ``q_index - k_index`` from a ``(2 * size - 1, C)`` table.

    A table of another length is linearly resized first (official ``get_rel_pos``; never needed at the
    official input size).
    """
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t()[None].float(), size=length, mode="linear")[0].t().to(table.dtype)
    coords = torch.arange(size, device=table.device)
    return table[coords[:, None] - coords[None, :] + (size - 1)]


class Attention(nn.Module):
    """Multi-head self-attention with decomposed relative positions (SAM ``Attention``, MViTv2 section 3.1).

    Logits of query ``(h, w)`` and key ``(kh, kw)`` are ``q . k / sqrt(d) + q . Rh[h - kh] + q . Rw[w - kw]``
    (``q`` unscaled in the relative terms), with tables ``rel_pos_h/w`` of length ``2 * size - 1`` for the
    ``size x size`` token grid the block attends over (a window or the whole map).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, use_rel_pos: bool, input_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ViT attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, h, w, D)`` channels-last -> ``(B, h, w, D)``."""
        b, h, w, d = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, hd)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            rq = q.reshape(b, self.num_heads, h, w, -1)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, relative_position_table(self.rel_pos_h, h).to(q.dtype))
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, relative_position_table(self.rel_pos_w, w).to(q.dtype))
            rel_h, rel_w = rel_h.flatten(2, 3), rel_w.flatten(2, 3)  # (B, heads, N, h), (B, heads, N, w)
            # the (rows x N) bias of a global block is large (64x64 tokens: 16.7 M per head): bound it by chunks
            n = h * w
            step = max(1, _MAX_BIAS_ELEMENTS // (b * self.num_heads * n))
            chunks = []
            for s in range(0, n, step):
                bias = (rel_h[:, :, s : s + step, :, None] + rel_w[:, :, s : s + step, None, :]).flatten(-2)
                chunks.append(F.scaled_dot_product_attention(q[:, :, s : s + step], k, v, attn_mask=bias))
            out = torch.cat(chunks, dim=2) if len(chunks) > 1 else chunks[0]
        return self.proj(out.transpose(1, 2).reshape(b, h, w, d))


class MLPBlock(nn.Module):
    """``lin2(GELU(lin1(x)))`` (SAM ``MLPBlock``, exact erf GELU)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.lin1 = Linear(dim, hidden_dim, activation="gelu")  # GELU fused into the packed product
        self.lin2 = Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.lin1(x))


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nh * nw, window, window, C)`` windows (row-major), after zero-padding the
    bottom/right to multiples of ``window``; also returns the padded ``(Hp, Wp)`` (SAM ``window_partition``)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`: windows -> ``(B, H, W, C)`` with the padding cropped."""
    hp, wp = padded
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, hp, wp, -1)
    return x[:, : size[0], : size[1]].contiguous() if (hp, wp) != size else x


class Block(nn.Module):
    """Pre-norm transformer block with window (``window_size > 0``) or global attention (SAM ``Block``)."""

    def __init__(self, config: ViTConfig, window_size: int) -> None:
        super().__init__()
        dim = config.embed_dim
        grid = config.image_size // config.patch_size
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias, config.use_rel_pos,
                              window_size if window_size > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = MLPBlock(dim, int(dim * config.mlp_ratio))
        self.window_size = window_size

    def forward(self, x: Tensor) -> Tensor:
        """``(B, h, w, D)`` -> ``(B, h, w, D)``."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            size = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """``proj``: non-overlapping ``patch x patch`` conv; output channels-last ``(B, H/p, W/p, D)``."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class SamViT(nn.Module):
    """SAM ViT encoder + SimpleFPN returning ``res2..res5`` (official ``D2ViT``).

    Args:
        config: sizes (:class:`seem.configs.ViTConfig`; official ViT-B: 768 wide, 12 blocks, 12 heads, global
            attention in blocks 2, 5, 8, 11, 14x14 windows, 16x16 patches, 1024 px position grid).

    ``forward(images)`` takes ``(B, 3, H, W)`` float, normalised RGB, zero-padded; ``H`` and ``W`` multiples of 32
    (``image_size`` square in the official configs) and returns ``{"res2": (B, C0, H/4, W/4), ..., "res5":
    (B, C3, H/32, W/32)}`` with ``(C0..C3) = config.neck_out_dims``.

    Raises:
        ValueError: in ``forward``, images not ``(B, 3, H, W)`` or sides not multiples of 32.
    """

    strides = STRIDES
    supports_bf16 = True

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if config.image_size % config.patch_size:
            raise ValueError(f"SamViT: image_size {config.image_size} is not a multiple of the patch size")
        bad = [i for i in config.global_attn_indexes if not 0 <= i < config.depth]
        if bad:
            raise ValueError(f"SamViT: global_attn_indexes {bad} outside 0..{config.depth - 1}")
        grid = config.image_size // config.patch_size
        self.out_channels = tuple(config.neck_out_dims)
        self.patch_size = config.patch_size
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, config.embed_dim))
        self.blocks = nn.ModuleList(
            Block(config, 0 if i in config.global_attn_indexes else config.window_size) for i in range(config.depth)
        )
        self.neck = SimpleFPN(config.embed_dim, config.neck_out_dims)

    def position_embedding(self, h: int, w: int) -> Tensor:
        """``(1, h, w, D)``: ``pos_embed`` as is when the token grid is its own, else bicubically resized."""
        if tuple(self.pos_embed.shape[1:3]) == (h, w):
            return self.pos_embed
        pos = F.interpolate(self.pos_embed.permute(0, 3, 1, 2).float(), size=(h, w), mode="bicubic",
                            align_corners=False)
        return pos.permute(0, 2, 3, 1).to(self.pos_embed.dtype)

    def tokens(self, images: Tensor) -> list[Tensor]:
        """Channels-last ``(B, H/16, W/16, D)`` maps: the patch embedding (before ``pos_embed``), then each block's
        output (the official internals, for parity checks)."""
        x = self.patch_embed(images)
        out = [x]
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """See the class docstring."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"SamViT expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"SamViT: image size {tuple(images.shape[-2:])} is not a multiple of 32; pad it first")
        x = self.patch_embed(images)
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


__all__ = ["Attention", "Block", "SamViT", "relative_position_table", "window_partition", "window_unpartition"]
