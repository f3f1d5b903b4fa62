"""Products with banded matrices (the resampling matrices of :mod:`seem.transforms`), block by block.

Upsampling mask logits to the original image is ``rows @ logits @ cols`` with ``rows`` ``(H, h)`` and ``cols``
``(w, W)`` (:meth:`seem.transforms.ImageFrame.logits_to_original`). Each output row or column weighs only a
few neighbouring low-res cells (2 for the bilinear x4 upsampling, a few more with a bicubic resize), so a dense
product spends almost all of its multiplications on zeros: 61 MFLOP for a 512 x 683 map from 128 x 176 logits,
1.7 ms on one core here. Blocks of 64 output rows (columns) multiply only the low-res band their rows
(columns) weigh: the same sums without the zero terms (equal up to float rounding).
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

BLOCK = 64
# id(matrix) -> its bands; an entry is dropped when its matrix is freed (tensors compare elementwise, so they
# cannot key a WeakKeyDictionary)
_BANDS: dict[tuple[int, bool], list[tuple[int, int, int, int]]] = {}


def row_bands(matrix: Tensor, block: int = BLOCK) -> list[tuple[int, int, int, int]]:
    """``(a, b, s, e)`` per block of ``block`` rows ``[a, b)`` of ``matrix`` ``(n_out, n_low)``: the columns
    ``[s, e)`` holding every non-zero of those rows (``s == e`` when the block is all zero)."""
    n_out, n_low = matrix.shape
    nz = matrix != 0
    has = nz.any(1)
    first = torch.where(has, nz.to(torch.uint8).argmax(1), n_low)
    last = torch.where(has, n_low - nz.flip(1).to(torch.uint8).argmax(1), 0)  # one past the last non-zero
    bands = []
    for a in range(0, n_out, block):
        b = min(a + block, n_out)
        s, e = int(first[a:b].min()), int(last[a:b].max())
        bands.append((a, b, s, max(s, e)))
    return bands


def _bands_of(matrix: Tensor, transposed: bool) -> list[tuple[int, int, int, int]]:
    """:func:`row_bands` of ``matrix`` (of ``matrix.t()`` when ``transposed``), remembered for as long as the
    matrix lives (the resampling matrices are cached per image size)."""
    key = (id(matrix), transposed)
    cached = _BANDS.get(key)
    if cached is None:
        cached = row_bands(matrix.t() if transposed else matrix)
        _BANDS[key] = cached
        weakref.finalize(matrix, _BANDS.pop, key, None)
    return cached


def _check(matrix: Tensor, x: Tensor, axis: int, name: str) -> None:
    if matrix.dim() != 2 or x.dim() < 2 or x.shape[axis] != matrix.shape[1 if axis == -2 else 0]:
        raise ValueError(f"{name}: shapes {tuple(matrix.shape)} and {tuple(x.shape)} do not multiply")


def left_product(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` for a banded ``matrix`` ``(n_out, n_low)`` and ``x`` ``(..., n_low, w)``, float32.

    The matrix must not change after its first product here (its bands are remembered).

    Raises:
        ValueError: the shapes do not multiply.
    """
    _check(matrix, x, -2, "left_product")
    if matrix.shape[1] < 2 * BLOCK:
        return matrix @ x
    out = x.new_zeros(*x.shape[:-2], matrix.shape[0], x.shape[-1])
    for a, b, s, e in _bands_of(matrix, transposed=False):
        if e > s:
            out[..., a:b, :] = matrix[a:b, s:e] @ x[..., s:e, :]
    return out


def right_product(x: Tensor, matrix: Tensor) -> Tensor:
    """``x @ matrix`` for ``x`` ``(..., h, n_low)`` and a banded ``matrix`` ``(n_low, n_out)``, float32 (the matrix
    must not change after its first product here).

    Raises:
        ValueError: the shapes do not multiply.
    """
    _check(matrix, x, -1, "right_product")
    if matrix.shape[0] < 2 * BLOCK:
        return x @ matrix
    out = x.new_zeros(*x.shape[:-1], matrix.shape[1])
    for a, b, s, e in _bands_of(matrix, transposed=True):
        if e > s:
            out[..., a:b] = x[..., s:e] @ matrix[s:e, a:b]
    return out
