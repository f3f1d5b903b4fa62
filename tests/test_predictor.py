"""SeemPredictor: prompts in the original frame reach the model exactly as the official code feeds them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seem import PromptError, SeemPredictor
from seem.errors import ImageError

from _fixture import require_fixture
from _parity import assert_close, case, fixture_model, image_uint8, recorded_sampler


@pytest.fixture(scope="module")
def model():
    require_fixture()
    return fixture_model()


def _predictor(model, meta=None, t=None, **kw):
    sampler = recorded_sampler(meta, t) if meta is not None else None
    return SeemPredictor(model, vocabulary=["zebra", "grass", "sky"], shorter_side=None, sampler=sampler, **kw)


def _click(meta):
    y, x = meta["prompt"]["positive_click_yx"] if "prompt" in meta else meta["positive_click_yx"]
    return [x, y]


def test_click_round1_and_round2_with_memory(model):
    meta1, t1 = case("case_c1_point_round1")
    p = _predictor(model, meta1, t1)
    p.set_image(image_uint8(meta1["image"]))
    r1 = p.predict(points=[_click(meta1)])
    assert_close(r1.logits_lowres[None], t1["output.prev_mask"], "round 1 prev_mask")
    assert r1.masks.shape == (1, *image_uint8(meta1["image"]).shape[:2]) and r1.masks.dtype == bool
    assert np.array_equal(r1.masks[0], t1["post.pred_mask_ori"][0].bool().numpy())

    meta2, t2 = case("case_c2_point_round2_neg")
    p._sampler = recorded_sampler(meta2, t2)
    ny, nx = meta2["prompt"]["negative_click_yx"]
    r2 = p.predict(points=[_click(meta2), [nx, ny]], point_labels=[1, 0], memory=r1)
    assert_close(r2.logits_lowres[None], t2["output.prev_mask"], "round 2 prev_mask")


def test_click_and_box_become_the_official_region_masks(model):
    from seem.prompts import Prompts
    from seem.transforms import plan_frame

    meta, t = case("case_c2_point_round2_neg")
    frame = plan_frame(image_uint8(meta["image"]).shape[:2], None, None, 32)
    ny, nx = meta["prompt"]["negative_click_yx"]
    r = Prompts(points=[_click(meta), [nx, ny]], point_labels=[1, 0]).to_regions(frame)
    assert torch.equal(r.positive, t["decoder_input.spatial_query_pos_mask"][0].bool())
    assert torch.equal(r.negative, t["decoder_input.spatial_query_neg_mask"][0].bool())

    meta, t = case("case_d1_box")
    frame = plan_frame(image_uint8(meta["image"]).shape[:2], None, None, 32)
    r = Prompts(boxes=[meta["prompt"]["box_xyxy"]]).to_regions(frame)
    assert torch.equal(r.positive, t["decoder_input.spatial_query_pos_mask"][0].bool())


def test_box_and_scribble_through_the_predictor(model):
    for name in ("case_d1_box", "case_d2_scribble"):
        meta, t = case(name)
        p = _predictor(model, meta, t)
        img = image_uint8(meta["image"])
        p.set_image(img)
        h, w = img.shape[:2]
        stroke = t["decoder_input.spatial_query_pos_mask"][0, 0, :h, :w].numpy().astype(bool)
        r = p.predict(boxes=[meta["prompt"]["box_xyxy"]]) if name == "case_d1_box" else p.predict(scribbles=[stroke])
        assert_close(r.logits_lowres[None], t["output.prev_mask"], f"{name} prev_mask")


def test_text_grounding_through_the_predictor(model):
    meta, t = case("case_b_grounding")
    p = _predictor(model)
    p.set_image(image_uint8(meta["image"]))
    r = p.predict(text=meta["text"])
    h, w = image_uint8(meta["image"]).shape[:2]
    assert r.masks.shape == (1, h, w)
    expected = t["post.grounding_mask"][0]
    differ = r.masks[0] != (expected > 0).numpy()
    assert not np.any(differ & (expected.abs() > 1e-4).numpy())


def test_reference_region_on_the_same_image_gives_the_same_tokens(model):
    img = image_uint8("image1")
    region = np.zeros(img.shape[:2], dtype=bool)
    region[60:140, 150:260] = True
    p = SeemPredictor(model, shorter_side=None, seed=3)
    p.set_image(img)
    ref = p.encode_reference(img, region)
    from seem.prompts import Prompts

    regions = Prompts(masks=region[None]).to_regions(p.frame)
    with torch.inference_mode():
        direct = model.encode_visual_prompt(p.features, regions.positive, regions.negative, p.sampler())
    for a, b in zip(ref.tokens.tokens, direct.tokens):
        assert torch.equal(a, b)
    assert torch.equal(ref.tokens.positive_mean, direct.positive_mean)
    assert np.array_equal(p.predict(reference=ref).masks, p.predict(masks=region[None]).masks)
    # and the tokens of image 1 drive a mask on image 2 (the case official v1 cannot run)
    p.set_image(image_uint8("image2"))
    out = p.predict(reference=ref)
    assert out.masks.shape == (1, *image_uint8("image2").shape[:2])


def test_resize_and_padding_map_back_to_the_original_frame(model):
    img = np.asarray(torch.randint(0, 255, (150, 230, 3), dtype=torch.uint8))
    p = SeemPredictor(model, shorter_side=100, max_size=None, seed=0)
    p.set_image(img)
    assert p.frame.resized_size == (100, 153) and p.frame.padded_size == (128, 160)
    r = p.predict(points=[[229, 149]], boxes=[[0, 0, 10, 10]])
    assert r.masks.shape == (1, 150, 230)
    assert r.logits_lowres.shape == (1, 32, 40)
    two = p.predict(boxes=[[0, 0, 50, 50], [100, 60, 200, 140]])
    assert two.masks.shape == (2, 150, 230) and len(two.labels) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"points": [[500, 10]]}, "outside the image"),
        ({"points": [[-1, 10]]}, "outside the image"),
        ({"points": [[10, 10]], "point_labels": [2]}, "point_labels"),
        ({"points": [[10, 10]], "point_labels": [0]}, "positive"),
        ({"boxes": [[50, 50, 10, 10]]}, "x1 > x0"),
        ({"boxes": [[0, 0, 10, 1000]]}, "outside the image"),
        ({"scribbles": [np.zeros((224, 416), bool)]}, "empty"),
        ({"masks": np.ones((1, 10, 10), bool)}, "size"),
        ({"points": [[float("nan"), 1]]}, "non-finite"),
        ({"text": "zebra " * 80}, "77"),
        ({"text": "  "}, "empty"),
        ({}, "no prompt"),
        ({"boxes": [[0, 0, 10, 10]], "points": [[[1, 1]], [[2, 2]]]}, "different numbers"),
        ({"text": "zebra", "memory": torch.zeros(1, 56, 104)}, "memory"),
    ],
)
def test_bad_prompts_raise_clear_errors(model, kwargs, message):
    p = SeemPredictor(model, shorter_side=None)
    p.set_image(image_uint8("image1"))
    with pytest.raises(PromptError, match=message):
        p.predict(**kwargs)


def test_predict_without_image_raises(model):
    with pytest.raises(ImageError, match="set_image"):
        SeemPredictor(model).predict(points=[[1, 1]])


def test_segment_everything_kinds(model):
    meta, _ = case("case_a_generic")
    p = SeemPredictor(model, shorter_side=None)
    p.set_image(image_uint8(meta["image"]))
    pano = p.segment_everything(meta["classes"], thing_classes=meta["thing_classes"])
    expected = [(s["id"], s["category_id"]) for s in meta["panoptic_segments_info"]]
    assert [(s.id, s.label_id) for s in pano.segments] == expected
    sem = p.segment_everything(meta["classes"], kind="semantic")
    assert sem.probabilities.shape[0] == len(meta["classes"]) and sem.label_map.shape == image_uint8(meta["image"]).shape[:2]
    inst = p.segment_everything(meta["classes"], kind="instance")
    assert np.all(np.diff(inst.scores) <= 0)
    with pytest.raises(PromptError):
        p.segment_everything(meta["classes"], kind="nope")


def test_composition_official_text_leaves_visual_masks_unchanged_joint_uses_text(model):
    p = SeemPredictor(model, vocabulary=["zebra"], shorter_side=None, seed=0)
    p.set_image(image_uint8("image2"))
    click = [[124, 145]]
    alone = p.predict(points=click)
    official = p.predict(points=click, text="young zebra", joint_prompts=False)
    joint = p.predict(points=click, text="young zebra")  # default: the paper's composition
    assert torch.allclose(alone.logits_lowres, official.logits_lowres, atol=1e-4)  # only rounding differs
    assert (joint.logits_lowres - alone.logits_lowres).abs().max() > 1e-2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"points": np.zeros((0, 2))}, "empty"),
        ({"points": [["a", "b"]]}, "numbers"),
        ({"points": [[1, 2], [3]]}, "numbers"),
        ({"boxes": []}, "empty"),
        ({"boxes": [10, 10, 200, 150, 3]}, r"\(K, 4\)"),
        ({"masks": []}, "empty"),
        ({"scribbles": [np.full((224, 416), np.nan)]}, "NaN"),
        ({"text": ["zebra", None]}, "string"),
        ({"text": b"zebra"}, "string"),
        ({"point_labels": [1]}, "without points"),
        ({"reference": np.zeros((2, 2))}, "encode_reference"),
        ({"points": [[10, 10]], "memory": "abc"}, "memory"),
        ({"points": [[10, 10]], "memory": torch.zeros(1, 32, 32)}, "same image"),
        ({"points": [[10, 10]], "memory": torch.full((1, 56, 104), float("nan"))}, "NaN"),
    ],
)
def test_malformed_prompts_raise_prompt_errors(model, kwargs, message):
    p = SeemPredictor(model, shorter_side=None, vocabulary=["zebra"])
    p.set_image(image_uint8("image1"))
    with pytest.raises(PromptError, match=message):
        p.predict(**kwargs)


@pytest.mark.parametrize("vocab, message", [("zebra", "string"), (["a", "A"], "duplicate"), ([], "empty"),
                                            (["sky", " "], "non-blank"), (["zebra", "background"], "reserved")])
def test_vocabularies_are_validated(model, vocab, message):
    with pytest.raises(PromptError, match=message):
        SeemPredictor(model, vocabulary=vocab)
    p = SeemPredictor(model, shorter_side=None, vocabulary=["zebra"])
    p.set_image(image_uint8("image1"))
    with pytest.raises(PromptError, match=message):
        p.segment_everything(vocab)


def test_predictor_needs_a_model():
    with pytest.raises(TypeError, match="from_pretrained"):
        SeemPredictor("model.safetensors")


def test_click_masks_use_the_official_interactive_resize(model):
    """Resized images: bicubic up to the padded size, crop, plain bicubic back (evaluate_interactive_single)."""
    import torch.nn.functional as F

    img = np.asarray(torch.randint(0, 255, (150, 230, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    p = SeemPredictor(model, shorter_side=100, max_size=None, vocabulary=["zebra"])
    p.set_image(img)
    r = p.predict(points=[[120, 70]])
    up = F.interpolate(r.logits_lowres[None], size=p.frame.padded_size, mode="bicubic")
    crop = up[:, :, : p.frame.resized_size[0], : p.frame.resized_size[1]]
    logits = F.interpolate(crop, size=(150, 230), mode="bicubic")[0]
    assert np.array_equal(r.masks, (logits > 0).numpy())


def test_a_negative_click_inside_a_box_carves_the_box():
    from seem.prompts import Prompts
    from seem.transforms import plan_frame

    frame = plan_frame((64, 96), None, None, 32)
    regions = Prompts(points=[[40.5, 30.5]], point_labels=[0], boxes=[[10, 10, 80, 50]]).to_regions(frame)
    pos, neg = regions.positive[0].numpy(), regions.negative[0].numpy()
    assert neg[29:32, 39:42].all() and neg.sum() == 9  # the 3x3 click square is negative
    assert not (pos & neg).any() and not pos[29:32, 39:42].any()  # ... and no longer positive
    assert pos.sum() == 70 * 40 - 9
