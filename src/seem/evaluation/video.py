"""Video object segmentation metrics: the DAVIS 2017 protocol (region J, boundary F, mean / recall / decay).

Reference: J. Pont-Tuset, F. Perazzi, S. Caelles, P. Arbeláez, A. Sorkine-Hornung, L. Van Gool, "The 2017
DAVIS Challenge on Video Object Segmentation", arXiv:1704.00675, and its official toolkit
``davis2017-evaluation`` (``davis2017/metrics.py``: ``db_eval_iou``, ``db_eval_boundary`` / ``f_measure`` /
``_seg2bmap``; ``davis2017/utils.py``: ``db_statistics``; ``davis2017/evaluation.py``). Reimplemented here
with the same definitions:

* **J** (region similarity, :func:`region_similarity`): intersection over union of the predicted and the
  ground-truth object mask, void pixels left out of both; 1 when the union is empty (both masks empty).
* **F** (boundary F-measure, :func:`boundary_f_measure`): each mask's boundary map (:func:`boundary_map`,
  1 pixel wide, the image border is not a boundary) is matched against the other's dilated by a disk of radius
  ``bound_pix = ceil(bound_th * image diagonal)`` (``bound_th = 0.008``: 8 pixels at 480x854; a ``bound_th >= 1``
  is a radius in pixels); precision = matched predicted boundary pixels / predicted boundary pixels, recall =
  matched ground-truth boundary pixels / ground-truth boundary pixels, F = their harmonic mean. No boundary in
  either -> F = 1; a boundary in only one of them -> F = 0. As in the toolkit, void pixels are cleared from
  both masks before the boundaries are taken (they are not removed from the boundary maps).
* **statistics** per object over its evaluated frames (:func:`frame_statistics`): mean, recall (fraction of
  frames with a value > 0.5) and decay (mean of the first quarter of the frames minus the mean of the last
  quarter; 4 bins whose edges are the frames ``round(linspace(0, n - 1, 5))``, each bin including both edges,
  as ``db_statistics``). The data set numbers (:class:`JFAccumulator`) are means over objects; ``J&F-Mean`` is
  the mean of ``J-Mean`` and ``F-Mean``.

Protocol (semi-supervised): the first frame's mask of each object is given; davis2017-evaluation scores the
frames ``1 .. N-2`` of an ``N``-frame sequence, leaving out the first (annotated) frame **and the last one**;
:class:`JFAccumulator` does the same by default (``exclude_first_last=True``).

Units: :func:`region_similarity`, :func:`boundary_f_measure` and :func:`frame_statistics` return fractions
in [0, 1] (decay in [-1, 1]); :meth:`JFAccumulator.summary` reports **percent** (decay in percentage points),
as the DAVIS tables print them (the toolkit's CSV files hold the same numbers as fractions).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

DEFAULT_BOUND_TH = 0.008  # davis2017-evaluation: boundary tolerance, fraction of the image diagonal
RECALL_THRESHOLD = 0.5  # a frame "recalls" the object when J (or F) > 0.5
DECAY_BINS = 4

METRIC_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def _masks(pred, gt, void) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"pred and gt must be (H, W) masks of the same shape, got {pred.shape} and {gt.shape}")
    if void is not None:
        void = np.asarray(void)
        if void.shape != gt.shape:
            raise ValueError(f"void must have the masks' shape {gt.shape}, got {void.shape}")
        void = void.astype(bool)
    return pred.astype(bool), gt.astype(bool), void


def region_similarity(pred, gt, void=None) -> float:
    """J: IoU of two masks without the void pixels.

    Args:
        pred, gt: ``(H, W)`` masks (bool, or numbers: nonzero = object).
        void: ``(H, W)`` bool or ``None``: pixels counted neither in the intersection nor in the union.

    Returns:
        J in [0, 1]; 1.0 when the union (outside void) is empty.

    Raises:
        ValueError: shapes differ or are not 2-D.
    """
    pred, gt, void = _masks(pred, gt, void)
    keep = ~void if void is not None else True
    union = int(np.count_nonzero((pred | gt) & keep))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & gt & keep)) / union


def boundary_map(mask) -> np.ndarray:
    """``(H, W)`` bool boundary of a ``(H, W)`` mask, as the toolkit's ``_seg2bmap`` (D. Martin, BSDS).

    A pixel is a boundary pixel when it differs from its right, lower or lower-right neighbour; outside the
    image the mask is taken to repeat its edge pixel, so the image border itself is never a boundary (a mask
    covering the whole image has none). The boundary thus lies on the object side of its top / left edges and
    on the background side of its bottom / right edges (offset half a pixel towards the origin).
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    p = np.pad(m, ((0, 1), (0, 1)), mode="edge")
    return (m != p[:-1, 1:]) | (m != p[1:, :-1]) | (m != p[1:, 1:])


def disk(radius: int) -> np.ndarray:
    """``(2r+1, 2r+1)`` bool disk: offsets ``(dy, dx)`` with ``dy² + dx² <= r²`` (``skimage.morphology.disk``)."""
    r = int(radius)
    if r < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return y * y + x * x <= r * r


