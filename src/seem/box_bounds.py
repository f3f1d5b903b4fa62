"""A box bounds its object's mask (``InferenceConfig.box_bounds_masks``, on for ``seem_tiny``; not in the official
code). SEEM v1 samples a box's prompt points from the filled rectangle (no box encoder, official issue #42), so
nothing keeps the mask inside the box: the decoded object can be the most salient one overlapping it, spilling
far out. A box means "the object is in here", as SAM's users draw it."""

from __future__ import annotations

import torch
from torch import Tensor

from seem.postprocess import prompt_cells


def box_bounded(logits: Tensor, support: Tensor | None, positive: Tensor, rows_per_object: int = 1
                ) -> tuple[Tensor, Tensor]:
    """``InferenceConfig.box_bounds_masks`` for a round whose objects have boxes: a box says the object lies inside
    it, so each of this image's ``K'`` objects (``rows_per_object`` candidate rows each, first in ``logits``) is
    limited to the low-resolution cells of the bounding box of its positive prompt region (the box, widened by
    any other positive prompt of the object): logits outside get ``-|logit|`` (the next round's memory agrees) and
    the support field ``-1`` there, so the mask at the original size stops within one cell (4 input pixels) of
    the box. Not in the official code (off for the official variants).

    Args:
        logits: ``(K r, h, w)`` float mask logits at 1/4 of the padded input (a reference image's objects after
            this image's, left as they are).
        support: the ``(K r, h, w)`` +-1 field of :func:`prompt_connected`, or ``None`` (+1 everywhere).
        positive: ``(K', 4h, 4w)`` bool positive prompt regions in the padded input frame.

    Returns:
        ``(logits, support)``, both of the input's ``(N, h, w)`` shape (all rows, a reference's included), the
        support float32 +-1.

    Raises:
        ValueError: ``positive`` does not fit ``logits``.
    """
    k = positive.shape[0] * rows_per_object
    n, h, w = logits.shape
    if positive.shape[1:] != (4 * h, 4 * w) or n < k:
        raise ValueError(f"positive prompt regions {tuple(positive.shape)} do not fit mask logits {tuple(logits.shape)} "
                         f"with {rows_per_object} rows per object")
    cells = torch.from_numpy(prompt_cells(positive))
    inside = torch.zeros(n, h, w, dtype=torch.bool)
    inside[k:] = True
    for i, c in enumerate(cells):
        rows, cols = c.any(1).nonzero()[:, 0], c.any(0).nonzero()[:, 0]
        if len(rows):  # an object without a positive cell keeps its mask
            inside[i * rows_per_object: (i + 1) * rows_per_object, rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1] = True
        else:
            inside[i * rows_per_object: (i + 1) * rows_per_object] = True
    inside = inside.to(logits.device)
    field = inside.to(torch.float32) * 2 - 1
    return (torch.where(inside, logits, -logits.abs()),
            field if support is None else torch.minimum(support.to(torch.float32), field))
