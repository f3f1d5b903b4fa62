"""Transformer building blocks of the SEEM decoder (Mask2Former style, post-norm by default).

Follows ``modeling/interface/seem_v1.py`` (``SelfAttentionLayer``, ``CrossAttentionLayer``, ``FFNLayer``,
``MLP``). Parameter names equal the official ones (``self_attn.in_proj_weight``, ``norm.weight`` ...),
so checkpoints load by a prefix rename. Sequences are sequence-first: ``(L, B, D)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.modeling.packed_linear import Linear, WeightPack

# PyTorch >= 2.5 gives fully blocked rows zero weights inside scaled_dot_product_attention (older: NaN)
_SDPA_SAFE_SOFTMAX = tuple(int(p) for p in torch.__version__.split(".")[:2] if p.isdigit()) >= (2, 5)


# reduced_precision_attention replaces the SDPA flash kernel over bf16 / fp16 keys of at least
# MIN_MATMUL_KEY_ELEMENTS elements per image (heads x keys x head dim). Measured on this CPU (1 thread, bf16): the
# flash kernel reads bf16 at the speed of fp32 (no bf16 dot products without AMX), the two matmuls run on
# oneDNN's bf16 kernels: 8 heads x 5,632 keys x 64, 3 queries 1.5 -> 0.5 ms, 101 queries 19 -> 12 ms; below
# 2^17 key elements the flash kernel is faster (13 vs 46 us at 12 keys). With many queries the fp32 softmax per
# score outweighs the product when heads are narrow (4 x 32, 101 queries: flash 6 ms, matmuls 14-18 ms): more
# than MAX_NARROW_QUERIES queries take the matmul path only with heads of at least MIN_WIDE_HEAD_DIM.
MIN_MATMUL_KEY_ELEMENTS = 1 << 17
MAX_NARROW_QUERIES = 32
MIN_WIDE_HEAD_DIM = 64
SCORE_CHUNK_BYTES = 3 << 20


def reduced_precision_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over bf16 (or fp16) keys/values as two matmuls with an fp32 softmax.

    The products run in the keys' dtype (scores rounded to it), the scale, the mask (as an additive -inf bias:
    a broadcast boolean ``masked_fill`` is 10x slower here) and the softmax in fp32, the weights are rounded to
    the values' dtype for the second product. A row with every key blocked attends to nothing (output 0), as
    SDPA's safe softmax. Query rows go in chunks whose fp32 scores take at most ``SCORE_CHUNK_BYTES`` (fresh
    buffers of tens of MB cost more in page faults than the arithmetic: 101 queries over 5,632 keys take 37 ms
    in one piece, 11 ms in chunks of 16 rows, against 19 ms for the flash kernel).

    Args:
        q: ``(B, H, L, d)``; k, v: ``(B, H, S, d)``, the same dtype.
        allowed: bool, True = may attend, broadcastable to ``(B, H, L, S)`` (e.g. ``(B, 1, L, S)``, ``(L, S)``),
            or None.

    Returns:
        ``(B, H, L, d)`` in the dtype of ``v``.
    """
    b, h, length, _ = q.shape
    if allowed is not None and allowed.dim() < 4:  # (S,), (L, S) or (B, L, S): broadcast as SDPA does
        allowed = allowed.view(*(1,) * (4 - allowed.dim()), *allowed.shape)
    rows = max(1, SCORE_CHUNK_BYTES // (4 * b * h * k.shape[2]))
    if length <= rows:
        return _attention_chunk(q, k, v, allowed)
    out = torch.empty(b, h, length, v.shape[-1], dtype=v.dtype, device=v.device)
    for a in range(0, length, rows):
        # a mask broadcast over queries (size 1 on that axis) is the same for every chunk
        part = None if allowed is None else allowed if allowed.shape[2] == 1 else allowed[:, :, a : a + rows]
        out[:, :, a : a + rows] = _attention_chunk(q[:, :, a : a + rows], k, v, part)
    return out


def _attention_chunk(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None) -> Tensor:
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2))
    if allowed is None:
        weights = torch.softmax(scores.float().mul_(scale), -1)
        return torch.matmul(weights.to(v.dtype), v)
    bias = torch.zeros(allowed.shape, dtype=torch.float32, device=q.device).masked_fill_(~allowed, float("-inf"))
    weights = torch.softmax(torch.add(bias, scores.float(), alpha=scale), -1)
    blocked = ~allowed.any(dim=-1, keepdim=True)
    if bool(blocked.any()):
        weights = weights.masked_fill_(blocked, 0.0)
    return torch.matmul(weights.to(v.dtype), v)


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``-compatible parameters.

    Differs from ``nn.MultiheadAttention`` in one documented way: a query row whose keys are *all*
    blocked gets zero attention weights (output = ``out_proj.bias``) instead of NaN. This is what
    PyTorch >= 2.5 does inside ``scaled_dot_product_attention`` ("safe softmax") and therefore what the
    official code computes for fully masked prompt tokens (fixture case f).
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = Linear(embed_dim, embed_dim)
        # packed q / k / v projections for inference (seem.modeling.packed_linear)
        self.in_proj_packs = (WeightPack(), WeightPack(), WeightPack())
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def train(self, mode: bool = True) -> MultiheadAttention:
        for pack in getattr(self, "in_proj_packs", ()):  # the int8 subclass has none
            pack.clear()  # weights may have been written around the version counter while training
        return super().train(mode)

    def project_q(self, query: Tensor) -> Tensor:
        """Query projection of ``(N, D)`` rows (scaling is left to the attention)."""
        w_q, _, _ = self.in_proj_weight.chunk(3)
        b_q, _, _ = self.in_proj_bias.chunk(3)
        return self.in_proj_packs[0].linear(query, w_q, b_q, owner=self.in_proj_weight)

    def project_kv_rows(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Key and value projections of ``(N, D)`` rows."""
        _, w_k, w_v = self.in_proj_weight.chunk(3)
        _, b_k, b_v = self.in_proj_bias.chunk(3)
        packs, owner = self.in_proj_packs, self.in_proj_weight
        return packs[1].linear(key, w_k, b_k, owner=owner), packs[2].linear(value, w_v, b_v, owner=owner)

    def project_kv(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Key/value projections, split per head: ``(S, B, D)`` -> keys and values ``(B * num_heads, S, D / num_heads)``,
        both contiguous (the layout ``scaled_dot_product_attention`` reads best).

        They depend only on ``key``/``value``: the decoder computes them once per image for the image
        features (:class:`seem.modeling.decoder.DecoderImageCache`) and reuses them for every prompt.
        """
        batch, dim = key.shape[1], key.shape[2]
        head_dim = dim // self.num_heads
        # 2-D products: a 3-D bf16 linear falls back to a batched matmul that copies the weight per row
        k, v = self.project_kv_rows(key.reshape(-1, dim), value.reshape(-1, dim))
        k = k.reshape(-1, batch * self.num_heads, head_dim).transpose(0, 1)
        v = v.reshape(-1, batch * self.num_heads, head_dim).transpose(0, 1)
        return k.contiguous(), v.contiguous()

    def forward(self, query: Tensor, key: Tensor | None, value: Tensor | None, attn_mask: Tensor | None = None,
                kv: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Attend with ``torch.nn.functional.scaled_dot_product_attention`` (fused mask, softmax and product).

        Args:
            query: ``(L, B, D)``; key, value: ``(S, B, D)`` (ignored when ``kv`` is given).
            attn_mask: bool, ``True`` = may NOT attend: ``(B * num_heads, L, S)``, ``(B, 1, L, S)`` (the same
                for every head) or ``(L, S)``.
            kv: precomputed :meth:`project_kv` of the keys and values, in any float dtype: the query is cast
                to it for the attention, and the result back to the query's dtype.

        Returns:
            ``(L, B, D)``.
        """
        length, batch, dim = query.shape
        heads = self.num_heads
        head_dim = dim // heads
        q = self.project_q(query.reshape(-1, dim))
        if kv is None:
            assert key is not None and value is not None, "key and value are required when kv is not given"
            kv = self.project_kv(key, value)
        k, v = kv
        q = q.reshape(length, batch, heads, head_dim).permute(1, 2, 0, 3).to(k.dtype)
        k = k.view(batch, heads, -1, head_dim)
        v = v.view(batch, heads, -1, head_dim)
        mask = None
        if attn_mask is not None:
            mask = attn_mask.view(batch, heads, length, -1) if attn_mask.dim() == 3 else attn_mask
            mask = ~mask
        if (k.dtype in (torch.float32, torch.float64) or k[0].numel() < MIN_MATMUL_KEY_ELEMENTS
                or (length > MAX_NARROW_QUERIES and head_dim < MIN_WIDE_HEAD_DIM)):
            # safe softmax (PyTorch >= 2.5): a row with every key blocked attends to nothing
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            if mask is not None and not _SDPA_SAFE_SOFTMAX:
                out = out.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
        else:
            out = reduced_precision_attention(q, k, v, mask)
        out = out.permute(2, 0, 1, 3).reshape(length * batch, dim).to(query.dtype)
        return self.out_proj(out).view(length, batch, dim)


class SelfAttentionLayer(nn.Module):
    """``norm(x + attn(x + pos, x + pos, x))`` (post-norm) or the pre-norm variant."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before

    def forward(self, tgt: Tensor, attn_mask: Tensor | None, query_pos: Tensor | None, rows: Tensor | None = None) -> Tensor:
        """``tgt``/``query_pos`` ``(L, B, D)``; ``attn_mask`` ``(B*h, L, L)`` bool (True = blocked).

        ``rows`` (int64 indices into ``L``): compute only these output rows (every row stays a key and
        value); the result is then ``(len(rows), B, D)``. Each row's output depends only on its own query,
        so this is exact; the decoder uses it to skip visual prompt tokens, whose outputs it never reads.
        """
        mask = attn_mask if rows is None or attn_mask is None else attn_mask.index_select(-2, rows)

        def pick(x: Tensor) -> Tensor:
            return x if rows is None else x.index_select(0, rows)

        if self.normalize_before:
            x = self.norm(tgt)
            q = x if query_pos is None else x + query_pos
            return pick(tgt) + self.self_attn(pick(q), q, x, mask)
        q = tgt if query_pos is None else tgt + query_pos
        return self.norm(pick(tgt) + self.self_attn(pick(q), q, tgt, mask))


class CrossAttentionLayer(nn.Module):
    """Masked cross-attention from queries to one level of image features."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.multihead_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before

    def forward(
        self, tgt: Tensor, memory: Tensor | None, attn_mask: Tensor | None, pos: Tensor | None, query_pos: Tensor | None,
        kv: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``tgt`` ``(Q, B, D)``; ``memory``/``pos`` ``(HW, B, D)``; ``attn_mask`` ``(B*h, Q, HW)`` bool.

        ``kv``: the image's precomputed key/value projections (``multihead_attn.project_kv(memory + pos,
        memory)``); ``memory`` and ``pos`` are then not used.
        """
        key = None
        if kv is None:
            assert memory is not None, "memory is required when kv is not given"
            key = memory if pos is None else memory + pos
        if self.normalize_before:
            x = self.norm(tgt)
            q = x if query_pos is None else x + query_pos
            return tgt + self.multihead_attn(q, key, memory, attn_mask, kv=kv)
        q = tgt if query_pos is None else tgt + query_pos
        return self.norm(tgt + self.multihead_attn(q, key, memory, attn_mask, kv=kv))


class FFNLayer(nn.Module):
    """``norm(x + linear2(relu(linear1(x))))`` (post-norm) or the pre-norm variant."""

    def __init__(self, d_model: int, dim_feedforward: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before

    def forward(self, tgt: Tensor) -> Tensor:
        if self.normalize_before:
            return tgt + self.linear2(F.relu(self.linear1(self.norm(tgt))))
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (official ``MLP``; used for ``mask_embed``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
