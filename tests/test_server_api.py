"""The HTTP API of ``seem serve`` (FastAPI TestClient, bundled ``seem_tiny`` at shorter side 256).

Every mask the server returns is compared exactly (RLE round trip) with what an independent
``SeemPredictor`` gives for the same prompts (sessions: the same accumulated prompts + memory).
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("pycocotools")
pytest.importorskip("skimage")

from fastapi.testclient import TestClient

from seem import SeemPredictor, from_pretrained
from seem.data.scenes import SceneConfig, SceneGenerator
from seem.errors import PromptError
from seem.io import mask_to_rle, rle_to_mask
from seem.server import create_app


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model():
    return from_pretrained()


def _predictor(model) -> SeemPredictor:
    return SeemPredictor(model, shorter_side=256, max_size=None, vocabulary_cache_dir=None)


@pytest.fixture(scope="module")
def predictor(model):
    return _predictor(model)


@pytest.fixture(scope="module")
def ref(model):
    """An independent predictor computing the expected results."""
    return _predictor(model)


@pytest.fixture(scope="module")
def scenes():
    gen = SceneGenerator(SceneConfig(size=256))
    return [gen.sample(0), gen.sample(1)]


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def pngs(scenes):
    return [_png(s.image) for s in scenes]


@pytest.fixture(scope="module")
def app(predictor):
    return create_app(predictor, model_name="seem_tiny")


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture(scope="module")
def ids(client, pngs):
    out = []
    for data in pngs:
        r = client.post("/v1/images", files={"file": ("scene.png", data, "image/png")})
        assert r.status_code == 200, r.text
        out.append(r.json()["image_id"])
    return out


def _inside(mask: np.ndarray) -> list[float]:
    """A pixel centre deep inside ``mask``, as [x, y]."""
    from scipy.ndimage import distance_transform_edt

    r, c = np.unravel_index(np.argmax(distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]), mask.shape)
    return [float(c) + 0.5, float(r) + 0.5]


def _objects(scene, n: int = 2) -> list[int]:
    """Indices of the ``n`` largest segments, things first."""
    areas = scene.masks.reshape(len(scene.masks), -1).sum(1)
    order = sorted(range(len(areas)), key=lambda i: (not scene.is_thing[i], -areas[i]))
    return order[:n]


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _mask(out: dict) -> np.ndarray:
    return rle_to_mask(out["rle"])


def _same(out: dict, pred, i: int = 0) -> None:
    got = _mask(out)
    assert got.shape == pred.masks[i].shape
    assert np.array_equal(got, pred.masks[i])
    assert out["label"] == pred.labels[i]
    assert out["score"] == pytest.approx(float(pred.scores[i]), abs=1e-5)
    assert out["area"] == int(pred.masks[i].sum())


def _on(ref, image):
    ref.set_image(image)
    return ref


# ---------------------------------------------------------------------------------------------- basics
def test_with_image_is_a_cheap_view(predictor, ref, scenes):
    frame, feats = predictor.encode(scenes[0].image)
    view = predictor.with_image(frame, feats, scenes[0].image)
    assert view is not predictor and view.model is predictor.model and view.vocabularies is predictor.vocabularies
    assert view.features is feats and view._everything is None
    assert predictor.features is None or predictor.features is not feats
    pt = _inside(scenes[0].masks[_objects(scenes[0])[0]])
    expected = _on(ref, scenes[0].image).predict(points=[pt])
    assert np.array_equal(view.predict(points=[pt]).masks, expected.masks)


def test_health_models_docs_and_page(client, predictor):
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/models").json()
    assert info["name"] == "seem_tiny" and info["precision"] == "fp32"
    assert info["vocabulary_size"] == len(predictor.vocabulary) == len(info["vocabulary"])
    assert info["config"]["backbone"] == "mobilenet_v2" and info["config"]["shorter_side"] == 256
    schema = client.get("/openapi.json").json()
    for path in ("/v1/images", "/v1/predict", "/v1/panoptic", "/v1/sessions", "/v1/sessions/{session_id}/prompts",
                 "/v1/sessions/{session_id}/undo", "/v1/cvat/interactor", "/v1/models", "/healthz"):
        assert path in schema["paths"], path
    assert "multipart/form-data" in schema["paths"]["/v1/images"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    from seem.server.app import STATIC_DIR

    page = client.get("/")
    if (STATIC_DIR / "index.html").is_file():
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    else:
        assert page.status_code == 404


def test_upload_multipart_json_and_dedupe(app, client, pngs, ids, scenes):
    store = app.state.seem.images
    assert ids[0] == hashlib.sha256(pngs[0]).hexdigest() and ids[0] != ids[1]
    encodes = store.encodes
    r = client.post("/v1/images", json={"data": base64.b64encode(pngs[0]).decode()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"image_id": ids[0], "width": 256, "height": 256, "cached": True}
    r = client.post("/v1/images", json={"data": "data:image/png;base64," + base64.b64encode(pngs[1]).decode()})
    assert r.json()["image_id"] == ids[1] and r.json()["cached"] is True
    assert store.encodes == encodes  # no new encoding for the same bytes
    assert np.array_equal(store.get(ids[0]).image, scenes[0].image)


def test_cross_origin_posts_are_refused_unread_and_the_page_is_hardened(predictor, scenes):
    """A page on another site can make a browser POST here (a form post or a no-cors fetch); the browser sends
    its Origin, and the server refuses before decoding anything. Same-origin pages, allowed origins and
    clients without an Origin (curl, Python) are served."""
    app = create_app(predictor, warm=False, allowed_origins=["https://annotate.example.org"])
    client = TestClient(app)
    store = app.state.seem.images
    png = _png(scenes[1].image)
    for origin in ("https://evil.example", "null", "http://testserver.evil.example", "http://testserver:8080"):
        r = client.post("/v1/images", files={"file": ("x.png", png, "image/png")}, headers={"Origin": origin})
        assert r.status_code == 403 and "cross-origin request refused" in r.json()["detail"], (origin, r.text)
        assert store.encodes == 0  # refused before the image was decoded or encoded
        assert client.delete("/v1/sessions/anything", headers={"Origin": origin}).status_code == 403
    for headers in ({"Origin": "http://testserver"}, {"Origin": "https://annotate.example.org"}, {}):
        r = client.post("/v1/images", files={"file": ("x.png", png, "image/png")}, headers=headers)
        assert r.status_code == 200, (headers, r.text)
    assert client.get("/healthz", headers={"Origin": "https://evil.example"}).status_code == 200  # reads are fine
    page = client.get("/")
    for name, value in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff")):
        assert page.headers[name] == value and client.get("/healthz").headers[name] == value
    if page.status_code == 200:
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "content-security-policy" not in client.get("/healthz").headers


# ---------------------------------------------------------------------------------------------- stateless
def test_predict_points_matches_predictor(client, ids, ref, scenes):
    s = scenes[0]
    a, b = _objects(s)
    pts, labels = [_inside(s.masks[a]), _inside(s.masks[b])], [1, 0]
    r = client.post("/v1/predict", json={"image_id": ids[0], "points": pts, "point_labels": labels})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["latency_ms"] > 0 and len(body["masks"]) == 1
    expected = _on(ref, s.image).predict(points=pts, point_labels=labels)
    _same(body["masks"][0], expected)
    out = body["masks"][0]
    from seem.io import mask_to_bbox

    assert out["bbox"] == mask_to_bbox(expected.masks[0]) and out["polygon"] and len(out["polygon"][0]) % 2 == 0
    assert (_mask(out) & s.masks[a]).sum() > 0


def test_predict_every_prompt_type(client, ids, ref, scenes):
    s, other = scenes
    a, b = _objects(s)
    ma, mb = s.masks[a], s.masks[b]
    ys, xs = np.nonzero(ma)
    line = [[float(xs[0]) + 0.5, float(ys[0]) + 0.5], _inside(ma)]
    x0, y0, x1, y1 = _box(mb)
    poly = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    k2 = _objects(other)[0]
    cases = [
        ({"boxes": [_box(ma), _box(mb)]}, {"boxes": [_box(ma), _box(mb)]}),
        ({"scribbles": [line]}, {"scribbles": [np.asarray(line)]}),
        ({"polygons": [poly]}, {"polygons": [np.asarray(poly)]}),
        ({"masks": [mask_to_rle(ma)]}, {"masks": ma[None]}),
        ({"text": s.expressions[0][0] if s.expressions else "the shape"},
         {"text": s.expressions[0][0] if s.expressions else "the shape"}),
        ({"text": "grass", "points": [_inside(ma)], "joint_prompts": False},
         {"text": "grass", "points": [_inside(ma)], "joint_prompts": False}),
    ]
    for body, kw in cases:
        r = client.post("/v1/predict", json={"image_id": ids[0], **body})
        assert r.status_code == 200, (body, r.text)
        expected = _on(ref, s.image).predict(**kw)
        assert len(r.json()["masks"]) == len(expected)
        for i, out in enumerate(r.json()["masks"]):
            _same(out, expected, i)
    # a referred region of the other image, sampled on its cached features
    r = client.post("/v1/predict", json={"image_id": ids[0], "reference": {"image_id": ids[1],
                                                                           "mask": mask_to_rle(other.masks[k2])}})
    assert r.status_code == 200, r.text
    reference = ref.encode_reference(other.image, other.masks[k2])
    _same(r.json()["masks"][0], _on(ref, s.image).predict(reference=reference))


def test_panoptic_semantic_instance(client, ids, ref, scenes):
    s = scenes[0]
    _on(ref, s.image)
    r = client.post("/v1/panoptic", json={"image_id": ids[0]})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = ref.segment_everything(kind="panoptic")
    assert body["kind"] == "panoptic" and len(body["segments"]) == len(expected.segments)
    for seg, exp in zip(body["segments"], expected.segments):
        assert seg["id"] == exp.id and seg["label"] == exp.label and seg["isthing"] == exp.isthing
        assert np.array_equal(_mask(seg), expected.segmentation == exp.id)
    names = ["circle", "square", "grass", "sky"]
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "vocabulary": names, "kind": "semantic"})
    assert r.status_code == 200, r.text
    sem = ref.segment_everything(vocabulary=names, kind="semantic")
    for seg in r.json()["segments"]:
        assert seg["label"] == names[seg["id"]]
        assert np.array_equal(_mask(seg), sem.label_map == seg["id"])
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "vocabulary": names, "kind": "semantic",
                                          "text_grounding": True})
    assert r.status_code == 200, r.text
    grounded = ref.segment_everything(vocabulary=names, kind="semantic", text_grounding=True)
    for seg in r.json()["segments"]:
        assert np.array_equal(_mask(seg), grounded.label_map == seg["id"])
    assert {s["id"] for s in r.json()["segments"]} == set(np.unique(grounded.label_map).tolist())
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "kind": "instance"})
    assert r.status_code == 200, r.text
    inst = ref.segment_everything(kind="instance")
    assert len(r.json()["segments"]) == len(inst.masks)
    for seg, m, lab in zip(r.json()["segments"], inst.masks, inst.labels):
        assert np.array_equal(_mask(seg), m) and seg["label"] == lab


def test_cvat_interactor(client, ids, ref, scenes):
    s = scenes[0]
    a, b = _objects(s)
    pos, neg, box = [_inside(s.masks[a])], [_inside(s.masks[b])], _box(s.masks[a])
    r = client.post("/v1/cvat/interactor", json={"image_id": ids[0], "pos_points": pos, "neg_points": neg,
                                                 "obj_bbox": box})
    assert r.status_code == 200, r.text
    expected = _on(ref, s.image).predict(points=pos + neg, point_labels=[1, 0], boxes=[box])
    assert np.array_equal(rle_to_mask(r.json()["mask"]), expected.masks[0])
    polygon = r.json()["polygon"]
    assert len(polygon) >= 3 and all(len(p) == 2 for p in polygon)
    r = client.post("/v1/cvat/interactor", json={"image_id": ids[0], "pos_points": pos, "obj_bbox": None})
    assert np.array_equal(rle_to_mask(r.json()["mask"]), ref.predict(points=pos).masks[0])


# ---------------------------------------------------------------------------------------------- sessions
def _round(client, sid, **body) -> dict:
    r = client.post(f"/v1/sessions/{sid}/prompts", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_session_rounds_two_objects_undo_redo_reset(client, ids, ref, scenes):
    s = scenes[0]
    a, b = _objects(s)
    p1, n1, p2, p3 = _inside(s.masks[a]), _inside(s.masks[b]), _inside(s.masks[a] & ~np.roll(s.masks[a], 3, 0)), \
        _inside(s.masks[a] & ~np.roll(s.masks[a], 3, 1))
    r = client.post("/v1/sessions", json={"image_id": ids[0]})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    assert r.json()["width"] == 256
    _on(ref, s.image)

    st = _round(client, sid, points=[p1])
    pred1 = ref.predict(points=[p1], point_labels=[1])
    assert st["current_object"] == 0 and len(st["objects"]) == 1 and st["can_undo"] and not st["can_redo"]
    _same(st["objects"][0], pred1)
    assert st["objects"][0]["num_points"] == 1 and st["objects"][0]["prompts"] == ["points"]

    st = _round(client, sid, points=[n1], point_labels=[0])  # accumulates, previous mask as memory
    pred2 = ref.predict(points=[p1, n1], point_labels=[1, 0], memory=pred1)
    _same(st["objects"][0], pred2)

    st = _round(client, sid, new_object=True, box=_box(s.masks[b]))
    obj1 = ref.predict(boxes=[_box(s.masks[b])])
    assert st["current_object"] == 1 and len(st["objects"]) == 2
    _same(st["objects"][1], obj1)
    _same(st["objects"][0], pred2)

    st = _round(client, sid, object=0, points=[p2])
    pred3 = ref.predict(points=[p1, n1, p2], point_labels=[1, 0, 1], memory=pred2)
    _same(st["objects"][0], pred3)
    _same(st["objects"][1], obj1)
    assert st["current_object"] == 0

    st = client.post(f"/v1/sessions/{sid}/undo").json()
    _same(st["objects"][0], pred2)
    assert len(st["objects"]) == 2 and st["can_redo"]
    st = client.post(f"/v1/sessions/{sid}/undo").json()
    assert len(st["objects"]) == 1 and st["current_object"] == 0
    _same(st["objects"][0], pred2)
    st = client.post(f"/v1/sessions/{sid}/undo").json()
    _same(st["objects"][0], pred1)
    st = client.post(f"/v1/sessions/{sid}/redo").json()
    _same(st["objects"][0], pred2)
    assert len(st["objects"]) == 1 and st["can_redo"]

    st = _round(client, sid, points=[p3])  # a new round after undo: redo is gone, memory is the restored mask
    assert not st["can_redo"] and len(st["objects"]) == 1
    _same(st["objects"][0], ref.predict(points=[p1, n1, p3], point_labels=[1, 0, 1], memory=pred2))
    r = client.post(f"/v1/sessions/{sid}/redo")
    assert r.status_code == 409 and "redo" in r.json()["detail"]

    st = client.post(f"/v1/sessions/{sid}/reset").json()
    assert st["objects"] == [] and st["current_object"] is None and st["can_undo"]
    st = _round(client, sid, points=[p1])  # after reset: a fresh object 0, no memory
    _same(st["objects"][0], pred1)
    client.post(f"/v1/sessions/{sid}/undo")
    st = client.post(f"/v1/sessions/{sid}/undo").json()  # undo the reset
    assert len(st["objects"]) == 1 and st["objects"][0]["num_points"] == 3
    assert client.get(f"/v1/sessions/{sid}").json() == st

    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert client.get(f"/v1/sessions/{sid}").status_code == 404
    assert client.delete(f"/v1/sessions/{sid}").status_code == 404


def test_session_prompt_types(client, ids, ref, scenes):
    s, other = scenes
    a, b = _objects(s)
    ma = s.masks[a]
    ys, xs = np.nonzero(ma)
    line1 = [[float(xs[0]) + 0.5, float(ys[0]) + 0.5], _inside(ma)]
    line2 = [_inside(ma), [float(xs[-1]) + 0.5, float(ys[-1]) + 0.5]]
    x0, y0, x1, y1 = _box(s.masks[b])
    poly = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    text = s.expressions[0][0] if s.expressions else "the shape"
    k2 = _objects(other)[0]
    sid = client.post("/v1/sessions", json={"image_id": ids[0]}).json()["session_id"]
    _on(ref, s.image)

    st = _round(client, sid, scribble=[line1])
    sc1 = ref.predict(scribbles=[np.asarray(line1)])
    _same(st["objects"][0], sc1)
    st = _round(client, sid, scribble=[line2])  # strokes accumulate into one object
    from seem.rasterize import rasterize_polyline

    union = rasterize_polyline(np.asarray(line1), (256, 256)) | rasterize_polyline(np.asarray(line2), (256, 256))
    _same(st["objects"][0], ref.predict(scribbles=[union], memory=sc1))

    st = _round(client, sid, new_object=True, polygon=poly)
    _same(st["objects"][1], ref.predict(polygons=[np.asarray(poly)]))
    st = _round(client, sid, new_object=True, mask=mask_to_rle(ma))
    _same(st["objects"][2], ref.predict(masks=ma[None]))
    st = _round(client, sid, new_object=True, text=text)
    txt = ref.predict(text=text)
    _same(st["objects"][3], txt)
    st = _round(client, sid, points=[_inside(ma)])  # text + clicks on one object, the text mask as memory
    _same(st["objects"][3], ref.predict(text=text, points=[_inside(ma)], memory=txt))
    assert st["objects"][3]["prompts"] == ["points", "text"]
    st = _round(client, sid, new_object=True, reference={"image_id": ids[1], "mask": mask_to_rle(other.masks[k2])})
    reference = ref.encode_reference(other.image, other.masks[k2])
    _same(st["objects"][4], _on(ref, s.image).predict(reference=reference))
    r = client.post(f"/v1/sessions/{sid}/prompts", json={"points": [_inside(ma)]})
    assert r.status_code == 422 and "reference" in r.json()["detail"]
    assert len(client.get(f"/v1/sessions/{sid}").json()["objects"]) == 5  # a failed round changes nothing


def test_prompt_bodies_are_bounded_before_json_decoding(predictor, ids, scenes):
    """A huge prompt body (millions of points) is refused from its size, not parsed then rejected; image
    uploads keep their own, larger limit."""
    app = create_app(predictor, warm=False, max_prompt_bytes=64_000)
    client = TestClient(app)
    png = _png(scenes[0].image)
    image_id = client.post("/v1/images", files={"file": ("x.png", png, "image/png")}).json()["image_id"]
    many = {"image_id": image_id, "points": [[1.5, 2.5]] * 20_000}  # about 240 kB of JSON
    r = client.post("/v1/predict", json=many)
    assert r.status_code == 413 and "64,000-byte limit" in r.json()["detail"], r.text
    ok = client.post("/v1/predict", json={"image_id": image_id, "points": [[10.5, 10.5]]})
    assert ok.status_code == 200, ok.text
    sid = client.post("/v1/sessions", json={"image_id": image_id}).json()["session_id"]
    assert client.post(f"/v1/sessions/{sid}/prompts", json=many).status_code == 413
    big = client.post("/v1/images", json={"data": base64.b64encode(_png(np.random.default_rng(0).integers(
        0, 255, (200, 200, 3), dtype=np.uint8))).decode()})
    assert big.status_code == 200, big.text  # ~160 kB of base64: over the prompt limit, under the upload one


def test_vocabulary_text_is_bounded(client, ids):
    """256 names of 158 characters kept the model thread busy for 14 s; all names together are bounded."""
    from seem.server.schemas import MAX_VOCABULARY_CHARS

    long_names = [f"{i:03d} " + "very long class name " * 7 for i in range(256)]
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "vocabulary": long_names})
    assert r.status_code == 422 and f"at most {MAX_VOCABULARY_CHARS:,} characters" in r.json()["detail"], r.text


def test_session_history_holds_no_full_size_masks(app, client):
    """Undo keeps every round's snapshot: each holds the RLE and the low-res logits (the next round's memory),
    not the full-size mask, so history memory does not grow with the image's pixels."""
    import torch

    h, w = 768, 1024
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[200:500, 300:700] = (200, 60, 40)
    image_id = client.post("/v1/images", files={"file": ("big.png", _png(rgb), "image/png")}).json()["image_id"]
    sid = client.post("/v1/sessions", json={"image_id": image_id}).json()["session_id"]
    for x, y in ((500.5, 350.5), (320.5, 220.5), (680.5, 480.5)):
        assert client.post(f"/v1/sessions/{sid}/prompts", json={"points": [[x, y]]}).status_code == 200
    session = app.state.seem.sessions.get(sid)
    snapshots = [*session.undo_stack, session.state]
    assert len(snapshots) >= 4
    arrays = [o.memory for snap in snapshots for o in snap.objects if o.memory is not None]
    assert arrays and all(isinstance(m, torch.Tensor) and m.numel() * 64 < h * w for m in arrays)
    for snap in snapshots:
        for o in snap.objects:
            for value in vars(o).values():
                assert not (isinstance(value, np.ndarray) and value.size >= h * w)
    st = client.post(f"/v1/sessions/{sid}/undo").json()  # undo still restores the previous mask
    assert st["objects"][0]["area"] > 0


