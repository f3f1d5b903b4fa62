"""Everything mode: class-agnostic masks of every object and region, each with its best label
(``segment_everything(kind="everything")``).

Modelled on SAM's automatic mask generator (``segment_anything/automatic_mask_generator.py``): candidates from
a regular grid of point prompts decoded in batches, filtered by a quality score and SAM's stability score, then
de-duplicated by NMS. SEEM adds its generic object queries as the first candidates (one decoder pass, shared
with panoptic output), and prompts grid points only *where those miss*: a point inside a kept query mask is not
decoded. Each grid point is one object of a batched visual-prompt pass (SEEM v1's per-object attention blocks
keep the objects of one pass apart), so ``points_per_batch`` points cost one decoder pass.

Scores and stability are computed on the low-resolution logits inside the image (1/4 of the model input, the
resolution the decoder predicts at); masks are returned at the original size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seem import postprocess as pp
from seem.errors import PromptError
from seem.mask_ops import mask_nms, masks_to_boxes, point_grid, stability_score
from seem.object_queries import object_queries
from seem.setting_checks import config_of, number_fields
from seem.structures import EverythingResult
from seem.vocabularies import check_vocabulary

if TYPE_CHECKING:
    from seem.predictor import SeemPredictor
    from seem.transforms import ImageFrame


@dataclass(frozen=True)
class EverythingConfig:
    """Settings of everything mode (names and meaning as SAM's ``SamAutomaticMaskGenerator`` where shared).

    Attributes:
        points_per_side: the grid is ``n x n`` points over the image (SAM: 32; 16 keeps a CPU call to seconds).
        points_per_batch: grid points decoded together in one decoder pass, one object each.
        query_threshold: an object query is a candidate when its objectness, 1 - p(background) over the
            vocabulary + "background", is above this (class-agnostic: the probability mass of all names).
        score_threshold: keep masks whose score (mean mask probability inside x stability) is at least this
            (SAM's ``pred_iou_thresh`` plays this role).
        stability_threshold / stability_offset: SAM's ``stability_score_thresh`` / ``stability_score_offset``.
        nms_threshold: mask IoU above which the lower-scored of two masks is dropped (SAM's ``box_nms_thresh``).
        min_area: drop masks smaller than this many pixels of the original image.
        max_masks: at most this many masks, best first.
        max_candidate_bytes: memory for the original-size candidate masks held before the final NMS. Past it
            the candidates are reduced as they come (mask NMS, then the best that fit), which bounds memory on
            large images and dense grids; a single NMS over all candidates can keep a few other masks.

    Raises:
        PromptTypeError (a PromptError and a TypeError): an ``int`` field that is not an integer (``2.5``,
            ``True``; NumPy integers are fine) or a ``float`` field that is not a real number (``"0.3"``).
        PromptError: NaN, an infinity or a value outside its range, naming the field.
    """

    points_per_side: int = 16
    points_per_batch: int = 32
    query_threshold: float = 0.5
    score_threshold: float = 0.15
    stability_threshold: float = 0.3
    stability_offset: float = 1.0
    nms_threshold: float = 0.7
    min_area: int = 16
    max_masks: int = 256
    max_candidate_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        number_fields(self)  # types first (stored as int / float), then the ranges
        if not 1 <= self.points_per_side <= 64:
            raise PromptError(f"points_per_side must lie in [1, 64], got {self.points_per_side}")
        if not 1 <= self.points_per_batch <= 256:
            raise PromptError(f"points_per_batch must lie in [1, 256], got {self.points_per_batch}")
        for name in ("query_threshold", "score_threshold", "stability_threshold", "nms_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PromptError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name, least in (("stability_offset", 0), ("min_area", 0), ("max_masks", 1), ("max_candidate_bytes", 1)):
            if getattr(self, name) < least:
                raise PromptError(f"{name} must be >= {least}, got {getattr(self, name)}")


@dataclass
class _Candidates:
    """Masks gathered so far, all at the original size."""

    masks: list[Tensor]
    scores: list[Tensor]
    stability: list[Tensor]
    label_ids: list[Tensor]
    label_scores: list[Tensor]
    points: list[np.ndarray]

    def add(self, cfg: EverythingConfig, masks, scores, stability, label_ids, label_scores, points) -> None:
        """Adds the masks that pass ``cfg``'s area, score and stability thresholds (so only those are kept)."""
        ok = (masks.flatten(1).sum(1) >= max(1, cfg.min_area)) & (scores >= cfg.score_threshold) \
            & (stability >= cfg.stability_threshold)
        for name, value in (("masks", masks), ("scores", scores), ("stability", stability), ("label_ids", label_ids),
                            ("label_scores", label_scores)):
            getattr(self, name).append(value[ok])
        self.points.append(points[ok.numpy()])
        if sum(m.numel() for m in self.masks) > cfg.max_candidate_bytes:
            self.compact(cfg)

    def compact(self, cfg: EverythingConfig) -> None:
        """Keep the masks that survive mask NMS, at most ``max_masks`` and as many as fit the byte budget."""
        masks, scores = torch.cat(self.masks), torch.cat(self.scores).float()
        fit = max(1, cfg.max_candidate_bytes // max(1, masks[0].numel()))
        keep = mask_nms(masks, scores, cfg.nms_threshold, min(cfg.max_masks, fit))
        for name in ("masks", "scores", "stability", "label_ids", "label_scores"):
            setattr(self, name, [torch.cat(getattr(self, name))[keep]])
        self.points = [np.concatenate(self.points)[keep.numpy()]]


def _lowres_quality(frame: ImageFrame, logits_lowres: Tensor, offset: float) -> tuple[Tensor, Tensor]:
    """``(K, h, w)`` logits at 1/4 of the padded input -> ``(K,)`` mean mask probability inside the mask and
    ``(K,)`` stability score, both over the image part (padding cropped)."""
    h = -(-frame.resized_size[0] // 4)
    w = -(-frame.resized_size[1] // 4)
    x = logits_lowres[:, :h, :w].float()
    inside = (x > 0).flatten(1).float()
    mask_score = (x.sigmoid().flatten(1) * inside).sum(1) / inside.sum(1).clamp(min=1.0)
    return mask_score, stability_score(x, 0.0, offset)


def _label(predictor: SeemPredictor, class_embed: Tensor, names: tuple[str, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """``(K, Dp)`` -> label ids ``(K,)``, their probabilities ``(K,)`` and p(background) ``(K,)``."""
    emb = predictor.vocabularies.get(names + ("background",))
    probs = F.softmax(predictor.model.class_logits(class_embed, emb.to(class_embed)), dim=-1)
    p, ids = probs[:, :-1].max(dim=-1)
    return ids, p, probs[:, -1]


def _query_candidates(predictor: SeemPredictor, names: tuple[str, ...], cfg: EverythingConfig,
                      out: _Candidates) -> Tensor:
    """Adds the object queries above the threshold to ``out``; returns their union ``(H, W)`` bool."""
    frame = predictor.frame
    assert frame is not None
    class_embed, query_masks = object_queries(predictor)
    ids, p, background = _label(predictor, class_embed, names)
    keep = torch.nonzero(1.0 - background > cfg.query_threshold).flatten()
    covered = torch.zeros(frame.original_size, dtype=torch.bool)
    if not len(keep):
        return covered
    mask_score, stability = _lowres_quality(frame, query_masks[keep], cfg.stability_offset)
    masks = []
    for q in keep.tolist():  # one original-size float map at a time
        up = pp.upsample_to_input(query_masks[q:q + 1], frame.padded_size)
        masks.append(pp.sem_seg_postprocess(up, frame.resized_size, frame.original_size)[0] > 0)
    out.add(cfg, torch.stack(masks).cpu(), (mask_score * stability).cpu(), stability.cpu(), ids[keep].cpu(),
            p[keep].cpu(), np.full((len(keep), 2), np.nan))
    return out.masks[-1].any(0) if len(out.masks[-1]) else covered


def _point_candidates(predictor: SeemPredictor, batch: np.ndarray, cfg: EverythingConfig, out: _Candidates) -> None:
    """Decodes the grid points ``batch`` ``(M, 2)`` (x, y) in one pass, one single-click object each, into ``out``."""
    frame = predictor.frame
    assert frame is not None
    pred = predictor.predict(points=batch[:, None, :])
    mask_score, stability = _lowres_quality(frame, pred.logits_lowres, cfg.stability_offset)
    label_p = torch.as_tensor(pred.scores) / mask_score.clamp(min=1e-6)  # scores = p(label) x mask score
    out.add(cfg, torch.from_numpy(pred.masks), mask_score * stability, stability,
            torch.as_tensor(pred.label_ids), label_p.clamp(0, 1), batch)


def _in_inference_mode(fn: Callable[[], None]) -> None:
    with torch.inference_mode():
        fn()


def everything_masks(predictor: SeemPredictor, vocabulary: Sequence[str] | None = None,
                     config: EverythingConfig | Mapping[str, Any] | None = None,
                     run: Callable[[Callable[[], None]], None] | None = None) -> EverythingResult:
    """Class-agnostic masks of every object and region of ``predictor``'s current image (see the module docstring).

    Args:
        predictor: a :class:`seem.SeemPredictor` with an image set.
        vocabulary: names for each mask's best label (default: the predictor's vocabulary).
        config: grid, batching, thresholds: an :class:`EverythingConfig`, a mapping of some of its fields
            (``{"points_per_side": 8}`` is ``EverythingConfig(points_per_side=8)``) or None for the defaults.
        run: runs each model step ``fn()`` (the object queries, then one per batch of points) under
            ``torch.inference_mode``; default: calls it so. A server passes its bulk queue, so clicks are served between the steps of a long call.

    Returns:
        :class:`EverythingResult`: ``masks`` ``(N, H, W)`` bool at the original size, best score first, with
        scores, stability scores, XYXY boxes, labels and where each mask came from.

    Raises:
        PromptError: an invalid vocabulary; a ``config`` mapping with unknown keys (named) or values out of range.
        PromptTypeError (a PromptError and a TypeError): ``config`` neither an EverythingConfig nor a mapping,
            or a field of the wrong type (named). ImageError: no image set.
    """
    config = config_of(EverythingConfig, config)
    frame, feats = predictor._require_image()
    names = check_vocabulary(vocabulary) if vocabulary is not None else tuple(predictor.vocabulary)
    view = predictor if tuple(predictor.vocabulary) == names else predictor.with_image(frame, feats, predictor.image)
    if view is not predictor:
        view.vocabulary = names
        view._everything = predictor._everything
    step = run or _in_inference_mode
    cands = _Candidates([], [], [], [], [], [])
    covered: list[Tensor] = []
    step(lambda: covered.append(_query_candidates(view, names, config, cands)))
    grid = point_grid(config.points_per_side, frame.original_size)
    cols = np.minimum(grid[:, 0].astype(int), frame.original_size[1] - 1)
    rows = np.minimum(grid[:, 1].astype(int), frame.original_size[0] - 1)
    missed = grid[~covered[0].numpy()[rows, cols]]
    for i in range(0, len(missed), config.points_per_batch):
        step(functools.partial(_point_candidates, view, missed[i:i + config.points_per_batch], config, cands))
    predictor._everything = view._everything
    return _select(cands, names, config, frame.original_size)


def _select(c: _Candidates, names: tuple[str, ...], cfg: EverythingConfig, size: tuple[int, int]) -> EverythingResult:
    """Mask NMS over the candidates that passed the thresholds, at most ``max_masks``: the :class:`EverythingResult`."""
    if not c.masks:
        empty = np.zeros(0, dtype=np.float32)
        return EverythingResult(np.zeros((0, *size), dtype=bool), empty, empty, np.zeros((0, 4), np.float32), [],
                                np.zeros(0, np.int64), empty, [], np.zeros((0, 2)), names)
    masks = torch.cat(c.masks)
    scores, stability = torch.cat(c.scores).float(), torch.cat(c.stability).float()
    label_ids, label_scores = torch.cat(c.label_ids).long(), torch.cat(c.label_scores).float()
    points = np.concatenate(c.points)
    sources = ["query" if np.isnan(p[0]) else "point" for p in points]
    keep = mask_nms(masks, scores, cfg.nms_threshold, cfg.max_masks)
    kept = masks[keep]
    ids = label_ids[keep].numpy()
    return EverythingResult(kept.numpy(), scores[keep].numpy(), stability[keep].numpy(), masks_to_boxes(kept).numpy(),
                            [names[i] for i in ids], ids.astype(np.int64), label_scores[keep].numpy(),
                            [sources[i] for i in keep.tolist()], points[keep.numpy()], names)
