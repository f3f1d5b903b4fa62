"""Zoom-in refinement for interactive segmentation: decode the object's region at the model's input size.

A model encodes an image at one size (``shorter_side``, 320 px for ``seem_tiny``), so a 20 px chair covers a
few cells of its 1/4-resolution mask features and a large object's boundary is drawn from cells 4 model pixels
wide. Interactive segmenters therefore zoom in (RITM's ``ZoomIn``, Sofiiuk et al. 2022, §4; FocalClick; the
published RITM / SimpleClick numbers use it): the region of interest (RoI) is the bounding box of the current
mask and the positive prompts, expanded by ``expansion_ratio``; the crop of the original image is encoded at
the model's input size and the prompts, moved into the crop, are decoded there. The crop's encoding is reused
while the RoI moves little (box IoU >= ``recompute_iou``), so most rounds still run only the decoder.

Differences from RITM, both for objects the whole-image pass misses: the first round also zooms (the
whole-image mask gives the RoI, then the crop is decoded; RITM's ``skip_clicks=1`` never zooms round 1), and
the smallest crop is set by the largest upscaling (``max_zoom``) rather than a fixed pixel size.

:class:`ZoomInPredictor` wraps a :class:`~seem.predictor.SeemPredictor` with the same ``set_image`` /
``predict`` calls; a round's :class:`~seem.structures.Prediction` is in the whole image's frame (masks
``(K, H, W)``, ``logits_lowres`` of the whole image), so it is the next round's ``memory`` as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from seem.errors import PromptError
from seem.prompts import Prompts
from seem.prompts.checks import check_inside, memory_logits
from seem.rasterize import rasterize_polygon, rasterize_polyline
from seem.structures import Prediction
from seem.transforms import ImageFrame

_OUTSIDE = -20.0  # logit outside the crop (probability ~2e-9): the object ends at the RoI


@dataclass(frozen=True)
class ZoomInConfig:
    """Settings of :class:`ZoomInPredictor`.

    Attributes:
        expansion_ratio: the RoI is the box of the mask and the positive prompts, scaled by this about its centre
            (RITM: 1.4; 2.0 keeps a large object at about the scale of the whole image, where ``seem_tiny`` is
            best: GrabCut NoC@90 10.8 at 1.4, 9.7 at 2.0, 9.8 without zoom, measured before the click fit; with
            it 6.2 at 2.0 and 5.9 without zoom).
        max_zoom: the crop is upscaled at most this much relative to the whole image's encoding (it is grown to
            at least ``1 / max_zoom`` of the image's shorter side), so a tiny RoI is not blown up into blur.
        recompute_iou: keep the current crop's encoding while the new RoI has at least this box IoU with it;
            a RoI with this IoU with the whole image decodes on the whole image (no crop).
        first_round: zoom in the first round too (the whole-image mask gives the RoI); ``False`` is RITM's
            ``skip_clicks=1``.
    """

    expansion_ratio: float = 2.0
    max_zoom: float = 4.0
    recompute_iou: float = 0.5
    first_round: bool = True

    def __post_init__(self) -> None:
        if not self.expansion_ratio >= 1.0:
            raise ValueError(f"expansion_ratio must be >= 1, got {self.expansion_ratio}")
        if not self.max_zoom >= 1.0:
            raise ValueError(f"max_zoom must be >= 1, got {self.max_zoom}")
        if not 0.0 < self.recompute_iou <= 1.0:
            raise ValueError(f"recompute_iou must be in (0, 1], got {self.recompute_iou}")


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 pixels of the original image, half-open


def box_iou(a: Box, b: Box) -> float:
    """IoU of two half-open XYXY pixel boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _grow(lo: float, hi: float, size: float, limit: int) -> tuple[int, int]:
    """The interval ``[lo, hi)`` grown about its centre to ``size``, shifted inside ``[0, limit)``."""
    size = min(max(size, hi - lo), limit)
    start = (lo + hi) / 2 - size / 2
    start = min(max(start, 0.0), limit - size)
    a = int(np.floor(start))
    return a, min(limit, max(a + 1, int(np.ceil(start + size))))


