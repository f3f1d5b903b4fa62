"""Semantic segmentation metrics as detectron2's ``SemSegEvaluator`` (``detectron2/evaluation/sem_seg_evaluation.py``),
which SEEM's official evaluation uses.

A confusion matrix over ``C`` classes is accumulated over images (rows: predicted class, columns: GT class, as
detectron2); GT pixels equal to ``ignore_index`` are left out. From it, with ``tp`` the diagonal, ``pos_gt`` the
column sums and ``pos_pred`` the row sums:

    ACC_c = tp_c / pos_gt_c                         (classes with pos_gt > 0)
    IoU_c = tp_c / (pos_gt_c + pos_pred_c - tp_c)   (classes with pos_gt > 0, as detectron2's
                                                     ``iou_valid = acc_valid & (union > 0)``)
    mIoU, mACC = means over those classes; fwIoU = sum_c IoU_c * pos_gt_c / sum(pos_gt); pACC = sum(tp) / sum(pos_gt)

A class with no GT pixel is left out of the means even when it is predicted (its wrongly predicted pixels still
lower the IoU of the GT classes they cover). All summary values are in percent; ``nan`` when no GT pixel was seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _check_int_map(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) map, got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class SemanticAccumulator:
    """Confusion matrix over ``num_classes`` classes, accumulated image by image.

    Args:
        num_classes: ``C`` >= 1; valid class ids are ``0 .. C-1``.
        ignore_index: GT id whose pixels are not evaluated (default 255, as detectron2's ``ignore_label``).
        class_names: ``C`` names for :meth:`per_class` (default ``"0" .. "C-1"``).

    Raises:
        ValueError: ``num_classes < 1``, ``ignore_index`` inside ``[0, C)``, or ``len(class_names) != C``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        if 0 <= self.ignore_index < self.num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a valid class id (num_classes={num_classes})")
        names = [str(i) for i in range(self.num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes")
        self.class_names = names
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far."""
        self._conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.num_images = 0

    @property
    def confusion_matrix(self) -> np.ndarray:
        """``(C, C)`` int64 pixel counts, ``[pred, gt]`` (a copy); ignored GT pixels are not counted."""
        return self._conf.copy()

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image.

        Args:
            pred: ``(H, W)`` integer predicted class ids, each in ``[0, C)`` (also at ignored pixels).
            gt: ``(H, W)`` integer GT class ids in ``[0, C)`` or ``ignore_index``.

        Raises:
            ValueError: not 2-D, non-integer dtype, shapes differ (both shapes named), a predicted id outside
                ``[0, C)``, or a GT id outside ``[0, C)`` that is not ``ignore_index``.
        """
        pred = _check_int_map("pred", pred)
        gt = _check_int_map("gt", gt)
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        c = self.num_classes
        if pred.size and (pred.min() < 0 or pred.max() >= c):
            raise ValueError(f"predicted ids must lie in [0, {c}), got range [{pred.min()}, {pred.max()}]")
        valid = gt != self.ignore_index
        g = gt[valid]
        if g.size and (g.min() < 0 or g.max() >= c):
            bad = np.unique(g[(g < 0) | (g >= c)])[:5].tolist()
            raise ValueError(f"GT ids must lie in [0, {c}) or equal ignore_index {self.ignore_index}, got {bad}")
        self._conf += np.bincount(c * pred[valid] + g, minlength=c * c).reshape(c, c)
        self.num_images += 1

    def _stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        conf = self._conf.astype(np.float64)
        tp = np.diag(conf)
        pos_gt = conf.sum(axis=0)
        pos_pred = conf.sum(axis=1)
        valid = pos_gt > 0
        acc = np.full(self.num_classes, np.nan)
        iou = np.full(self.num_classes, np.nan)
        acc[valid] = tp[valid] / pos_gt[valid]
        iou[valid] = tp[valid] / (pos_gt + pos_pred - tp)[valid]  # union >= pos_gt > 0 here
        return tp, pos_gt, valid, acc, iou

    def summary(self) -> dict:
        """``mIoU``, ``fwIoU``, ``mACC``, ``pACC`` (percent floats, ``nan`` when no GT pixel was added) and
        ``num_images`` (int)."""
        tp, pos_gt, valid, acc, iou = self._stats()
        out = {"mIoU": float("nan"), "fwIoU": float("nan"), "mACC": float("nan"), "pACC": float("nan")}
        total = pos_gt.sum()
        if total > 0:
            out["mIoU"] = 100.0 * float(iou[valid].mean())
            out["fwIoU"] = 100.0 * float(np.sum(iou[valid] * pos_gt[valid] / total))
            out["mACC"] = 100.0 * float(acc[valid].mean())
            out["pACC"] = 100.0 * float(tp.sum() / total)
        out["num_images"] = self.num_images
        return out

    def per_class(self) -> list[dict]:
        """One dict per class, in class order: ``name``, ``IoU`` and ``ACC`` (percent; ``nan`` for a class
        with no GT pixel)."""
        _, _, _, acc, iou = self._stats()
        return [{"name": n, "IoU": 100.0 * float(i), "ACC": 100.0 * float(a)}
                for n, i, a in zip(self.class_names, iou, acc)]


def semantic_metrics(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], num_classes: int,
                     ignore_index: int = 255) -> dict:
    """:meth:`SemanticAccumulator.summary` over paired ``(H, W)`` prediction / GT maps (one pair per image).

    Raises:
        ValueError: as :meth:`SemanticAccumulator.add`, or when ``preds`` and ``gts`` differ in length.
    """
    acc = SemanticAccumulator(num_classes, ignore_index)
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} GT maps")
    for p, g in zip(preds, gts):
        acc.add(p, g)
    return acc.summary()
