"""DAVIS 2017 video metrics (seem.evaluation.video): J, F, boundary maps, dilation, statistics, accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seem.evaluation.video import (
    JFAccumulator,
    bound_pixels,
    boundary_f_measure,
    boundary_map,
    decay_bins,
    dilate_disk,
    disk,
    frame_statistics,
    region_similarity,
)


def _square(top=5, left=5, size=10, hw=(20, 20)) -> np.ndarray:
    m = np.zeros(hw, bool)
    m[top:top + size, left:left + size] = True
    return m


def _outline(top, left, bottom, right, hw=(20, 20)) -> np.ndarray:
    """The 1-pixel outline of the rectangle rows top..bottom, cols left..right (inclusive)."""
    m = np.zeros(hw, bool)
    m[top, left:right + 1] = m[bottom, left:right + 1] = True
    m[top:bottom + 1, left] = m[top:bottom + 1, right] = True
    return m


# ------------------------------------------------------------------------------------------ J
def test_region_similarity_shifted_square():
    gt = _square()                 # rows 5..14, cols 5..14: 100 px
    pred = _square(left=6)         # cols 6..15: intersection 10x9 = 90, union 10x11 = 110
    assert region_similarity(pred, gt) == pytest.approx(90 / 110)
    assert region_similarity(_square(left=7), gt) == pytest.approx(80 / 120)  # shift 2: 10x8 / 10x12
    assert region_similarity(gt, gt) == 1.0
    assert region_similarity(pred.astype(np.uint8) * 255, gt.astype(int)) == pytest.approx(90 / 110)  # nonzero = object


def test_region_similarity_empty_cases_and_void():
    empty = np.zeros((20, 20), bool)
    assert region_similarity(empty, empty) == 1.0          # empty union -> 1
    assert region_similarity(empty, _square()) == 0.0
    assert region_similarity(_square(), empty) == 0.0
    # void on the two columns where the masks differ (gt-only col 5, pred-only col 15): J = 90 / 90
    void = np.zeros((20, 20), bool)
    void[:, [5, 15]] = True
    assert region_similarity(_square(left=6), _square(), void) == 1.0
    # void only on the gt-only column: 90 / (110 - 10)
    void[:, 15] = False
    assert region_similarity(_square(left=6), _square(), void) == pytest.approx(90 / 100)
    # everything void -> empty union -> 1
    assert region_similarity(_square(left=6), _square(), np.ones((20, 20), bool)) == 1.0
    with pytest.raises(ValueError):
        region_similarity(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        region_similarity(empty, empty, np.zeros((3, 3), bool))


# ------------------------------------------------------------------------------------------ boundaries
def test_boundary_map_is_the_outline_offset_towards_the_origin():
    # square rows/cols 5..14: the object's bottom row (14) and right column (14) differ from their lower /
    # right neighbours; the background row 4 and column 4 differ from the object below / right of them ->
    # the outline of rows 4..14 x cols 4..14: 4 * 11 - 4 = 40 pixels
    b = boundary_map(_square())
    assert b.dtype == bool and b.sum() == 40
    assert np.array_equal(b, _outline(4, 4, 14, 14))
    # the image border is not a boundary: a full mask has none, a mask touching the border only inner edges
    assert not boundary_map(np.ones((6, 7), bool)).any()
    m = np.zeros((6, 7), bool)
    m[:, :3] = True                      # left 3 columns: only column 2 (differs from column 3) is boundary
    expected = np.zeros((6, 7), bool)
    expected[:, 2] = True
    assert np.array_equal(boundary_map(m), expected)
    m = np.zeros((6, 7), bool)
    m[3:, :] = True                      # bottom half: row 2 (background above the object) is boundary
    expected = np.zeros((6, 7), bool)
    expected[2, :] = True
    assert np.array_equal(boundary_map(m), expected)


def test_disk_and_dilation_match_scipy_and_skimage():
    ndimage = pytest.importorskip("scipy.ndimage")
    morphology = pytest.importorskip("skimage.morphology")
    assert disk(0).sum() == 1 and disk(1).sum() == 5 and disk(2).sum() == 13
    rng = np.random.default_rng(0)
    for r in range(9):
        assert np.array_equal(disk(r), morphology.disk(r).astype(bool)), r
        for density in (0.002, 0.05):
            m = rng.random((23, 31)) < density
            m[0, 0] = m[-1, -1] = True    # corners: the dilation must clip at the border
            assert np.array_equal(dilate_disk(m, r), ndimage.binary_dilation(m, structure=disk(r))), (r, density)
    with pytest.raises(ValueError):
        disk(-1)


def test_bound_pixels():
    assert bound_pixels((480, 854)) == 8          # ceil(0.008 * 979.7) = ceil(7.84)
    assert bound_pixels((20, 20)) == 1            # ceil(0.008 * 28.3) = ceil(0.23)
    assert bound_pixels((1080, 1920)) == math.ceil(0.008 * math.hypot(1080, 1920)) == 18
    assert bound_pixels((20, 20), 3) == 3 and bound_pixels((20, 20), 2.0) == 2  # >= 1: pixels
    with pytest.raises(ValueError):
        bound_pixels((20, 20), 0)


# ------------------------------------------------------------------------------------------ F
def test_boundary_f_measure_shifted_square_by_hand():
    gt = _square()                       # boundary: outline rows 4..14 x cols 4..14 (40 px)
    # shift 1: the predicted outline (cols 5..15) lies within 1 px (4-neighbourhood) of the GT outline -> F = 1
    assert boundary_f_measure(_square(left=6), gt) == 1.0
    # shift 2 on 20x20 (bound_pix = 1): predicted outline rows 4..14 x cols 6..16 (40 px). Matched within 1 px:
    #   top row 4, cols 6..15 (col 15 touches gt (4, 14); col 16 is 2 px away): 10 of 11; bottom row 14: 10;
    #   left col 6, rows 5..13: only rows 5 and 13 touch the gt top / bottom rows: 2 of 9;
    #   right col 16, rows 5..13: 2 px from gt col 14: 0 of 9.
    #   precision = 22 / 40; recall by symmetry (mirror image) = 22 / 40 -> F = 0.55
    pred = _square(left=7)
    assert boundary_f_measure(pred, gt) == pytest.approx(0.55)
    assert boundary_f_measure(gt, pred) == pytest.approx(0.55)
    # a 2-pixel tolerance (bound_th >= 1: pixels) matches every boundary pixel -> F = 1
    assert boundary_f_measure(pred, gt, bound_th=2) == 1.0
    # precision != recall: pred = gt plus an isolated pixel far away; pred boundary = gt's 40 + the pixel (1, 1)
    # itself and its 3 upper-left neighbours (0, 0), (0, 1), (1, 0) -> precision 40 / 44, recall 1
    extra = gt.copy()
    extra[1, 1] = True
    assert boundary_map(extra).sum() == 44
    p = 40 / 44
    assert boundary_f_measure(extra, gt) == pytest.approx(2 * p / (p + 1))


def test_boundary_f_measure_empty_cases_and_void():
    empty, full = np.zeros((20, 20), bool), np.ones((20, 20), bool)
    assert boundary_f_measure(empty, empty) == 1.0        # no boundary in either
    assert boundary_f_measure(empty, _square()) == 0.0    # only the GT has one
    assert boundary_f_measure(_square(), empty) == 0.0    # only the prediction has one
    assert boundary_f_measure(full, full) == 1.0          # the image border is not a boundary
    # void clears pixels from both masks before the boundaries: a spurious blob in the void is harmless
    gt = _square()
    pred = gt.copy()
    pred[0:3, 17:20] = True
    void = np.zeros((20, 20), bool)
    void[0:3, 17:20] = True
    assert boundary_f_measure(pred, gt) < 1.0 and region_similarity(pred, gt) == pytest.approx(100 / 109)
    assert boundary_f_measure(pred, gt, void) == 1.0 and region_similarity(pred, gt, void) == 1.0


# ------------------------------------------------------------------------------------------ statistics
def _official_bins(n):
    """The bin edges as davis2017-evaluation's db_statistics writes them (1-based linspace, then - 1)."""
    ids = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(int)
    return [(int(ids[i]), int(ids[i + 1])) for i in range(4)]


