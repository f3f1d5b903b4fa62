"""COCO instance-segmentation mask AP through the COCO API (``pycocotools`` ``COCOeval(..., "segm")``), as
detectron2's ``COCOEvaluator`` reports it for SEEM's instance results.

Masks are run-length encoded (``pycocotools.mask.encode``) as soon as they are added, so no dense mask is kept.
:meth:`MaskAPAccumulator.summary` builds an in-memory COCO GT object (category id = class index + 1,
annotation ids from 1), loads the predictions with ``COCO.loadRes`` and runs ``evaluate`` / ``accumulate`` /
``summarize`` with the default parameters: IoU thresholds 0.50:0.05:0.95, 101 recall points, at most 100
detections per image (the highest scored), areas small < 32^2 <= medium < 96^2 <= large pixels. A detection
matched to a crowd GT region (``iscrowd``) is ignored rather than counted as a false positive.

``pycocotools`` is an optional dependency (``pip install 'seem-torch[io]'``), imported only when needed.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np

_INSTALL_HINT = "mask AP needs pycocotools: pip install 'seem-torch[io]'"
_STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _mask_util():
    try:
        import pycocotools.mask as mask_util
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    return mask_util


def _coco_api():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    return COCO, COCOeval


def _encode(masks: np.ndarray) -> list[dict]:
    """``(N, H, W)`` bool -> N RLE dicts with ``counts`` as ``str`` (JSON-compatible)."""
    if masks.shape[0] == 0:
        return []
    rles = _mask_util().encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def _check_masks(name: str, masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W), got shape {masks.shape}")
    if masks.dtype != bool:
        if masks.dtype.kind not in "iuf" or not np.isin(masks, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got dtype {masks.dtype}")
        masks = masks.astype(bool)
    return masks


class MaskAPAccumulator:
    """Per-image GT and predicted instance masks, kept as RLE, for COCO mask AP.

    Args:
        class_names: ``K`` class names; class ``k`` is COCO category ``k + 1``.

    Raises:
        ValueError: no class names.
    """

    def __init__(self, class_names: Sequence[str]):
        self.class_names = [str(n) for n in class_names]
        if not self.class_names:
            raise ValueError("class_names is empty")
        self._images: list[dict] = []
        self._image_ids: set[int] = set()
        self._gts: list[dict] = []
        self._preds: list[dict] = []

    @property
    def num_images(self) -> int:
        return len(self._images)

    def add(self, image_id: int, gt_masks: np.ndarray, gt_classes: Sequence[int], pred_masks: np.ndarray,
            pred_classes: Sequence[int], pred_scores: Sequence[float],
            gt_iscrowd: Sequence[bool] | None = None) -> None:
        """Add one image.

        Args:
            image_id: integer id, unique over the accumulator.
            gt_masks: ``(N, H, W)`` bool GT instance masks (``N`` may be 0).
            gt_classes: ``N`` class indices in ``[0, K)``.
            pred_masks: ``(M, H, W)`` bool predicted masks, same ``H, W`` (``M`` may be 0).
            pred_classes: ``M`` class indices in ``[0, K)``.
            pred_scores: ``M`` finite confidence scores (higher is more confident).
            gt_iscrowd: ``N`` flags marking crowd GT regions (default all ``False``).

        Raises:
            ValueError: a duplicate ``image_id``; masks not 3-D or not boolean; differing ``H, W``; a class /
                score / crowd list whose length differs from its masks; a class index outside ``[0, K)``; a
                non-finite score.
            ImportError: pycocotools is missing.
        """
        image_id = int(image_id)
        if image_id in self._image_ids:
            raise ValueError(f"image_id {image_id} was already added")
        gt_masks = _check_masks("gt_masks", gt_masks)
        pred_masks = _check_masks("pred_masks", pred_masks)
        if gt_masks.shape[1:] != pred_masks.shape[1:]:
            raise ValueError(f"gt_masks are {gt_masks.shape[1:]} pixels but pred_masks {pred_masks.shape[1:]}")
        n, m = gt_masks.shape[0], pred_masks.shape[0]
        k = len(self.class_names)
        gt_cls = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
        pred_cls = np.asarray(pred_classes, dtype=np.int64).reshape(-1)
        scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        crowd = np.zeros(n, bool) if gt_iscrowd is None else np.asarray(gt_iscrowd, dtype=bool).reshape(-1)
        for what, arr, want in (("gt_classes", gt_cls, n), ("gt_iscrowd", crowd, n),
                                ("pred_classes", pred_cls, m), ("pred_scores", scores, m)):
            if arr.size != want:
                raise ValueError(f"{what} has {arr.size} entries for {want} masks")
        for what, arr in (("gt_classes", gt_cls), ("pred_classes", pred_cls)):
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                raise ValueError(f"{what} must lie in [0, {k}), got range [{arr.min()}, {arr.max()}]")
        if not np.isfinite(scores).all():
            raise ValueError("pred_scores must be finite")
        mask_util = _mask_util()
        h, w = gt_masks.shape[1:]
        for rle, c, iscrowd in zip(_encode(gt_masks), gt_cls, crowd):
            self._gts.append({"id": len(self._gts) + 1, "image_id": image_id, "category_id": int(c) + 1,
                              "segmentation": rle, "area": float(mask_util.area(rle)),
                              "bbox": [float(v) for v in mask_util.toBbox(rle)], "iscrowd": int(iscrowd)})
        for rle, c, s in zip(_encode(pred_masks), pred_cls, scores):
            self._preds.append({"image_id": image_id, "category_id": int(c) + 1, "segmentation": rle,
                                "score": float(s)})
        self._images.append({"id": image_id, "height": int(h), "width": int(w)})
        self._image_ids.add(image_id)

    def _nan_summary(self) -> dict:
        out: dict = {key: float("nan") for key in _STAT_KEYS}
        out["per_class"] = [{"name": name, "AP": float("nan")} for name in self.class_names]
        return out

    def summary(self) -> dict:
        """Run COCOeval (``segm``) on everything added.

        Returns:
            ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` (percent, COCOeval's
            ``stats[0:6]`` x 100; ``nan`` where COCO reports -1, i.e. no GT in that area range), ``num_images``,
            ``num_gt``, ``num_pred`` (ints) and ``per_class``: one ``{"name", "AP"}`` dict per class (percent,
            IoU 0.50:0.95, all areas, 100 detections; ``nan`` for a class without GT). With GT but no
            prediction every AP is 0; with no GT every AP is ``nan``.

        Raises:
            ImportError: pycocotools is missing.
        """
        COCO, COCOeval = _coco_api()
        counts = {"num_images": self.num_images, "num_gt": len(self._gts), "num_pred": len(self._preds)}
        if not self._images or not self._gts:
            return {**self._nan_summary(), **counts}
        categories = [{"id": i + 1, "name": name} for i, name in enumerate(self.class_names)]
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = {"images": list(self._images), "annotations": list(self._gts), "categories": categories}
            gt.createIndex()
            if self._preds:
                # loadRes fills in area, bbox, id and iscrowd; it fails on an empty list, hence the branch.
                dt = gt.loadRes([dict(p) for p in self._preds])
            else:
                dt = COCO()
                dt.dataset = {"images": list(self._images), "annotations": [], "categories": categories}
                dt.createIndex()
            ev = COCOeval(gt, dt, "segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out: dict = {key: (100.0 * float(v) if v > -1 else float("nan")) for key, v in zip(_STAT_KEYS, ev.stats)}
        precision = ev.eval["precision"]  # (T, R, K, A, M); categories in sorted id order = class order
        per_class = []
        for k, name in enumerate(self.class_names):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            per_class.append({"name": name, "AP": 100.0 * float(p.mean()) if p.size else math.nan})
        out["per_class"] = per_class
        return {**out, **counts}


def mask_ap(samples: Sequence[dict], class_names: Sequence[str]) -> dict:
    """:meth:`MaskAPAccumulator.summary` over ``samples``, each a dict of :meth:`MaskAPAccumulator.add`'s
    keyword arguments (``image_id``, ``gt_masks``, ``gt_classes``, ``pred_masks``, ``pred_classes``,
    ``pred_scores`` and optionally ``gt_iscrowd``).

    Raises:
        ValueError, ImportError: as :meth:`MaskAPAccumulator.add`.
    """
    acc = MaskAPAccumulator(class_names)
    for sample in samples:
        acc.add(**sample)
    return acc.summary()
