"""Everything mode: class-agnostic masks of every object and region, each with its best label
(``segment_everything(kind="everything")``).

Modelled on SAM's automatic mask generator (``segment_anything/automatic_mask_generator.py``): candidates from
a regular grid of point prompts decoded in batches, filtered by a quality score and SAM's stability score, then
de-duplicated by NMS. SEEM adds its generic object queries as the first candidates (one decoder pass, shared
with panoptic output); with ``skip_covered_points`` grid points are prompted only *where those miss*. Each grid
point is one object of a batched visual-prompt pass (SEEM v1's per-object attention blocks keep the objects of one
pass apart), so ``points_per_batch`` points cost one decoder pass; by default the points inside their mask are then
decoded as a user's click is, in a second pass (``point_decoding="click"``: for ``seem_tiny`` its 24 candidates,
learned scorer and click fit).

With ``crop_n_layers > 0`` (SAM's crop layers, :mod:`seem.crops`) overlapping crops of the image are encoded
and decoded the same way, each as an image of its own, and their masks mapped back into the whole image.

Scores and stability are computed on the low-resolution logits inside the image (1/4 of the model input, the
resolution the decoder predicts at); masks are returned at the original size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seem import postprocess as pp
from seem.crops import crop_boxes, near_crop_edge, uncrop_masks, uncrop_points
from seem.errors import ImageError
from seem.everything_config import EverythingConfig
from seem.mask_ops import mask_nms, masks_to_boxes, point_grid, stability_score
from seem.object_queries import object_queries
from seem.setting_checks import config_of
from seem.structures import EverythingResult
from seem.vocabularies import check_vocabulary

if TYPE_CHECKING:
    from seem.modeling.seem import ImageFeatures
    from seem.predictor import SeemPredictor
    from seem.transforms import ImageFrame


@dataclass
class _Candidates:
    """Masks gathered so far, all at the size of the image (or crop) decoded, with the crop each came from
    (``crop_ids``, 0: the whole image) and its NMS priority (``ranks``: crop layer + score, so masks of smaller
    crops win, as SAM's NMS across crops; the score alone without crop layers)."""

    masks: list[Tensor] = field(default_factory=list)
    scores: list[Tensor] = field(default_factory=list)
    stability: list[Tensor] = field(default_factory=list)
    label_ids: list[Tensor] = field(default_factory=list)
    label_scores: list[Tensor] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    crop_ids: list[Tensor] = field(default_factory=list)
    ranks: list[Tensor] = field(default_factory=list)

    def add(self, cfg: EverythingConfig, masks, scores, stability, label_ids, label_scores, points,
            crop_id: int = 0, layer: int = 0) -> None:
        """Adds the masks that pass ``cfg``'s area, score and stability thresholds (so only those are kept)."""
        ok = (masks.flatten(1).sum(1) >= max(1, cfg.min_area)) & (scores >= cfg.score_threshold) \
            & (stability >= cfg.stability_threshold)
        for name, value in (("masks", masks), ("scores", scores), ("stability", stability), ("label_ids", label_ids),
                            ("label_scores", label_scores)):
            getattr(self, name).append(value[ok])
        self.points.append(points[ok.numpy()])
        self.crop_ids.append(torch.full((int(ok.sum()),), crop_id, dtype=torch.int64))
        self.ranks.append(scores[ok].float() + layer)
        if self.nbytes() > cfg.max_candidate_bytes:
            self.compact(cfg)

    def nbytes(self) -> int:
        """Bytes of the boolean candidate masks held."""
        return sum(m.numel() for m in self.masks)

    def cat(self, name: str) -> Tensor:
        return torch.cat(getattr(self, name))

    def compact(self, cfg: EverythingConfig) -> None:
        """Keep the masks that survive mask NMS, at most ``max_masks`` and as many as fit the byte budget."""
        masks = self.cat("masks")
        fit = max(1, cfg.max_candidate_bytes // max(1, masks[0].numel()))
        keep = mask_nms(masks, self.cat("ranks"), cfg.nms_threshold, min(cfg.max_masks, fit))
        for name in ("masks", "scores", "stability", "label_ids", "label_scores", "crop_ids", "ranks"):
            setattr(self, name, [self.cat(name)[keep]])
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
    """Adds the object queries above the threshold to ``out``; returns the masks added, ``(K, H, W)`` bool."""
    frame = predictor.frame
    assert frame is not None
    class_embed, query_masks = object_queries(predictor)
    ids, p, background = _label(predictor, class_embed, names)
    keep = torch.nonzero(1.0 - background > cfg.query_threshold).flatten()
    if not len(keep):
        return torch.zeros((0, *frame.original_size), dtype=torch.bool)
    mask_score, stability = _lowres_quality(frame, query_masks[keep], cfg.stability_offset)
    masks = []
    for q in keep.tolist():  # one original-size float map at a time
        up = pp.upsample_to_input(query_masks[q:q + 1], frame.padded_size)
        masks.append(pp.sem_seg_postprocess(up, frame.resized_size, frame.original_size)[0] > 0)
    out.add(cfg, torch.stack(masks).cpu(), (mask_score * stability).cpu(), stability.cpu(), ids[keep].cpu(),
            p[keep].cpu(), np.full((len(keep), 2), np.nan))
    return out.masks[-1]


def _point_candidates(predictor: SeemPredictor, batch: np.ndarray, cfg: EverythingConfig, out: _Candidates) -> None:
    """Decodes the grid points ``batch`` ``(M, 2)`` (x, y) in one pass, one single-click object each, by Eq. 5 over
    the sampled spatial queries, into ``out``; with ``cfg.point_decoding="click"`` and a model whose clicks decode
    otherwise (click fit, all spatial queries, prompt-connected masks), the points inside their mask are decoded
    again as user clicks in a second pass and those masks kept instead; with ``cfg.click_fit``, the points whose
    mask is not empty but leaves them outside are decoded again with the click fit. A point on nothing (a blank
    image) is never fitted a blob."""
    pred = predictor.predict(points=batch[:, None, :], click_fit=False, candidate_scorer=False, spatial_queries="sampled")
    inference = predictor.model.config.inference
    clicks_differ = inference.click_fit or inference.spatial_queries != "sampled" or inference.prompt_connected_masks
    if cfg.point_decoding == "click" and clicks_differ:
        # only points on something, where Eq. 5's mask holds the point: a fitted click draws a blob even on a black
        # image (Eq. 5's masks there are specks away from their points); the others keep Eq. 5's mask
        held = ~_missed_points(pred.masks, batch) & pred.masks.reshape(len(batch), -1).any(1)
        _add_points(predictor, pred, None if not held.any() else ~held, batch, cfg, out)
        if held.any():
            _add_points(predictor, predictor.predict(points=batch[held][:, None, :]), None, batch[held], cfg, out)
        return
    missed = _missed_points(pred.masks, batch) if cfg.click_fit and predictor.model.config.inference.click_fit \
        else np.zeros(len(batch), dtype=bool)
    _add_points(predictor, pred, None if not missed.any() else ~missed, batch, cfg, out)
    if missed.any():
        refit = predictor.predict(points=batch[missed][:, None, :], click_fit=True, candidate_scorer=False,
                                  spatial_queries="sampled")
        _add_points(predictor, refit, None, batch[missed], cfg, out)


def _missed_points(masks: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(M,)`` bool: mask ``i`` ``(M, H, W)`` has pixels but not at point ``i`` (x, y original pixels)."""
    h, w = masks.shape[1:]
    cols = np.clip(points[:, 0].astype(np.int64), 0, w - 1)
    rows = np.clip(points[:, 1].astype(np.int64), 0, h - 1)
    return masks.reshape(len(masks), -1).any(axis=1) & ~masks[np.arange(len(masks)), rows, cols]


def _add_points(predictor: SeemPredictor, pred, keep: np.ndarray | None, points: np.ndarray, cfg: EverythingConfig,
                out: _Candidates) -> None:
    """Adds the ``keep`` rows (``None``: all, without copying) of the point prediction ``pred`` (of ``points``)
    to ``out`` with their scores."""
    frame = predictor.frame
    assert frame is not None
    if keep is not None and not keep.any():
        return
    rows = slice(None) if keep is None else keep
    mask_score, stability = _lowres_quality(frame, pred.logits_lowres[rows], cfg.stability_offset)
    label_p = torch.as_tensor(pred.scores[rows]) / mask_score.clamp(min=1e-6)  # scores = p(label) x mask score
    out.add(cfg, torch.from_numpy(pred.masks[rows]), mask_score * stability, stability,
            torch.as_tensor(pred.label_ids[rows]), label_p.clamp(0, 1), points[rows])


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
        run: runs each model step ``fn()`` (the object queries, then one per batch of points; then for each crop
            of ``config.crop_n_layers``: its image encoding, its queries, its batches) under
            ``torch.inference_mode``; default: calls it so. A server passes its bulk queue, so clicks are
            served between the steps of a long call.

    Returns:
        :class:`EverythingResult`: ``masks`` ``(N, H, W)`` bool at the original size, best score first, with
        scores, stability scores, XYXY boxes, labels and where each mask came from (source, grid point and
        crop box, all in the original image's frame). With crop layers, masks are de-duplicated by NMS
        within each crop, then across crops preferring masks of deeper layers (smaller crops; SAM's rule),
        and the best ``max_masks`` by score are returned.

    Raises:
        PromptError: an invalid vocabulary; a ``config`` mapping with unknown keys (named) or values out of range.
        PromptTypeError (a PromptError and a TypeError): ``config`` neither an EverythingConfig nor a mapping,
            or a field of the wrong type (named). ImageError: no image set; crop layers on a view without the
            image's pixels.
    """
    config = config_of(EverythingConfig, config)
    frame, feats = predictor._require_image()
    names = check_vocabulary(vocabulary) if vocabulary is not None else tuple(predictor.vocabulary)
    view = predictor if tuple(predictor.vocabulary) == names else predictor.with_image(frame, feats, predictor.image)
    if view is not predictor:
        view.vocabulary = names
        view._everything = predictor._everything
    step = run or _in_inference_mode
    boxes, layers = crop_boxes(frame.original_size, config.crop_n_layers, config.crop_overlap_ratio)
    cands = _Candidates()
    _decode(view, names, config, step, cands)  # the whole image (crop 0), as without crop layers
    for k in range(1, len(boxes)):
        _decode_crop(view, names, config, step, cands, k, boxes[k], int(layers[k]))
    predictor._everything = view._everything
    return _select(cands, names, config, frame.original_size, boxes)


def _decode(view: SeemPredictor, names: tuple[str, ...], cfg: EverythingConfig,
            step: Callable[[Callable[[], None]], None], out: _Candidates,
            crop: tuple[np.ndarray, tuple[int, int]] | None = None) -> None:
    """Object queries, then ``cfg.points_per_side``-square grid points (with ``cfg.skip_covered_points`` only where
    the query masks miss), on ``view``'s image
    (masks, points in its frame) into ``out``. ``crop``: ``view``'s image is the crop ``box`` (XYXY) of an image
    of ``size`` ``(H, W)``; query masks that touch an inner crop edge (dropped later) do not hide grid points."""
    frame = view.frame
    assert frame is not None
    found: list[Tensor] = []
    step(lambda: found.append(_query_candidates(view, names, cfg, out)))
    queries = found[0]
    if crop is not None and len(queries):
        queries = queries[~near_crop_edge(masks_to_boxes(queries), *crop)]
    skip = cfg.skip_covered_points and len(queries)
    covered = queries.any(0) if skip else torch.zeros(frame.original_size, dtype=torch.bool)
    grid = point_grid(cfg.points_per_side, frame.original_size)
    cols = np.minimum(grid[:, 0].astype(int), frame.original_size[1] - 1)
    rows = np.minimum(grid[:, 1].astype(int), frame.original_size[0] - 1)
    missed = grid[~covered.numpy()[rows, cols]]
    if frame.original_size[0] * frame.original_size[1] < cfg.min_area:  # no mask could pass the area filter
        missed = missed[:0]
    for i in range(0, len(missed), cfg.points_per_batch):
        step(functools.partial(_point_candidates, view, missed[i:i + cfg.points_per_batch], cfg, out))


def _decode_crop(view: SeemPredictor, names: tuple[str, ...], cfg: EverythingConfig,
                 step: Callable[[Callable[[], None]], None], out: _Candidates, crop_id: int, box: np.ndarray,
                 layer: int) -> None:
    """Crop ``box`` (XYXY pixels of ``view``'s image) of layer ``layer``: encoded as an image of its own (one
    step), decoded as :func:`_decode` does with ``points_per_side // downscale^layer`` points a side; its masks
    that touch an inner crop edge are dropped (:func:`seem.crops.near_crop_edge`), the rest de-duplicated by
    mask NMS within the crop, then added to ``out`` in the whole image's frame (False outside the crop).

    Raises:
        ImageError: ``view`` holds no pixels of its image (a view made by ``with_image`` without them).
    """
    frame = view.frame
    assert frame is not None
    if view.image is None:
        raise ImageError("crop_n_layers > 0 needs the image's pixels: set_image(image), or with_image(..., image)")
    size = frame.original_size
    x0, y0, x1, y1 = (int(v) for v in box)
    pixels = np.ascontiguousarray(view.image[y0:y1, x0:x1])
    encoded: list[tuple[ImageFrame, ImageFeatures]] = []
    step(lambda: encoded.append(view.encode(pixels)))
    crop_view = view.with_image(encoded[0][0], encoded[0][1], pixels)
    points_per_side = max(1, cfg.points_per_side // cfg.crop_n_points_downscale_factor ** layer)
    local = _Candidates()
    _decode(crop_view, names, replace(cfg, points_per_side=points_per_side,
                                      max_candidate_bytes=max(1, cfg.max_candidate_bytes - out.nbytes())), step, local,
            (box, size))
    if not local.masks or not sum(len(m) for m in local.masks):
        return
    masks, scores = local.cat("masks"), local.cat("scores").float()
    inner = torch.nonzero(~near_crop_edge(masks_to_boxes(masks), box, size)).flatten()
    keep = inner[mask_nms(masks[inner], scores[inner], cfg.nms_threshold, cfg.max_masks)]
    out.add(cfg, uncrop_masks(masks[keep], box, size), scores[keep], local.cat("stability")[keep],
            local.cat("label_ids")[keep], local.cat("label_scores")[keep],
            uncrop_points(np.concatenate(local.points)[keep.numpy()], box), crop_id=crop_id, layer=layer)


def _select(c: _Candidates, names: tuple[str, ...], cfg: EverythingConfig, size: tuple[int, int],
            boxes: np.ndarray) -> EverythingResult:
    """Mask NMS over the candidates that passed the thresholds (by rank: masks of deeper crop layers first),
    then the best ``max_masks`` by score: the :class:`EverythingResult` (``boxes``: the crops, XYXY)."""
    if not c.masks:
        empty = np.zeros(0, dtype=np.float32)
        return EverythingResult(np.zeros((0, *size), dtype=bool), empty, empty, np.zeros((0, 4), np.float32), [],
                                np.zeros(0, np.int64), empty, [], np.zeros((0, 2)), names, np.zeros((0, 4), np.int64))
    masks = c.cat("masks")
    scores, stability = c.cat("scores").float(), c.cat("stability").float()
    label_ids, label_scores = c.cat("label_ids").long(), c.cat("label_scores").float()
    points = np.concatenate(c.points)
    sources = ["query" if np.isnan(p[0]) else "point" for p in points]
    keep = mask_nms(masks, c.cat("ranks"), cfg.nms_threshold)
    keep = keep[torch.from_numpy(np.argsort(-scores[keep].numpy(), kind="stable"))][:cfg.max_masks]
    kept = masks[keep]
    ids = label_ids[keep].numpy()
    return EverythingResult(kept.numpy(), scores[keep].numpy(), stability[keep].numpy(), masks_to_boxes(kept).numpy(),
                            [names[i] for i in ids], ids.astype(np.int64), label_scores[keep].numpy(),
                            [sources[i] for i in keep.tolist()], points[keep.numpy()], names,
                            boxes[c.cat("crop_ids")[keep].numpy()])
