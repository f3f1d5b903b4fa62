"""Typed results returned by :class:`seem.predictor.SeemPredictor`.

All masks here are in the frame of the *original* image given to ``set_image``: ``(H, W)`` with
row = y and column = x in pixels. Low-resolution logits are in the model frame (see
:mod:`seem.transforms`): 1/4 of the resized, padded input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class Prediction:
    """One mask per prompted object.

    Attributes:
        masks: ``(K, H, W)`` bool, original image size.
        scores: ``(K,)`` float32 in [0, 1]: the probability of the mask's label (softmax over the
            vocabulary + "background") times the mean mask probability inside the mask.
        labels: ``K`` vocabulary names (the semantic label of each mask, SEEM's "semantic awareness").
        label_ids: ``(K,)`` int64 indices into ``vocabulary``.
        logits_lowres: ``(K, h, w)`` float32 mask logits at 1/4 of the padded model input; pass back as
            ``memory=`` to refine the same objects in the next round.
        vocabulary: the label space used for ``labels``.
    """

    masks: np.ndarray
    scores: np.ndarray
    labels: list[str]
    label_ids: np.ndarray
    logits_lowres: torch.Tensor
    vocabulary: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.masks.shape[0])


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic result (COCO panoptic ``segments_info`` entry)."""

    id: int  # value of this segment in ``PanopticResult.segmentation``
    label_id: int  # index into the vocabulary
    label: str
    isthing: bool
    score: float
    area: int  # pixels, original image


@dataclass(frozen=True)
class PanopticResult:
    """``segmentation`` is ``(H, W)`` int32 with 0 = void and ``k`` = ``segments[i].id``."""

    segmentation: np.ndarray
    segments: list[Segment]
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class SemanticResult:
    """``probabilities`` ``(C, H, W)`` float32 per-class soft maps; ``label_map`` ``(H, W)`` int64 argmax.

    For images above the post-processing memory budget (see ``segment_everything``) the probabilities
    are at the model's resized resolution ``(C, h, w)``; ``label_map`` is always at the original size.
    """

    probabilities: np.ndarray
    label_map: np.ndarray
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class InstanceResult:
    """Top-k instances: ``masks`` ``(N, H, W)`` bool, ``scores`` ``(N,)``, ``label_ids`` ``(N,)``."""

    masks: np.ndarray
    scores: np.ndarray
    label_ids: np.ndarray
    labels: list[str] = field(default_factory=list)
    vocabulary: tuple[str, ...] = ()
