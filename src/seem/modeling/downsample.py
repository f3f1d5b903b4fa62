"""Bilinear downsampling by whole factors as sums of strided slices.

``F.interpolate(x, size, mode="bilinear", align_corners=False)`` samples output pixel ``i`` at input coordinate
``s * (i + 0.5) - 0.5`` for a whole factor ``s = in / out``: for even ``s`` the mean of input pixels
``s * i + s / 2 - 1`` and ``s * i + s / 2`` (weights 1/2 each), for odd ``s`` pixel ``s * i + (s - 1) / 2`` alone.
So downsampling by whole factors needs no interpolation kernel: two (or one) strided slices per axis, summed in
fp32 and scaled; on a channels-last map, the same taps are a 2 x 2 (or 1 x 1) average pool at an offset with
stride ``s`` (vectorised over the contiguous channels). The decoder's per-image cache resizes the 1/4-resolution
mask features to each attention level this way (factors 2, 4, 8): 512 x 128 x 176 bf16 features to three levels
took 27 ms through the generic kernel on a row-major map here, 4 ms pooled from the channels-last map the
encoder returns (row-major copies of the pooled maps included); fp32 row-major maps 6 ms by slices (fp32 pooling
was no faster on either layout). Values equal the kernel's up to fp32 rounding of the sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from seem.modeling.layout import row_major


def _taps(factor: int) -> tuple[int, ...]:
    """Input offsets (within each block of ``factor``) that bilinear sampling averages."""
    return (factor // 2 - 1, factor // 2) if factor % 2 == 0 else ((factor - 1) // 2,)


def bilinear_downsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` for ``x`` ``(B, C, H, W)``, computed as
    strided sums when ``H`` and ``W`` are whole multiples of ``size`` (else by ``F.interpolate``).

    Returns ``(B, C, size[0], size[1])`` in ``x``'s dtype, row-major (NCHW contiguous; ``x`` itself when it is
    one of that size already); the sums run in fp32 (as the kernel's weights do) and round once to ``x``'s dtype.
    Other inputs (not 4-D, not floating point) go to ``F.interpolate``, which raises on what it rejects.
    """
    if x.dim() != 4 or not x.is_floating_point():
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False).contiguous()
    h, w = int(x.shape[-2]), int(x.shape[-1])
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0 or h % out_h or w % out_w:
        return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False).contiguous()
    if (h, w) == (out_h, out_w):
        return x.contiguous()
    fh, fw = h // out_h, w // out_w
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    rows: Tensor | None = None
    for r in _taps(fh):
        part = x[:, :, r::fh, :]
        rows = part.to(acc_dtype, copy=True) if rows is None else rows.add_(part)  # never written through x
    assert rows is not None
    out: Tensor | None = None
    for c in _taps(fw):
        part = rows[:, :, :, c::fw]
        out = part.contiguous() if out is None else out.add_(part)
    assert out is not None
    count = len(_taps(fh)) * len(_taps(fw))
    if count > 1:
        out.mul_(1.0 / count)
    return out.to(x.dtype, memory_format=torch.contiguous_format)


def _pooled(x: Tensor, out_h: int, out_w: int) -> Tensor:
    """The whole-factor bilinear taps of a 4-D ``x`` as one average pool (module docstring), in ``x``'s layout."""
    fh, fw = int(x.shape[-2]) // out_h, int(x.shape[-1]) // out_w
    th, tw = _taps(fh), _taps(fw)
    window = x[:, :, th[0]:, tw[0]:]
    return F.avg_pool2d(window, kernel_size=(len(th), len(tw)), stride=(fh, fw))


def resize_to_levels(x: Tensor, sizes: list[tuple[int, int]], dtype: torch.dtype) -> list[Tensor]:
    """``x`` ``(B, C, H, W)`` bilinearly resized to each of ``sizes`` (as ``F.interpolate``, align_corners False),
    each row-major in ``dtype``.

    A channels-last bf16 / fp16 ``x`` already in ``dtype`` (the bf16 encoder's output) is pooled in place (one
    rounding, as the kernel's); any other goes row-major (in the promoted type of ``x``'s dtype and ``dtype`` when
    they differ, so features are rounded once, to ``dtype``), then :func:`bilinear_downsample` and a cast.
    """
    exact = x.dim() == 4 and all(s[0] > 0 and s[1] > 0 and x.shape[-2] % s[0] == 0 and x.shape[-1] % s[1] == 0
                                 for s in sizes)
    pooled = exact and x.dtype == dtype and x.element_size() == 2  # fp32 pooling measured no faster than slices
    if pooled and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return [row_major(_pooled(x, int(h), int(w))) for h, w in sizes]
    dense = row_major(x, None if x.dtype == dtype else torch.promote_types(x.dtype, dtype))
    return [bilinear_downsample(dense, size).to(dtype) for size in sizes]