def object_roi(support: np.ndarray, image_size: tuple[int, int], config: ZoomInConfig, min_side: float) -> Box:
    """The RoI of ``support`` ``(H, W)`` bool (the mask and the positive prompts; not empty): its bounding box
    scaled by ``config.expansion_ratio``, each side at least ``min_side`` pixels, inside the image."""
    rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    r = config.expansion_ratio
    xa, xb = _grow(x0, x1, max((x1 - x0) * r, min_side), image_size[1])
    ya, yb = _grow(y0, y1, max((y1 - y0) * r, min_side), image_size[0])
    return xa, ya, xb, yb


def positive_support(prompts: Prompts, image_size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: the pixels of every positive visual prompt (positive clicks, boxes, strokes, polygons,
    masks) of ``prompts``, in the original image. Coordinates outside the image are clipped (the predictor
    rejects them later with its own error)."""
    h, w = image_size
    out = np.zeros((h, w), dtype=bool)
    if prompts.points is not None:
        assert prompts.point_labels is not None  # Prompts fills labels whenever points are given
        for x, y in prompts.points[prompts.point_labels == 1]:
            out[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))] = True
    if prompts.boxes is not None:
        for x0, y0, x1, y1 in np.round(prompts.boxes).astype(int):
            out[max(y0, 0):max(min(y1, h), 0), max(x0, 0):max(min(x1, w), 0)] = True
    for shapes in _drawn(prompts, image_size).values():
        for shape in shapes:
            if shape.shape == (h, w):
                out |= shape.astype(bool)
    return out


def crop_prompts(prompts: Prompts, roi: Box, image_size: tuple[int, int]) -> Prompts:
    """``prompts`` moved into the crop ``roi`` of the ``image_size`` original image: points shifted, boxes shifted
    and clipped, strokes, polygons and masks drawn at the original size and cut. Negative clicks outside the crop are dropped (they cannot change a pixel inside
    it); text and reference prompts are kept as they are."""
    x0, y0, x1, y1 = roi
    shift = np.array([x0, y0], dtype=np.float64)
    fields: dict = {"text": prompts.text, "reference": prompts.reference}
    if prompts.points is not None:
        assert prompts.point_labels is not None
        pts, labels = prompts.points - shift, prompts.point_labels
        inside = (pts[..., 0] >= 0) & (pts[..., 0] < x1 - x0) & (pts[..., 1] >= 0) & (pts[..., 1] < y1 - y0)
        keep = inside | (labels == 1)
        n = int(keep.sum(axis=1).max())
        if n:  # (objects whose clicks all fell outside keep their box / stroke / polygon / mask)
            rows = [_padded(pts[k], labels[k], keep[k], n, (x1 - x0, y1 - y0)) for k in range(len(pts))]
            fields["points"] = np.stack([r[0] for r in rows])
            fields["point_labels"] = np.stack([r[1] for r in rows])
    if prompts.boxes is not None:
        b = prompts.boxes - np.concatenate([shift, shift])
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, x1 - x0)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, y1 - y0)
        fields["boxes"] = b
    for name, shapes in _drawn(prompts, image_size).items():
        fields[name] = [s[y0:y1, x0:x1] for s in shapes]
    return Prompts(**fields)


def _drawn(prompts: Prompts, image_size: tuple[int, int]) -> dict[str, list[np.ndarray]]:
    """The scribbles, polygons and masks of ``prompts`` as original-frame masks (``(M, 2)`` point lists drawn as
    the predictor draws them: polylines 3 px wide, polygons filled).

    Raises:
        PromptError: a stroke or polygon point outside the image (as the predictor would)."""
    out: dict[str, list[np.ndarray]] = {}
    for name, draw in (("scribbles", rasterize_polyline), ("polygons", rasterize_polygon), ("masks", None)):
        shapes = getattr(prompts, name)
        if shapes is not None:
            for i, s in enumerate(shapes):
                if draw is not None and s.shape[1] == 2:
                    check_inside(s, image_size, f"{name}[{i}]")
            out[name] = [draw(s, image_size) if draw is not None and s.shape[1] == 2 else np.asarray(s) for s in shapes]
    return out


def _padded(points: np.ndarray, labels: np.ndarray, keep: np.ndarray, n: int,
            size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An object's kept clicks, padded to ``n`` (objects share one ``(K, N, 2)`` array) with copies of its first
    kept click, or of its first click moved onto the crop's border when none is kept."""
    pts, lab = points[keep], labels[keep]
    if len(pts) < n:
        filler = (pts[:1], lab[:1]) if len(pts) else (points[:1].clip(0, np.array(size) - 0.5), labels[:1])
        pts = np.concatenate([pts, np.repeat(filler[0], n - len(pts), axis=0)])
        lab = np.concatenate([lab, np.repeat(filler[1], n - len(lab))])
    return pts, lab


def to_lowres(logits: torch.Tensor, frame: ImageFrame) -> torch.Tensor:
    """``(K, H, W)`` logits in ``frame``'s original image -> ``(K, H_pad/4, W_pad/4)`` in its model frame
    (area-resized to the resized size / 4, padding filled with a large negative logit): a ``memory`` prompt."""
    h, w = -(-frame.resized_size[0] // 4), -(-frame.resized_size[1] // 4)
    small = F.interpolate(logits[None].float(), size=(h, w), mode="area")[0]
    out = torch.full((logits.shape[0], frame.padded_size[0] // 4, frame.padded_size[1] // 4), _OUTSIDE)
    out[:, :h, :w] = small
    return out


class ZoomInPredictor:
    """A :class:`~seem.predictor.SeemPredictor` that decodes each interactive round on a crop around the object
    (see the module doc). Same ``set_image`` / ``predict(prompts, memory=...)`` calls and :class:`Prediction`
    values (original image frame); text-only and reference-only rounds go to the wrapped predictor unchanged.

    Cost: the whole image is encoded once by ``set_image``; a crop is encoded when the RoI first leaves the
    current one (``crops_encoded`` counts them), so a round costs a decode, plus one crop encoding when the
    object's region changes, plus one whole-image decode in a first round that zooms.
    """

    def __init__(self, predictor, config: ZoomInConfig | None = None) -> None:
        self.predictor = predictor
        self.config = config or ZoomInConfig()
        self.crops_encoded = 0
        self._crop: tuple[Box, object] | None = None  # the RoI and a predictor view on its encoding
        self._last: tuple[Prediction, torch.Tensor] | None = None  # last crop result and its (K, H, W) logits
        self._image: np.ndarray | None = None  # the image the two above belong to

    def set_image(self, image) -> None:
        """Encode ``image`` (see :meth:`SeemPredictor.set_image`) and forget the previous image's crop. Setting
        the image on the wrapped predictor directly works too: the crop follows the predictor's image."""
        self.predictor.set_image(image)

    @property
    def image(self) -> np.ndarray | None:
        return self.predictor.image

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def predict(self, prompts: Prompts | None = None, memory: Prediction | torch.Tensor | None = None,
                **fields) -> Prediction:
        """One round: ``prompts`` (a :class:`Prompts`, or its fields as keywords) and the previous round's result
        as ``memory``; see :meth:`SeemPredictor.predict`.

        Raises:
            PromptError: as :meth:`SeemPredictor.predict` (checked on the whole image before any crop).
            ImageError: no image set.
        """
        if prompts is None:
            prompts = Prompts(**fields)
        elif fields:
            raise PromptError(f"pass either a Prompts or prompt keywords, not both (got {sorted(fields)})")
        image = self.predictor.image
        if prompts.num_visual == 0 or image is None:
            return self.predictor.predict(prompts, memory=memory)
        if image is not self._image:
            self._crop, self._last, self._image = None, None, image
        prompts.to_regions(self.predictor.frame)  # every prompt check, against the whole image
        size = image.shape[:2]
        support = positive_support(prompts, size)
        previous = self._memory_logits(memory, prompts.num_visual + (prompts.reference.num_objects if prompts.reference else 0))
        coarse = None
        if previous is not None:
            support |= (previous > 0).any(dim=0).numpy()
        elif self.config.first_round:
            coarse = self.predictor.predict(prompts)
            support |= coarse.masks.any(axis=0)
        else:  # RITM's skip_clicks=1: the first round decodes the whole image
            return self.predictor.predict(prompts)
        roi = object_roi(support, size, self.config, min(size) / self.config.max_zoom) if support.any() else None
        if roi is None or box_iou(roi, (0, 0, size[1], size[0])) >= self.config.recompute_iou:
            result = coarse if coarse is not None else self.predictor.predict(prompts, memory=memory)
            return result
        roi, view = self._crop_view(roi, support)
        x0, y0, x1, y1 = roi
        crop_memory = None if previous is None else to_lowres(previous[:, y0:y1, x0:x1], view.frame)
        return self._uncrop(view.predict(crop_prompts(prompts, roi, size), memory=crop_memory), roi, view.frame)

    def _crop_view(self, roi: Box, support: np.ndarray):
        """The cached crop when it still fits (RoI IoU >= ``recompute_iou`` and every positive pixel inside),
        else the encoding of ``roi``'s crop."""
        if self._crop is not None:
            (x0, y0, x1, y1), _ = self._crop
            outside = support.copy()
            outside[y0:y1, x0:x1] = False
            if box_iou(roi, self._crop[0]) >= self.config.recompute_iou and not outside.any():
                return self._crop
        x0, y0, x1, y1 = roi
        crop = np.ascontiguousarray(self.predictor.image[y0:y1, x0:x1])
        frame, features = self.predictor.encode(crop)
        self._crop = (roi, self.predictor.with_image(frame, features, crop))
        self.crops_encoded += 1
        return self._crop

    def _memory_logits(self, memory, num_objects: int) -> torch.Tensor | None:
        """``(K, H, W)`` float32 original-frame logits of ``memory`` (``None`` without one), their signs agreeing
        with the masks of a :class:`Prediction` (a crop round's are kept at full resolution)."""
        if memory is None:
            return None
        if self._last is not None and memory is self._last[0]:
            return self._last[1]
        frame = self.predictor.frame
        assert frame is not None  # predict() checked that an image is set
        logits = memory_logits(memory, num_objects, (frame.padded_size[0] // 4, frame.padded_size[1] // 4))
        logits = frame.logits_to_original(logits.float(), mode="bicubic", antialias=False)
        masks = getattr(memory, "masks", None)
        return logits if masks is None or masks.shape != logits.shape else _agreeing(logits, masks)

    def _uncrop(self, pred: Prediction, roi: Box, crop_frame: ImageFrame) -> Prediction:
        """``pred`` of ``roi``'s crop (with ``crop_frame``) in the whole image's frame, kept with its
        original-frame logits for the next round's memory (the whole image's 1/4 logits would blur them)."""
        frame = self.predictor.frame
        assert frame is not None  # predict() ran on an image
        x0, y0, x1, y1 = roi
        k = len(pred.masks)
        full = torch.full((k, *frame.original_size), _OUTSIDE)
        inner = crop_frame.logits_to_original(pred.logits_lowres, mode="bicubic", antialias=False)
        full[:, y0:y1, x0:x1] = _agreeing(inner, pred.masks)
        full_masks = np.zeros((k, *frame.original_size), dtype=bool)
        full_masks[:, y0:y1, x0:x1] = pred.masks
        out = replace(pred, masks=full_masks, logits_lowres=to_lowres(full, frame))
        self._last = (out, full)
        return out


def _agreeing(logits: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """``logits`` with their signs made to agree with ``masks`` (the prompt-connected support may cut a mask
    where its logits are positive)."""
    inside = torch.from_numpy(np.ascontiguousarray(masks))
    return torch.where(inside, logits.clamp(min=1e-3), logits.clamp(max=-1e-3))
