"""``POST /v1/predict``: one stateless prediction with any mix of prompts on an uploaded image."""

from __future__ import annotations

import time

import numpy as np
from fastapi import FastAPI

from seem.prompts import Prompts
from seem.server import convert
from seem.server.routes.common import ERRORS, elapsed_ms
from seem.server.schemas import PredictRequest, PredictResponse
from seem.server.state import ServerState
from seem.server.store import ImageEntry


def request_prompts(req: PredictRequest, entry: ImageEntry, state: ServerState) -> Prompts:
    """The :class:`~seem.prompts.Prompts` of ``req``: each prompt checked against the image here, before the
    request waits for the model thread (``PromptError`` naming the field otherwise)."""
    kw: dict = {}
    if req.points is not None:
        convert.check_inside(req.points, entry, "points")
        kw["points"] = np.asarray(req.points, dtype=np.float64)
        if req.point_labels is not None:
            kw["point_labels"] = np.asarray(req.point_labels, dtype=np.int64)
    if req.boxes is not None:
        for i, box in enumerate(req.boxes):
            convert.check_box(box, entry, f"boxes[{i}]")
        kw["boxes"] = np.asarray(req.boxes, dtype=np.float64)
    for name in ("scribbles", "polygons"):
        shapes = getattr(req, name)
        if shapes is not None:
            for i, shape in enumerate(shapes):
                convert.check_inside(shape, entry, f"{name}[{i}]")
            kw[name] = [np.asarray(s, dtype=np.float64) for s in shapes]
    if req.masks is not None:
        kw["masks"] = np.stack([convert.decode_rle(m, (entry.height, entry.width), f"masks[{i}]")
                                for i, m in enumerate(req.masks)])
    if req.text is not None:
        kw["text"] = req.text
    if req.reference is not None:
        kw["reference"] = state.reference(req.reference, "reference")
    return Prompts(**kw)


def register(app: FastAPI, state: ServerState) -> None:
    """Add ``POST /v1/predict``."""

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, tags=["predict"])
    def predict(req: PredictRequest):
        """Stateless prediction, the arguments of ``SeemPredictor.predict`` (see the request schema)."""
        entry = state.image(req.image_id)
        t0 = time.perf_counter()
        prompts = request_prompts(req, entry, state)
        pred = state.compute(state.view(entry).predict, prompts, joint_prompts=req.joint_prompts)
        return {"masks": convert.encode_prediction(pred), "latency_ms": elapsed_ms(t0)}