def test_session_histories_share_one_budget_reported_by_healthz(predictor, scenes):
    """Session histories count against a budget (least recently used sessions dropped, never the one being
    used); /healthz reports every store's use and budget."""
    client = TestClient(create_app(predictor, warm=False, session_budget_bytes=60_000))
    image_id = client.post("/v1/images", files={"file": ("x.png", _png(scenes[0].image), "image/png")}).json()["image_id"]
    first, second = (client.post("/v1/sessions", json={"image_id": image_id}).json()["session_id"] for _ in range(2))
    for _ in range(3):
        assert client.post(f"/v1/sessions/{first}/prompts", json={"points": [[100.5, 100.5]]}).status_code == 200
    health = client.get("/healthz").json()
    memory = health["memory"]
    assert 0 < memory["sessions_bytes"] <= 60_000 and memory["sessions_budget_bytes"] == 60_000
    assert memory["images_bytes"] > 0 and memory["images_budget_bytes"] >= memory["images_bytes"]
    for _ in range(3):  # the second session's history pushes the first (least recently used) out
        assert client.post(f"/v1/sessions/{second}/prompts", json={"points": [[60.5, 60.5]]}).status_code == 200
    assert client.get(f"/v1/sessions/{first}").status_code == 404
    assert client.get(f"/v1/sessions/{second}").status_code == 200
    assert client.get("/healthz").json()["memory"]["sessions_bytes"] <= 60_000


