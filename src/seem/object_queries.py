"""The object queries' decoder pass on a predictor's image: one prompt-free decoder pass per image, shared by
panoptic / semantic / instance output (:mod:`seem.everything`), :meth:`seem.SeemPredictor.find` and everything
mode (:mod:`seem.automatic`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from seem.modeling.decoder import QueryGroup

if TYPE_CHECKING:
    from seem.predictor import SeemPredictor


def object_queries(predictor: SeemPredictor) -> tuple[Tensor, Tensor]:
    """``(class_embed (Q, Dp), masks (Q, H_pad/4, W_pad/4))`` float32 of the object queries on the predictor's
    image: one decoder pass per image, kept in ``predictor._everything`` and shared by every vocabulary and kind.

    Raises:
        ImageError: no image set.
    """
    _, feats = predictor._require_image()
    cached = predictor._everything
    if cached is None:
        # inference mode: the cached image features are inference tensors, which autograd may not record
        with torch.inference_mode(), predictor.autocast(decoder=True):
            out = predictor.decoding_model.decode(feats, sampler=predictor.sampler(), intermediate=False)
        s, e = out.ranges[QueryGroup.OBJECT]
        cached = predictor._everything = (out.last.class_embed[0, s:e].float(), out.last.masks[0, s:e].float())
    return cached
