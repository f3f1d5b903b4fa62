"""Mask logits of a few query embeddings against an image's (cached) mask features.

A prompt round multiplies 1-3 mask embeddings ``(Q, Dm)`` by the mask features ``(Dm, h*w)`` of each attention
level and, for the returned mask, of the 1/4 map: a matrix-vector product that streams the features. Batched
``bmm`` streams them at a fraction of the memory bandwidth here; the features are fixed per image, so they are
packed once as the weight of a linear layer (:class:`~seem.modeling.packed_linear.WeightPack`, weight
``(h*w, Dm)``) and every later round reads the packed copy: Focal-T's 512 x 22,528 map (683x512 image) 5.1 ->
0.64 ms in fp32, 1.39 -> 0.58 ms in bf16; a 1/8 level 1.02 -> 0.20 ms (fp32), 0.24 -> 0.09 ms (bf16), 2 threads.

The packed copy follows the features tensor (identity, layout, version counter), but features encoded under
``torch.inference_mode`` (the predictor's) keep no version counter: an in-place write into them after the
first round is not seen. Features are meant to be fixed once encoded; after such a write clear the image's
``packs`` dicts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seem.modeling.packed_linear import WeightPack, packable


def feature_logits(embed: Tensor, features: Tensor, packs: dict | None = None, key: object = None) -> Tensor:
    """``(B, Q, Dm)`` embeddings x ``(B, Dm, h, w)`` features -> ``(B, Q, h, w)`` logits in the features' dtype
    (autocast off: bf16 logits of fp32 features would move mask borders).

    ``packs``: a per-image dict (:class:`~seem.modeling.decoder_types.DecoderImageCache` / ``ImageFeatures``
    ``packs``) that keeps the packed copy of ``features`` under ``key``; used for one image outside autograd
    (else, and when packing does not apply, one ``bmm``: the same products up to float rounding).
    """
    b, dm, h, w = features.shape
    e = embed.to(features.dtype)
    if packs is not None and b == 1 and features.is_contiguous():
        weight = features.view(dm, h * w).t()  # (h*w, Dm): the features as a linear layer's weight
        if packable(e[0], weight):
            pack = packs.setdefault(key, WeightPack())
            return pack.linear(e[0], weight, None, owner=features).view(1, -1, h, w)
    with torch.autocast(features.device.type, enabled=False):
        return torch.bmm(e, features.reshape(b, dm, h * w)).view(b, -1, h, w)