def test_session_mask_prompts_are_kept_as_one_union_and_capped(app, client, ids, ref, scenes):
    """Mask rounds on one object: the model sees their union (as before), but the session stores one RLE,
    so a round decodes two masks however many were sent; the 33rd mask prompt is refused."""
    from seem.server.routes.sessions import MAX_OBJECT_MASKS

    s = scenes[0]
    a, b = _objects(s)
    sid = client.post("/v1/sessions", json={"image_id": ids[0]}).json()["session_id"]
    _on(ref, s.image)
    first = ref.predict(masks=s.masks[a][None])
    _same(_round(client, sid, mask=mask_to_rle(s.masks[a]))["objects"][0], first)
    st = _round(client, sid, mask=mask_to_rle(s.masks[b]))
    _same(st["objects"][0], ref.predict(masks=(s.masks[a] | s.masks[b])[None], memory=first))
    obj = app.state.seem.sessions.get(sid).state.objects[0]
    assert len(obj.masks) == 1 and obj.num_masks == 2
    assert np.array_equal(rle_to_mask(obj.masks[0]), s.masks[a] | s.masks[b])
    for _ in range(MAX_OBJECT_MASKS - 2):
        _round(client, sid, mask=mask_to_rle(s.masks[a]))
    r = client.post(f"/v1/sessions/{sid}/prompts", json={"mask": mask_to_rle(s.masks[b])})
    assert r.status_code == 422 and f"at most {MAX_OBJECT_MASKS} mask prompts" in r.json()["detail"]