def test_decay_bins():
    # n = 8: linspace(0, 7, 5) = 0, 1.75, 3.5, 5.25, 7 -> 0, 2, 4 (3.5 rounds up), 5, 7
    assert decay_bins(8) == [(0, 2), (2, 4), (4, 5), (5, 7)]
    assert decay_bins(1) == [(0, 0)] * 4 and decay_bins(0) == []
    for n in range(1, 120):
        assert decay_bins(n) == _official_bins(n), n


def test_frame_statistics_by_hand():
    v = [1.0, 1.0, 1.0, 0.9, 0.6, 0.4, 0.2, 0.0]
    mean, recall, decay = frame_statistics(v)
    assert mean == pytest.approx(5.1 / 8)
    assert recall == pytest.approx(5 / 8)                 # 1, 1, 1, 0.9, 0.6 are > 0.5
    assert decay == pytest.approx(1.0 - 0.2)              # mean(v[0..2]) - mean(v[5..7]) = 1 - 0.6 / 3
    assert frame_statistics([0.5, 0.5])[1] == 0.0         # strictly greater than 0.5
    assert frame_statistics([0.2, 0.8])[2] == pytest.approx(-0.6)  # improving over time: negative decay
    assert frame_statistics([0.7])[2] == 0.0
    assert all(math.isnan(x) for x in frame_statistics([]))


