"""Referring segmentation metrics, as the official ``GroundingEvaluator`` (SEEM-REFERENCE.md §4.1).

* **cIoU** = (sum of intersections) / (sum of unions) over the whole set, x 100: large objects weigh more;
* **mIoU** = mean of the per-sample IoUs, x 100;
* **precision@t** = percentage of samples with IoU >= t, for t in 0.5 .. 0.9 (the README's "AP50" is
  precision@0.5).

Predictions are already-thresholded masks (``Prediction.masks``: probability > 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRECISION_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


class ReferringAccumulator:
    """Running sums for :func:`referring_metrics` (add samples one at a time, no masks kept)."""

    def __init__(self) -> None:
        self.cum_i = 0
        self.cum_u = 0
        self.ious: list[float] = []

    def add(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """Add one ``(H, W)`` prediction / GT pair; returns its IoU (1.0 when both are empty)."""
        pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and GT {gt.shape} differ in shape")
        inter, union = int((pred & gt).sum()), int((pred | gt).sum())
        self.cum_i += inter
        self.cum_u += union
        value = 1.0 if union == 0 else inter / union
        self.ious.append(value)
        return value

    def summary(self) -> dict:
        n = len(self.ious)
        out: dict = {"num": n}
        if n == 0:
            return out | {"cIoU": float("nan"), "mIoU": float("nan")} | {f"precision@{t}": float("nan") for t in PRECISION_THRESHOLDS}
        ious = np.asarray(self.ious)
        out["cIoU"] = 100.0 * self.cum_i / self.cum_u if self.cum_u else 100.0
        out["mIoU"] = 100.0 * float(ious.mean())
        for t in PRECISION_THRESHOLDS:
            out[f"precision@{t}"] = 100.0 * float((ious >= t).mean())
        return out


def referring_metrics(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> dict:
    """``cIoU``, ``mIoU``, ``precision@0.5`` .. ``precision@0.9`` (percent) and ``num`` for paired
    ``(H, W)`` bool masks (each pair may have its own size)."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    acc = ReferringAccumulator()
    for p, g in zip(preds, gts):
        acc.add(p, g)
    return acc.summary()