def test_sessions_are_isolated(client, ids, ref, scenes):
    sids = [client.post("/v1/sessions", json={"image_id": i}).json()["session_id"] for i in ids]
    pt = _inside(scenes[0].masks[_objects(scenes[0])[0]])
    st0 = _round(client, sids[0], points=[pt])
    st1 = _round(client, sids[1], points=[pt])
    e0 = _on(ref, scenes[0].image).predict(points=[pt])
    e1 = _on(ref, scenes[1].image).predict(points=[pt])
    _same(st0["objects"][0], e0)
    _same(st1["objects"][0], e1)
    assert not np.array_equal(e0.masks, e1.masks)
    client.post(f"/v1/sessions/{sids[0]}/undo")
    assert client.get(f"/v1/sessions/{sids[0]}").json()["objects"] == []
    _same(client.get(f"/v1/sessions/{sids[1]}").json()["objects"][0], e1)


def test_concurrent_sessions(client, ids, ref, scenes):
    expected = {}
    for k, s in enumerate(scenes):
        pt = _inside(s.masks[_objects(s)[0]])
        expected[k] = (pt, _on(ref, s.image).predict(points=[pt]).masks[0])
    errors: list[str] = []

    def work(k: int) -> None:
        try:
            sid = client.post("/v1/sessions", json={"image_id": ids[k]}).json()["session_id"]
            st = _round(client, sid, points=[expected[k][0]])
            if not np.array_equal(_mask(st["objects"][0]), expected[k][1]):
                errors.append(f"session on image {k}: wrong mask")
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i % 2,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_session_ttl_and_limits(app, client, ids, monkeypatch):
    sessions = app.state.seem.sessions
    now = [1000.0]
    monkeypatch.setattr(sessions, "clock", lambda: now[0])
    sid = client.post("/v1/sessions", json={"image_id": ids[0]}).json()["session_id"]
    now[0] += sessions.ttl_s - 1
    assert client.get(f"/v1/sessions/{sid}").status_code == 200  # touching restarts the idle timer
    now[0] += sessions.ttl_s + 1
    r = client.get(f"/v1/sessions/{sid}")
    assert r.status_code == 404 and "expired" in r.json()["detail"]

    import seem.server.routes.sessions as server_app

    monkeypatch.setattr(server_app, "MAX_OBJECTS", 2)
    sid = client.post("/v1/sessions", json={"image_id": ids[0]}).json()["session_id"]
    _round(client, sid, points=[[10.5, 10.5]])
    _round(client, sid, new_object=True, points=[[100.5, 100.5]])
    r = client.post(f"/v1/sessions/{sid}/prompts", json={"new_object": True, "points": [[50.5, 50.5]]})
    assert r.status_code == 422 and "at most 2 objects" in r.json()["detail"]
    r = client.post(f"/v1/sessions/{sid}/prompts", json={"object": 5, "points": [[50.5, 50.5]]})
    assert r.status_code == 422 and "object" in r.json()["detail"]


