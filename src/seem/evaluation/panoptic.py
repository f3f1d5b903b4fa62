"""COCO panoptic quality (Kirillov et al. 2019; the ``panopticapi`` ``pq_compute`` rules).

Per image, a predicted segment and a GT segment of the **same class** match when their IoU > 0.5, with the
IoU computed over non-void pixels: ``union = |pred| + |gt| - |pred & gt| - |pred & void|`` (a match is then
unique). Matches are true positives (their IoU is summed), unmatched GT segments false negatives, unmatched
predicted segments false positives, except a prediction lying more than half on void pixels, which is not
counted. Per class, over the whole set:

    PQ = sum IoU(TP) / (TP + FP/2 + FN/2),  SQ = sum IoU(TP) / TP,  RQ = TP / (TP + FP/2 + FN/2) = PQ / SQ

and PQ / SQ / RQ are averaged over the classes that occur (TP + FP + FN > 0), for all classes, things and
stuff separately (reported in percent).

Void pixels: those of ``void`` and those covered by no GT mask (COCO's unlabeled id 0). GT masks must be
disjoint; a GT pixel inside ``void`` counts as void.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class PQStats:
    """Per-class sums over one or more images: ``iou`` (sum of matched IoUs), ``tp``, ``fp``, ``fn``, each
    ``(C,)``."""

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> PQStats:
        return cls(np.zeros(num_classes), np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64),
                   np.zeros(num_classes, np.int64))

    def merge(self, other: PQStats) -> None:
        """Add ``other``'s sums to these (in place)."""
        self.iou = self.iou + other.iou
        self.tp = self.tp + other.tp
        self.fp = self.fp + other.fp
        self.fn = self.fn + other.fn

    def summary(self, is_thing: Sequence[bool]) -> dict:
        """``PQ``, ``SQ``, ``RQ`` (percent) and ``num_classes`` for all classes, then ``_th`` / ``_st``
        suffixed keys for things / stuff; ``nan`` where no class of the group occurs."""
        things = np.asarray(is_thing, dtype=bool)
        if things.shape != self.tp.shape:
            raise ValueError(f"is_thing has {things.size} classes, the statistics have {self.tp.size}")
        out: dict = {}
        for suffix, sel in (("", np.ones_like(things)), ("_th", things), ("_st", ~things)):
            present = sel & ((self.tp + self.fp + self.fn) > 0)
            n = int(present.sum())
            out[f"num_classes{suffix}"] = n
            if n == 0:
                out.update({f"PQ{suffix}": float("nan"), f"SQ{suffix}": float("nan"), f"RQ{suffix}": float("nan")})
                continue
            iou, tp, fp, fn = self.iou[present], self.tp[present], self.fp[present], self.fn[present]
            denom = tp + 0.5 * fp + 0.5 * fn
            sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
            out[f"PQ{suffix}"] = 100.0 * float(np.mean(iou / denom))
            out[f"SQ{suffix}"] = 100.0 * float(np.mean(sq))
            out[f"RQ{suffix}"] = 100.0 * float(np.mean(tp / denom))
        return out


def _segment_pairs(pred_segments) -> list[tuple[int, int]]:
    """``[(id, label_id)]`` from tuples, dicts (``id`` / ``label_id`` or ``category_id``) or
    :class:`seem.structures.Segment` objects."""
    out = []
    for s in pred_segments:
        if isinstance(s, dict):
            sid, label = int(s["id"]), s.get("label_id", s.get("category_id"))
            if label is None:
                raise TypeError(f"segment {s!r} has no label ('label_id' or 'category_id')")
            out.append((sid, int(label)))
        elif hasattr(s, "id") and hasattr(s, "label_id"):
            out.append((int(s.id), int(s.label_id)))
        else:
            sid, label = s
            out.append((int(sid), int(label)))
    return out