def dilate_disk(mask, radius: int) -> np.ndarray:
    """Binary dilation of a ``(H, W)`` mask by :func:`disk` ``(radius)``; pixels outside the image are empty.

    Pure NumPy, one pass per disk row: a horizontal dilation of half-width ``floor(sqrt(r² - dy²))`` (running
    sums) shifted by ``dy``. Same result as ``scipy.ndimage.binary_dilation(mask, disk(radius))``.
    """
    m = np.asarray(mask).astype(bool)
    r = int(radius)
    if r < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if r == 0 or not m.any():
        return m.copy()
    h, w = m.shape
    c = np.zeros((h, w + 1), np.int32)
    np.cumsum(m, axis=1, out=c[:, 1:])
    out = np.zeros_like(m)
    cols = np.arange(w)
    for dy in range(-r, r + 1):
        half = math.isqrt(r * r - dy * dy)
        lo, hi = np.clip(cols - half, 0, w), np.clip(cols + half + 1, 0, w)
        row = (c[:, hi] - c[:, lo]) > 0  # any pixel of the row within [x - half, x + half]
        if dy >= 0:  # out[y] |= row[y - dy]
            out[dy:] |= row[:h - dy] if dy else row
        else:
            out[:dy] |= row[-dy:]
    return out


def bound_pixels(shape: Sequence[int], bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Boundary tolerance radius in pixels: ``int(bound_th)`` when >= 1, else ``ceil(bound_th * hypot(H, W))``."""
    if not bound_th > 0:
        raise ValueError(f"bound_th must be > 0, got {bound_th}")
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(int(shape[0]), int(shape[1])))


def boundary_f_measure(pred, gt, void=None, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """F: boundary F-measure of two masks with a tolerance of :func:`bound_pixels` ``(shape, bound_th)``.

    Args:
        pred, gt: ``(H, W)`` masks (bool, or numbers: nonzero = object).
        void: ``(H, W)`` bool or ``None``: pixels cleared from both masks before their boundaries are taken.
        bound_th: tolerance, a fraction of the image diagonal (< 1) or pixels (>= 1).

    Returns:
        F in [0, 1]: 1.0 when neither mask has a boundary pixel, 0.0 when only one has.

    Raises:
        ValueError: shapes differ or are not 2-D, ``bound_th <= 0``.
    """
    pred, gt, void = _masks(pred, gt, void)
    radius = bound_pixels(gt.shape, bound_th)
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = int(np.count_nonzero(pb & dilate_disk(gb, radius))) / n_pred
    recall = int(np.count_nonzero(gb & dilate_disk(pb, radius))) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def decay_bins(n: int, bins: int = DECAY_BINS) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` frame positions of the decay bins of ``n`` values (``db_statistics``):
    edges ``round(linspace(0, n - 1, bins + 1))`` (halves rounded up), consecutive bins sharing an edge."""
    if n < 1:
        return []
    edges = [math.floor(k * (n - 1) / bins + 0.5 + 1e-9) for k in range(bins + 1)]
    return [(edges[k], edges[k + 1]) for k in range(bins)]


def frame_statistics(values) -> tuple[float, float, float]:
    """``(mean, recall, decay)`` of one object's per-frame J (or F) values, fractions (``db_statistics``).

    ``mean`` and ``recall`` (fraction of values > 0.5) ignore NaN values; ``decay`` = mean of the first
    :func:`decay_bins` bin minus the mean of the last one. All NaN for an empty sequence.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = v[~np.isnan(v)]
    if finite.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(finite.mean())
    recall = float(np.mean(finite > RECALL_THRESHOLD))
    bins = decay_bins(len(v))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bin -> NaN decay
        first = np.nanmean(v[bins[0][0]:bins[0][1] + 1])
        last = np.nanmean(v[bins[-1][0]:bins[-1][1] + 1])
    return mean, recall, float(first - last)


class JFAccumulator:
    """Per-frame J and F of every (sequence, object) pair, summarised as the DAVIS 2017 tables.

    Args:
        exclude_first_last: leave out the first and the last frame of every sequence, as davis2017-evaluation
            scores frames ``1 .. N-2``: frames ``0`` and ``N - 1`` after :meth:`set_length`, else the smallest and
            largest index added for that sequence (over all its objects); ``False`` scores every frame added.
        bound_th: boundary tolerance of F (:func:`boundary_f_measure`).

    Usage: ``set_length()`` per sequence (optional), ``add()`` once per object and frame (frame 0 may be
    added: it is dropped at summary time), then ``summary()``.
    """

    def __init__(self, exclude_first_last: bool = True, bound_th: float = DEFAULT_BOUND_TH) -> None:
        self.exclude_first_last = bool(exclude_first_last)
        self.bound_th = float(bound_th)
        bound_pixels((1, 1), self.bound_th)  # validate now
        self._values: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
        self._lengths: dict[str, int] = {}

    def set_length(self, sequence, num_frames: int) -> None:
        """Declare that ``sequence`` has ``num_frames`` frames: its excluded frames are then ``0`` and
        ``num_frames - 1``, whatever frames are added (else the smallest and largest added index)."""
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self._lengths[str(sequence)] = int(num_frames)

    def discard(self, sequence) -> None:
        """Forget every value (and the length) of ``sequence``, e.g. after the segmenter failed on it."""
        seq = str(sequence)
        self._lengths.pop(seq, None)
        for key in [k for k in self._values if k[0] == seq]:
            del self._values[key]

    def add(self, sequence, object_id, frame_index: int, pred, gt, void=None) -> tuple[float, float]:
        """Score one object in one frame; returns ``(J, F)`` as fractions.

        Args:
            sequence, object_id: names of the sequence and of the object (stored as strings).
            frame_index: position of the frame in its sequence (int >= 0).
            pred, gt, void: ``(H, W)`` masks, see :func:`region_similarity`.

        Raises:
            ValueError: a negative frame index (or one past a :meth:`set_length`), a frame added twice for the
                same object, bad shapes.
        """
        k, key = int(frame_index), (str(sequence), str(object_id))
        if not 0 <= k < self._lengths.get(key[0], k + 1):
            raise ValueError(f"frame_index {frame_index} is outside 0..{self._lengths.get(key[0], 0) - 1} "
                             f"(the frames of {sequence!r})" if k >= 0 else f"frame_index must be >= 0, got {frame_index}")
        if k in self._values.get(key, {}):
            raise ValueError(f"frame {frame_index} of object {object_id!r} in {sequence!r} was already added")
        j = region_similarity(pred, gt, void)
        f = boundary_f_measure(pred, gt, void, self.bound_th)
        self._values.setdefault(key, {})[k] = (j, f)
        return j, f

    def __len__(self) -> int:
        """Number of (object, frame) pairs added."""
        return sum(len(v) for v in self._values.values())

    def _evaluated(self) -> dict[tuple[str, str], list[tuple[int, float, float]]]:
        """Per object, its ``(frame, J, F)`` in frame order without the excluded frames."""
        span = {seq: (0, n - 1) for seq, n in self._lengths.items()}
        for (seq, _), frames in self._values.items():
            if seq not in self._lengths:
                lo, hi = span.get(seq, (min(frames), max(frames)))
                span[seq] = (min(lo, min(frames)), max(hi, max(frames)))
        out = {}
        for (seq, obj), frames in self._values.items():
            lo, hi = span[seq]
            out[(seq, obj)] = [(k, *frames[k]) for k in sorted(frames)
                               if not (self.exclude_first_last and k in (lo, hi))]
        return out

    def per_object(self) -> list[dict]:
        """One row per object: ``sequence``, ``object_id``, ``num_frames`` (evaluated) and the
        :data:`METRIC_KEYS` numbers in percent (NaN when no frame is left to evaluate)."""
        rows = []
        for (seq, obj), items in self._evaluated().items():
            jm, jr, jd = frame_statistics([x[1] for x in items])
            fm, fr, fd = frame_statistics([x[2] for x in items])
            rows.append({"sequence": seq, "object_id": obj, "num_frames": len(items),
                         "J&F-Mean": 50.0 * (jm + fm), "J-Mean": 100.0 * jm, "J-Recall": 100.0 * jr,
                         "J-Decay": 100.0 * jd, "F-Mean": 100.0 * fm, "F-Recall": 100.0 * fr, "F-Decay": 100.0 * fd})
        return rows

    def summary(self) -> dict:
        """The data set numbers: means over objects of each object's statistics.

        Returns:
            ``{"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"`` (percent; decay in
            percentage points; NaN without an evaluated object), ``"num_sequences", "num_objects"`` (objects
            with at least one evaluated frame), ``"num_frames"`` (evaluated object-frames),
            ``"objects_without_frames"`` (``"seq/obj"`` names left out), ``"exclude_first_last", "bound_th",
            "units", "per_object"`` (:meth:`per_object` rows)}``.
        """
        rows = self.per_object()
        scored = [r for r in rows if r["num_frames"] > 0]
        out: dict = {}
        for key in METRIC_KEYS:  # J&F-Mean: mean of the rows' (J + F) / 2 = (J-Mean + F-Mean) / 2 (davis2017)
            vals = [r[key] for r in scored if not math.isnan(r[key])]
            out[key] = float(np.mean(vals)) if vals else float("nan")
        return out | {
            "num_sequences": len({r["sequence"] for r in scored}), "num_objects": len(scored),
            "num_frames": sum(r["num_frames"] for r in scored),
            "objects_without_frames": [f"{r['sequence']}/{r['object_id']}" for r in rows if r["num_frames"] == 0],
            "exclude_first_last": self.exclude_first_last, "bound_th": self.bound_th,
            "units": "percent (decay: percentage points, first quarter minus last quarter of the frames)",
            "per_object": rows}