def test_image_cache_is_bounded(predictor, pngs):
    app = create_app(predictor, max_images=1)
    client = TestClient(app)
    a = client.post("/v1/images", files={"file": ("a.png", pngs[0], "image/png")}).json()["image_id"]
    sid = client.post("/v1/sessions", json={"image_id": a}).json()["session_id"]
    b = client.post("/v1/images", files={"file": ("b.png", pngs[1], "image/png")}).json()["image_id"]
    assert len(app.state.seem.images) == 1
    r = client.post("/v1/predict", json={"image_id": a, "points": [[10, 10]]})
    assert r.status_code == 404 and "upload it again" in r.json()["detail"]
    assert client.post("/v1/predict", json={"image_id": b, "points": [[10, 10]]}).status_code == 200
    assert _round(client, sid, points=[[10, 10]])["image_id"] == a  # a session keeps its image

    import torch

    from seem.server.store import ImageEntry, ImageStore

    def fake(key: str) -> ImageEntry:  # 400 bytes of features + 12 bytes of pixels
        t = torch.zeros(100)
        return ImageEntry(key, np.zeros((2, 2, 3), np.uint8), None, [t, t[:10]])

    def fail():
        raise RuntimeError("boom")

    store = ImageStore(max_images=10, budget_bytes=1000)
    for key in "abc":
        entry, created = store.add_or_get(key, lambda k=key: fake(k))
        assert created and entry.nbytes == 412  # a view of a tensor is not counted twice
    assert len(store) == 2 and "a" not in store and store.total_bytes == 824
    assert store.add_or_get("c", lambda: pytest.fail("encoded again")) == (store.get("c"), False)
    tiny = ImageStore(max_images=10, budget_bytes=1)
    tiny.add_or_get("x", lambda: fake("x"))
    tiny.add_or_get("y", lambda: fake("y"))
    assert len(tiny) == 1 and "y" in tiny  # the newest image always stays
    with pytest.raises(RuntimeError):
        tiny.add_or_get("z", fail)
    assert "z" not in tiny and not tiny._pending


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_uploads(predictor, client, pngs):
    r = client.post("/v1/images", files={"file": ("x.png", b"this is not an image", "image/png")})
    assert r.status_code == 422 and "not an image" in r.json()["detail"]
    r = client.post("/v1/images", files={"file": ("x.png", pngs[0][: len(pngs[0]) // 2], "image/png")})
    assert r.status_code == 422 and ("truncated" in r.json()["detail"] or "corrupt" in r.json()["detail"])
    r = client.post("/v1/images", json={"data": "***not base64***"})
    assert r.status_code == 422 and "base64" in r.json()["detail"]
    r = client.post("/v1/images", json={"path": "/etc/passwd"})
    assert r.status_code == 422 and "path" in r.json()["detail"]
    r = client.post("/v1/images", files={"other": ("x.png", pngs[0], "image/png")})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    r = client.post("/v1/images", content=pngs[0], headers={"content-type": "image/png"})
    assert r.status_code == 415

    small = TestClient(create_app(predictor, max_upload_bytes=1000, warm=False))
    r = small.post("/v1/images", files={"file": ("x.png", pngs[0], "image/png")})
    assert r.status_code == 413 and "1,000-byte limit" in r.json()["detail"]
    r = small.post("/v1/images", content=b"0" * (3 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "request body" in r.json()["detail"]
    few = TestClient(create_app(predictor, max_pixels=10_000, warm=False))
    r = few.post("/v1/images", files={"file": ("x.png", pngs[0], "image/png")})
    assert r.status_code == 413 and "max_pixels" in r.json()["detail"]


@pytest.mark.parametrize("body, status, words", [
    ({"points": [[300, 10]]}, 422, ["points[0]", "outside the image"]),
    ({"points": [[10, -1]]}, 422, ["points[0]", "outside"]),
    ({"boxes": [[10, 10, 400, 20]]}, 422, ["boxes[0]", "outside"]),
    ({"boxes": [[50, 50, 10, 10]]}, 422, ["boxes[0]", "x0 < x1"]),
    ({"points": [[1.0, 2.0]] * 513}, 422, ["points", "512"]),
    ({"points": [[1.0, 2.0]], "point_labels": [1, 0]}, 422, ["point_labels"]),
    ({"points": [[1.0, 2.0]], "point_labels": [2]}, 422, ["point_labels"]),
    ({"points": [[1.0]]}, 422, ["points.0"]),
    ({"scribbles": [[]]}, 422, ["scribbles.0"]),
    ({"scribbles": []}, 422, ["scribbles"]),
    ({"polygons": [[[1, 1], [2, 2]]]}, 422, ["polygons.0"]),
    ({"polygons": [[[1, 1]] * 10_001]}, 422, ["polygons.0", "10000"]),
    ({"masks": [{"size": [10, 10], "counts": "0"}]}, 422, ["masks[0]", "does not match"]),
    ({"masks": [{"size": [256, 256], "counts": [65536]}]}, 422, ["masks[0]", "empty"]),
    ({"text": "a very long phrase " * 30}, 422, ["77"]),
    ({"text": ""}, 422, ["text"]),
    ({"text": "x" * 5000}, 422, ["text"]),
    ({}, 422, ["no prompt"]),
    ({"points": [[1, 2]], "bogus": 1}, 422, ["bogus"]),
    ({"image_id": "nope", "points": [[1, 2]]}, 404, ["unknown image"]),
    ({"reference": {"image_id": "nope", "polygon": [[1, 1], [5, 1], [5, 5]]}}, 404, ["unknown image"]),
    ({"reference": {"image_id": "x"}}, 422, ["reference"]),
])
def test_bad_predict_requests(client, ids, body, status, words):
    r = client.post("/v1/predict", json={"image_id": ids[0], **body})
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["detail"], (word, r.json()["detail"])


def test_bad_values_are_rejected_not_500(client, ids):
    r = client.post("/v1/predict", content=b'{"image_id": "%s", "points": [[NaN, 1]]}' % ids[0].encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422  # NaN is not JSON; a lenient parser's NaN is refused by the model (finite floats)
    r = client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "vocabulary": "/etc/passwd"})
    assert r.status_code == 422 and "vocabulary" in r.json()["detail"]
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "vocabulary": ["cat", "Cat"]})
    assert r.status_code == 422 and "duplicate" in r.json()["detail"]
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "kind": "everything"})
    assert r.status_code == 422 and "kind" in r.json()["detail"]
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "vocabulary": ["cat"], "text_grounding": True})
    assert r.status_code == 422 and "applies to kind 'semantic' only" in r.json()["detail"]
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "kind": "semantic", "text_grounding": True,
                                          "vocabulary": [f"class {i}" for i in range(33)]})
    assert r.status_code == 422 and "at most 32 names" in r.json()["detail"]
    r = client.post("/v1/cvat/interactor", json={"image_id": ids[0], "neg_points": [[3, 3]]})
    assert r.status_code == 422 and "pos_points" in r.json()["detail"]
    r = client.post("/v1/cvat/interactor", json={"image_id": ids[0], "pos_points": [[3, 3000]]})
    assert r.status_code == 422 and "pos_points[0]" in r.json()["detail"]