def pq(pred_segmentation: np.ndarray, pred_segments, gt_masks: np.ndarray, gt_labels: Sequence[int],
       is_thing: Sequence[bool], void: np.ndarray | None = None) -> PQStats:
    """Per-class TP / FP / FN / IoU sums of one image.

    Args:
        pred_segmentation: ``(H, W)`` int segment ids; 0 = no prediction (``PanopticResult.segmentation``).
        pred_segments: ``[(id, label_id)]`` (or ``PanopticResult.segments``); every non-zero id of
            ``pred_segmentation`` must be listed; ids must be unique.
        gt_masks: ``(N, H, W)`` bool, disjoint.  gt_labels: ``(N,)`` class indices.
        is_thing: one flag per class (its length is the number of classes).
        void: ``(H, W)`` bool pixels that do not count.

    Raises:
        ValueError: shape mismatches, overlapping GT masks, labels out of range, unlisted or repeated ids.
    """
    seg = np.asarray(pred_segmentation)
    gt_masks = np.asarray(gt_masks).astype(bool)
    labels_gt = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    num_classes = len(is_thing)
    if seg.ndim != 2:
        raise ValueError(f"pred_segmentation must be (H, W), got {seg.shape}")
    if gt_masks.ndim != 3 or gt_masks.shape[1:] != seg.shape:
        raise ValueError(f"gt_masks must be (N, {seg.shape[0]}, {seg.shape[1]}), got {gt_masks.shape}")
    if labels_gt.size != gt_masks.shape[0]:
        raise ValueError(f"{labels_gt.size} GT labels for {gt_masks.shape[0]} GT masks")
    pairs = _segment_pairs(pred_segments)
    ids = [i for i, _ in pairs]
    labels_pred = np.asarray([lab for _, lab in pairs], dtype=np.int64)
    if len(set(ids)) != len(ids) or 0 in ids:
        raise ValueError(f"predicted segment ids must be unique and non-zero, got {ids}")
    for what, lab in (("GT", labels_gt), ("predicted", labels_pred)):
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"{what} labels must be in [0, {num_classes}), got {sorted(set(lab.tolist()))}")

    # pixel -> GT index (-1: void) and predicted index (-1: no prediction)
    cover = gt_masks.sum(axis=0)
    if cover.size and cover.max() > 1:
        raise ValueError("GT masks overlap: panoptic GT must assign each pixel to at most one segment")
    gt_map = np.where(cover > 0, np.argmax(gt_masks, axis=0), -1) if len(gt_masks) else np.full(seg.shape, -1)
    if void is not None:
        void = np.asarray(void).astype(bool)
        if void.shape != seg.shape:
            raise ValueError(f"void has shape {void.shape}, the image is {seg.shape}")
        gt_map = np.where(void, -1, gt_map)
    lut = {sid: k for k, sid in enumerate(ids)}
    present = np.unique(seg)
    unknown = [int(v) for v in present if v != 0 and int(v) not in lut]
    if unknown:
        raise ValueError(f"segment ids {unknown} appear in pred_segmentation but not in pred_segments")
    pred_map = np.full(seg.shape, -1, dtype=np.int64)
    for v in present:
        if v != 0:
            pred_map[seg == v] = lut[int(v)]

    n, p = gt_masks.shape[0], len(ids)
    table = np.bincount(((gt_map + 1) * (p + 1) + pred_map + 1).ravel(), minlength=(n + 1) * (p + 1)).reshape(n + 1, p + 1)
    gt_area = table[1:].sum(axis=1)  # non-void GT pixels of each GT segment
    pred_area = table[:, 1:].sum(axis=0)
    pred_void = table[0, 1:]
    inter = table[1:, 1:]

    stats = PQStats.zeros(num_classes)
    gt_matched = np.zeros(n, dtype=bool)
    pred_matched = np.zeros(p, dtype=bool)
    for g, q in zip(*np.nonzero(inter)):
        if labels_gt[g] != labels_pred[q]:
            continue
        union = pred_area[q] + gt_area[g] - inter[g, q] - pred_void[q]
        value = inter[g, q] / union
        if value > 0.5:
            gt_matched[g] = pred_matched[q] = True
            stats.tp[labels_gt[g]] += 1
            stats.iou[labels_gt[g]] += value
    for g in np.flatnonzero(~gt_matched & (gt_area > 0)):  # a GT segment entirely on void does not count
        stats.fn[labels_gt[g]] += 1
    for q in np.flatnonzero(~pred_matched):
        if pred_area[q] and pred_void[q] / pred_area[q] > 0.5:
            continue
        stats.fp[labels_pred[q]] += 1
    return stats


class PQAccumulator:
    """Sums :func:`pq` over images; :meth:`summary` gives PQ / SQ / RQ for all, things and stuff.

    Args:
        is_thing: one flag per class of the label space.
        class_names: optional names for :meth:`per_class`.
    """

    def __init__(self, is_thing: Sequence[bool], class_names: Sequence[str] | None = None) -> None:
        self.is_thing = [bool(t) for t in is_thing]
        if class_names is not None and len(class_names) != len(self.is_thing):
            raise ValueError(f"{len(class_names)} class names for {len(self.is_thing)} classes")
        self.class_names = list(class_names) if class_names is not None else None
        self.stats = PQStats.zeros(len(self.is_thing))
        self.num_images = 0

    def add(self, pred_segmentation: np.ndarray, pred_segments, gt_masks: np.ndarray, gt_labels: Sequence[int],
            void: np.ndarray | None = None) -> PQStats:
        """Add one image (arguments as :func:`pq`); returns that image's statistics."""
        image = pq(pred_segmentation, pred_segments, gt_masks, gt_labels, self.is_thing, void)
        self.stats.merge(image)
        self.num_images += 1
        return image

    def summary(self) -> dict:
        return {"num_images": self.num_images} | self.stats.summary(self.is_thing)

    def per_class(self) -> dict:
        """``{name or index: {PQ, SQ, RQ (percent), tp, fp, fn}}`` for the classes that occur."""
        out = {}
        s = self.stats
        for c in np.flatnonzero((s.tp + s.fp + s.fn) > 0):
            denom = s.tp[c] + 0.5 * s.fp[c] + 0.5 * s.fn[c]
            key = self.class_names[c] if self.class_names else int(c)
            out[key] = {"PQ": 100.0 * s.iou[c] / denom, "SQ": 100.0 * s.iou[c] / s.tp[c] if s.tp[c] else 0.0,
                        "RQ": 100.0 * s.tp[c] / denom, "tp": int(s.tp[c]), "fp": int(s.fp[c]), "fn": int(s.fn[c])}
        return out
