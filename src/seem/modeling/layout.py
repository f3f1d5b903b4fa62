"""Row-major (NCHW) copies of channels-last feature maps.

The encoder's convolutions return channels-last maps (oneDNN's fast layout); prompt rounds read mask features
as ``(B, C, h*w)`` rows, which needs NCHW. ``Tensor.contiguous()`` re-lays out a 4-D channels-last map
element by element (64 ms for 512 x 128 x 176 fp32 here); seen as a batch of 2-D ``(h*w, C)`` matrices the
same copy takes torch's blocked transpose path (29 ms; bf16 34 -> 10 ms).
"""

from __future__ import annotations

import torch
from torch import Tensor


def row_major(t: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``t`` ``(B, C, H, W)`` (any layout) as a contiguous NCHW tensor in ``dtype`` (default: its own); ``t``
    itself when it already is one. Other ranks: ``t.to(dtype).contiguous()``."""
    dtype = dtype or t.dtype
    if t.is_contiguous() and t.dtype == dtype:
        return t
    if t.dim() != 4 or not t.is_contiguous(memory_format=torch.channels_last):
        return t.to(dtype=dtype, memory_format=torch.contiguous_format)
    b, c, h, w = t.shape
    # the blocked transpose needs one dtype: transpose in the narrower of the two, then convert
    mid = t.dtype if t.element_size() <= torch.empty(0, dtype=dtype).element_size() else dtype
    src = t if mid == t.dtype else t.to(mid)  # keeps channels-last
    out = torch.empty(b, c, h * w, dtype=mid, device=t.device)
    nhwc = src.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view: channels-last is NHWC in memory
    for i in range(b):
        out[i].copy_(nhwc[i].t())
    return out.view(b, c, h, w).to(dtype)