def test_bad_session_requests(client, ids):
    assert client.post("/v1/sessions", json={"image_id": "nope"}).status_code == 404
    for path in ("prompts", "undo", "redo", "reset"):
        r = client.post(f"/v1/sessions/unknown/{path}", json={"points": [[1, 1]]})
        assert r.status_code == 404 and "session" in r.json()["detail"]
    sid = client.post("/v1/sessions", json={"image_id": ids[0]}).json()["session_id"]
    for body, words in [
        ({"scribble": [[]]}, ["scribble.0"]),
        ({"scribble": []}, ["scribble"]),
        ({"points": [[1.0, 2.0]] * 513}, ["points", "512"]),
        ({"points": [[999, 1]]}, ["points[0]", "outside"]),
        ({"scribble": [[[1, 1], [999, 1]]]}, ["scribble[0][1]", "outside"]),
        ({"polygon": [[1, 1], [2, 1], [999, 2]]}, ["polygon[2]", "outside"]),
        ({"box": [1, 1, 999, 5]}, ["box[1]", "outside"]),
        ({"text": "a very long phrase " * 30}, ["77"]),
        ({"object": 0, "new_object": True, "points": [[1, 1]]}, ["object"]),
        ({"object": 0, "points": [[1, 1]]}, ["object"]),
        ({"new_object": True}, ["no prompt"]),
        ({"mask": {"size": [256, 256], "counts": "garbage!"}}, ["mask"]),
    ]:
        r = client.post(f"/v1/sessions/{sid}/prompts", json=body)
        assert r.status_code == 422, (body, r.text)
        for word in words:
            assert word in r.json()["detail"], (body, word, r.json()["detail"])
    st = client.get(f"/v1/sessions/{sid}").json()
    assert st["objects"] == [] and not st["can_undo"]
    r = client.post(f"/v1/sessions/{sid}/undo")
    assert r.status_code == 409 and "nothing to undo" in r.json()["detail"]


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_serve(monkeypatch, predictor):
    from seem import cli

    args = cli.build_parser().parse_args(["serve"])
    assert (args.command, args.host, args.port, args.precision, args.model) == ("serve", "127.0.0.1", 7860, "fp32", None)
    import uvicorn

    import seem.cli.common

    calls = {}
    monkeypatch.setattr(seem.cli.common, "load_predictor", lambda a: predictor)
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: calls.update(app=app, host=host, port=port))
    assert cli.main(["serve", "--port", "9999", "--session-ttl", "60"]) == 0
    assert calls["host"] == "127.0.0.1" and calls["port"] == 9999
    assert calls["app"].state.seem.sessions.ttl_s == 60
    assert cli.main(["serve", "--precision", "fp16"]) == 2


