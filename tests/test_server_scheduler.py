"""The server's model-call scheduler: clicks before queued bulk work, long jobs in short slices."""

from __future__ import annotations

import threading

import pytest
import torch

pytest.importorskip("fastapi")

from seem import from_pretrained
from seem.server.scheduler import BULK, INTERACTIVE, PriorityExecutor, embed_vocabulary_sliced


def test_interactive_calls_jump_the_bulk_queue_and_errors_reach_the_caller():
    executor = PriorityExecutor(1)
    started, release, order = threading.Event(), threading.Event(), []

    def long_job():
        started.set()
        release.wait(10)
        order.append("running bulk")

    first = executor.submit(long_job, BULK)
    assert started.wait(10)  # the model thread is busy: everything below queues
    queued = [executor.submit(lambda i=i: order.append(f"bulk {i}"), BULK) for i in range(3)]
    click = executor.submit(lambda: order.append("click"), INTERACTIVE)
    assert executor.pending() == 4
    release.set()
    for f in (first, *queued, click):
        f.result(10)
    # the running call is not interrupted; then the click, then the bulk calls in arrival order
    assert order == ["running bulk", "click", "bulk 0", "bulk 1", "bulk 2"]
    with pytest.raises(ZeroDivisionError):
        executor.submit(lambda: 1 / 0).result(10)
    assert executor.submit(lambda: "still serving").result(10) == "still serving"


def test_sliced_vocabulary_embeddings_equal_one_call():
    model = from_pretrained()
    names = ["person", "a very long name of a red double-decker bus", "tree", "road", "sky", "car", "dog", "cat",
             "traffic light", "bicycle", "background"]
    calls = []

    def run(fn):
        calls.append(1)
        with torch.inference_mode():
            return fn()

    with torch.inference_mode():
        whole = model.embed_vocabulary(names)
    sliced = embed_vocabulary_sliced(model, names, run, slice_size=4)
    assert len(calls) == 3 and sliced.shape == whole.shape
    assert torch.allclose(sliced, whole, atol=1e-5)


def test_a_click_is_answered_while_a_new_vocabulary_is_still_being_embedded(monkeypatch):
    """A panoptic request with a new 256-name vocabulary used to hold the model thread for the whole
    embedding; now it is embedded 8 names per call and a click sent meanwhile is served between slices."""
    import numpy as np
    from fastapi.testclient import TestClient

    from seem import SeemPredictor
    from seem.server import create_app

    predictor = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    app = create_app(predictor, warm=False)
    client = TestClient(app)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[16:48, 16:48] = 200
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    image_id = client.post("/v1/images", files={"file": ("x.png", buf.getvalue(), "image/png")}).json()["image_id"]
    model, slices, first_slice = predictor.model, [], threading.Event()
    embed = model.embed_vocabulary

    def slow_embed(names):
        first_slice.set()
        out = embed(names)
        if len(names) <= 8:  # a slice, not the model's own 165-name vocabulary (the click's labels)
            slices.append(len(names))
        return out

    monkeypatch.setattr(model, "embed_vocabulary", slow_embed)
    names = [f"thing number {i}" for i in range(256)]
    done = {}
    worker = threading.Thread(target=lambda: done.setdefault("r", client.post(
        "/v1/panoptic", json={"image_id": image_id, "vocabulary": names})))
    worker.start()
    assert first_slice.wait(60)
    click = client.post("/v1/predict", json={"image_id": image_id, "points": [[32.5, 32.5]]})
    slices_at_click = len(slices)
    worker.join(120)
    assert click.status_code == 200 and done["r"].status_code == 200, done["r"].text
    total = -(-257 // 8)  # the names and "background", 8 per call
    assert len(slices) == total and slices_at_click < total - 2, (slices_at_click, total)