def _pred_with_iou(iou_tenths: int) -> np.ndarray:
    """A 10x10 mask whose first ``iou_tenths`` rows are set: IoU with a full-row GT of 10 rows = tenths / 10."""
    m = np.zeros((10, 10), bool)
    m[:iou_tenths] = True
    return m


def test_accumulator_excludes_first_and_last_frame():
    gt = np.ones((10, 10), bool)
    acc = JFAccumulator()
    # frames 0 and 5 would give J = 0 and must be left out; frames 1..4 have J = 1, 0.8, 0.4, 0.2
    for k, tenths in enumerate([0, 10, 8, 4, 2, 0]):
        j, _ = acc.add("seq", 1, k, _pred_with_iou(tenths), gt)
        assert j == pytest.approx(tenths / 10)
    s = acc.summary()
    assert s["num_objects"] == 1 and s["num_frames"] == 4 and len(acc) == 6
    assert s["J-Mean"] == pytest.approx(100 * 2.4 / 4)
    assert s["J-Recall"] == pytest.approx(100 * 2 / 4)     # 1.0 and 0.8
    # n = 4: bins (0, 1), (1, 2), (2, 2), (2, 3) -> mean(1, 0.8) - mean(0.4, 0.2)
    assert s["J-Decay"] == pytest.approx(100 * (0.9 - 0.3))
    # F: the GT covers the image (no boundary), every partial prediction has one -> F = 0 except frame 1 -> 1
    assert s["F-Mean"] == pytest.approx(25.0) and s["F-Recall"] == pytest.approx(25.0)
    assert s["J&F-Mean"] == pytest.approx((60.0 + 25.0) / 2)
    [row] = s["per_object"]
    assert row["sequence"] == "seq" and row["object_id"] == "1" and row["num_frames"] == 4
    # without the exclusion every frame counts
    acc_all = JFAccumulator(exclude_first_last=False)
    for k, tenths in enumerate([0, 10, 8, 4, 2, 0]):
        acc_all.add("seq", 1, k, _pred_with_iou(tenths), gt)
    assert acc_all.summary()["J-Mean"] == pytest.approx(100 * 2.4 / 6)


def test_accumulator_means_over_objects_and_sequences():
    gt = np.ones((10, 10), bool)
    acc = JFAccumulator()
    for k in range(4):  # seq a: object 1 perfect, object 2 J = 0.5 on the evaluated frames 1, 2
        acc.add("a", 1, k, gt, gt)
        acc.add("a", 2, k, _pred_with_iou(5), gt)
    for k in range(2):  # seq b: 2 frames -> nothing left after dropping the first and last
        acc.add("b", 1, k, gt, gt)
    s = acc.summary()
    assert s["num_sequences"] == 1 and s["num_objects"] == 2 and s["num_frames"] == 4
    assert s["objects_without_frames"] == ["b/1"]
    assert s["J-Mean"] == pytest.approx(75.0)               # mean of 100 and 50 over objects
    assert s["J-Recall"] == pytest.approx(50.0)             # 0.5 is not > 0.5
    assert {r["object_id"]: r["J-Mean"] for r in s["per_object"] if r["sequence"] == "a"} == {"1": 100.0, "2": 50.0}
    with pytest.raises(ValueError, match="already added"):
        acc.add("a", 1, 0, gt, gt)
    with pytest.raises(ValueError):
        acc.add("a", 3, -1, gt, gt)
    empty = JFAccumulator().summary()
    assert math.isnan(empty["J&F-Mean"]) and empty["num_objects"] == 0


def test_accumulator_declared_length_and_discard():
    gt = np.ones((10, 10), bool)
    acc = JFAccumulator()
    acc.set_length("s", 5)             # frames 0..4: 0 and 4 excluded even though frame 0 is never added
    for k in (1, 2, 3):
        acc.add("s", 1, k, _pred_with_iou(2 * k), gt)   # J = 0.2, 0.4, 0.6
    s = acc.summary()
    assert s["num_frames"] == 3 and s["J-Mean"] == pytest.approx(40.0)
    # without the declaration, frames 1 and 3 would be taken as the first and last
    inferred = JFAccumulator()
    for k in (1, 2, 3):
        inferred.add("s", 1, k, _pred_with_iou(2 * k), gt)
    assert inferred.summary()["num_frames"] == 1 and inferred.summary()["J-Mean"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="outside"):
        acc.add("s", 1, 5, gt, gt)
    with pytest.raises(ValueError):
        acc.set_length("t", 0)
    acc.discard("s")
    assert len(acc) == 0 and acc.summary()["num_objects"] == 0
    acc.add("s", 1, 9, gt, gt)          # the length was forgotten too
    # a failed add (bad shapes) leaves nothing behind
    with pytest.raises(ValueError):
        acc.add("u", 1, 0, np.zeros((3, 3)), gt)
    assert [r["sequence"] for r in acc.per_object()] == ["s"]