def test_hostile_inputs_are_refused_cleanly(client, ids, scenes):
    h, w = scenes[0].image.shape[:2]
    # run lengths that wrap an int64 sum back to H*W (once crashed the process in np.repeat)
    huge = [h * w] + [2**62] * 4
    for counts in (huge, [10**30, 0], [h * w - 1, 2**64 - h * w + 1]):
        r = client.post("/v1/predict", json={"image_id": ids[0], "masks": [{"size": [h, w], "counts": counts}]})
        assert r.status_code == 422 and "run lengths" in r.json()["detail"], r.text
    r = client.post("/v1/images", json={"data": "data:image/png;base64"})
    assert r.status_code == 422 and "comma" in r.json()["detail"]
    zigzag = [[float(i % w), float((i * 7) % h)] for i in range(4_001)]
    r = client.post("/v1/predict", json={"image_id": ids[0], "polygons": [zigzag]})
    assert r.status_code == 422 and "vertices" in r.json()["detail"]
    r = client.post("/v1/panoptic", json={"image_id": ids[0], "vocabulary": [f"class {i}" for i in range(257)]})
    assert r.status_code == 422 and "vocabulary" in r.json()["detail"]


def test_session_objects_cannot_accumulate_unbounded_strokes(client, ids, scenes):
    h, w = scenes[0].image.shape[:2]
    sid = client.post("/v1/sessions", json={"image_id": ids[0]}).json()["session_id"]
    stroke = [[float(5 + i % (w - 10)), float(5 + (i // (w - 10)) % (h - 10))] for i in range(3_900)]
    status = []
    for _ in range(5):  # 4 x 3,900 vertices fit the 16,000 per object; the fifth round does not
        status.append(client.post(f"/v1/sessions/{sid}/prompts", json={"scribble": [stroke]}).status_code)
    assert status == [200, 200, 200, 200, 422]


def test_request_vocabularies_stay_in_memory(model, scenes, tmp_path):
    predictor = SeemPredictor(model, shorter_side=256, max_size=None, vocabulary_cache_dir=str(tmp_path))
    client = TestClient(create_app(predictor))
    before = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())  # the model's own vocabulary (warm-up)
    image_id = client.post("/v1/images", files={"file": ("s.png", _png(scenes[0].image), "image/png")}).json()["image_id"]
    for vocab in (["cat"], ["dog"], ["sky", "grass"]):
        assert client.post("/v1/panoptic", json={"image_id": image_id, "vocabulary": vocab}).status_code == 200
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == before and before


def test_allowed_hosts_refuse_other_host_headers(predictor):
    client = TestClient(create_app(predictor, allowed_hosts=["127.0.0.1", "localhost"], warm=False),
                        base_url="http://127.0.0.1")
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400


def test_rle_strings_are_bounded_by_the_image_size_before_parsing(client, ids):
    """Compressed RLE from clients: parsed as pycocotools does (every run, signs, deltas), but an over-long
    string is refused from its length alone, before any parsing; both through /v1/predict too."""
    from pycocotools import mask as mask_utils

    from seem.server.convert import decode_rle, max_rle_chars

    rng = np.random.default_rng(0)
    for t in range(60):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        m = rng.random((h, w)) < rng.random()
        m[rng.integers(0, h), rng.integers(0, w)] = True
        counts = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        assert len(counts) <= max_rle_chars((h, w))
        assert np.array_equal(decode_rle({"size": [h, w], "counts": counts}, (h, w), "m"), m), t
    for junk, words in (("0" * (max_rle_chars((256, 256)) + 1), "no mask of 256x256 pixels needs more than"),
                        ("\u00e9\u00e9", "non-ASCII"), ("0 0", "character ' '"), ("o", "malformed run")):
        with pytest.raises(PromptError, match=words):
            decode_rle({"size": [256, 256], "counts": junk}, (256, 256), "masks[0]")
    huge = {"size": [256, 256], "counts": "1" * 2_000_000}
    r = client.post("/v1/predict", json={"image_id": ids[0], "masks": [huge]})
    assert r.status_code == 422 and "needs more than" in r.json()["detail"], r.text


def test_session_undo_depth_follows_max_history_including_zero():
    """``max_history`` bounds the undo stack exactly; 0 keeps no undo steps (a bare ``[:-0]`` slice kept all)."""
    from seem.server.store import Session, SessionStore, Snapshot

    for depth in (0, 1, 3):
        s = Session("s", None, max_history=depth)  # type: ignore[arg-type]
        for k in range(6):
            s.commit(Snapshot(current=k))
        assert len(s.undo_stack) == depth and s.state.current == 5
        assert [u.current for u in s.undo_stack] == list(range(5 - depth, 5))
        for k in reversed(range(5 - depth, 5)):
            assert s.undo() and s.state.current == k
        assert not s.undo()
    with pytest.raises(ValueError, match="max_history"):
        SessionStore(max_history=-1)


def test_rle_run_count_is_checked_before_int64_arrays(client, ids):
    """A string of terminators within the character limit of a large image still cannot describe more runs
    than pixels + 1: refused from a count over its bytes, before the int64 working arrays exist."""
    from seem.server.convert import decode_rle, max_rle_chars

    h, w = 40, 50
    assert h * w + 2 <= max_rle_chars((h, w))
    with pytest.raises(PromptError, match=r"2,002 runs; a mask of this size has at most 2,001"):
        decode_rle({"size": [h, w], "counts": "1" * (h * w + 2)}, (h, w), "masks[0]")
    r = client.post("/v1/predict", json={"image_id": ids[0], "masks": [{"size": [256, 256],
                                                                         "counts": "1" * (256 * 256 + 2)}]})
    assert r.status_code == 422 and "65,538 runs" in r.json()["detail"], r.text
