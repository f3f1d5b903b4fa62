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


@dataclass(frozen=True)
class PhraseInstances:
    """Every instance of one phrase found by :meth:`seem.SeemPredictor.find`, best first.

    Attributes:
        phrase: the phrase as given.
        masks: ``(N, H, W)`` bool, original image size (N may be 0).
        scores: ``(N,)`` float32 in [0, 1]: p(phrase) over the phrases + "background" times the mean mask
            probability inside the mask (the official instance score), descending.
        boxes: ``(N, 4)`` float32 XYXY pixels of the original image (tight boxes of the masks).
        queries: ``(N,)`` int64 index of the object query each instance comes from.
    """

    phrase: str
    masks: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    queries: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.masks.shape[0])


@dataclass(frozen=True)
class FindResult:
    """One :class:`PhraseInstances` group per phrase of a :meth:`seem.SeemPredictor.find` call, in order."""

    groups: list[PhraseInstances]

    def __getitem__(self, phrase: str) -> PhraseInstances:
        for g in self.groups:
            if g.phrase == phrase:
                return g
        raise KeyError(phrase)

    def __iter__(self):
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def phrases(self) -> list[str]:
        return [g.phrase for g in self.groups]


@dataclass(frozen=True)
class EverythingResult:
    """Class-agnostic masks of every object and region (``segment_everything(kind="everything")``), best first.

    Attributes:
        masks: ``(N, H, W)`` bool, original image size; they may overlap (SAM's automatic masks do too).
        scores: ``(N,)`` float32: mean mask probability inside the mask x its stability score.
        stability_scores: ``(N,)`` float32, SAM's stability score (IoU of the masks at logit +-1).
        boxes: ``(N, 4)`` float32 XYXY pixels.
        labels / label_ids / label_scores: each mask's best vocabulary name, its index and probability.
        sources: ``"query"`` (an object query) or ``"point"`` (a grid point prompt) per mask.
        points: ``(N, 2)`` float64 ``(x, y)`` of the grid point that made the mask (NaN for object queries).
        vocabulary: the label space.
        crop_boxes: ``(N, 4)`` int64 XYXY pixels of the crop each mask was found in (``[0, 0, W, H]``: the whole
            image; other crops with ``EverythingConfig.crop_n_layers > 0``); None when not recorded.
    """

    masks: np.ndarray
    scores: np.ndarray
    stability_scores: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    label_ids: np.ndarray
    label_scores: np.ndarray
    sources: list[str]
    points: np.ndarray
    vocabulary: tuple[str, ...] = ()
    crop_boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.masks.shape[0])
