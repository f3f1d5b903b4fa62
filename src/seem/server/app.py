"""The routes of ``seem serve`` (built by :func:`seem.server.create_app`).

Concurrency: sync routes run in uvicorn's thread pool, each on its own predictor view (see
:mod:`seem.server.state`); requests on one session are serialised by the session's lock, under
``torch.inference_mode()``. Coordinates everywhere: pixels of the original image, x right, y down (see
:mod:`seem.server.schemas`). Errors: 404 unknown image / session, 409 nothing to undo / redo, 413 too large,
415 wrong upload content type, 422 invalid input (``{"detail": message}``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from seem import io as seem_io
from seem.errors import PromptError

from . import convert
from .middleware import validation_detail
from .schemas import (MAX_OBJECTS, MAX_POINTS, MAX_TOTAL_VERTICES, CvatRequest, CvatResponse, ErrorOut, Health,
                      ImageInfo, ImageUpload, ModelInfo, PanopticRequest, PanopticResponse, PredictRequest, PredictResponse, PromptRound,
                      SessionCreate, SessionInfo, SessionState)
from .state import ServerState
from .store import ImageEntry, ObjectState, Session, Snapshot

STATIC_DIR = Path(__file__).parent / "static"
MAX_OBJECT_POINTS = 4 * MAX_POINTS  # clicks accumulated by one session object
MAX_OBJECT_VERTICES = 4 * MAX_TOTAL_VERTICES  # scribble + polygon vertices accumulated by one session object
MAX_OBJECT_SHAPES = 64  # strokes + polygons accumulated by one session object
_ERRORS = {c: {"model": ErrorOut} for c in (404, 409, 413, 422)}


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


def _session_state(session: Session, latency_ms: float | None = None) -> dict:
    snap, entry = session.state, session.image
    objects = [dict(object=i, num_points=len(o.points), prompts=o.prompt_types(), **o.encoded)
               for i, o in enumerate(snap.objects)]
    return dict(session_id=session.session_id, image_id=entry.image_id, width=entry.width, height=entry.height,
                current_object=snap.current, objects=objects, can_undo=bool(session.undo_stack),
                can_redo=bool(session.redo_stack), latency_ms=latency_ms)


def _merge_round(state: ServerState, old: ObjectState, req: PromptRound, entry: ImageEntry) -> ObjectState:
    """``old`` plus the prompts of one round (validated against the image), without a prediction."""
    changes: dict = {"prediction": None, "encoded": None}
    if req.points is not None:
        convert.check_inside(req.points, entry, "points")
        labels = req.point_labels if req.point_labels is not None else [1] * len(req.points)
        changes["points"] = old.points + tuple((float(x), float(y)) for x, y in req.points)
        changes["labels"] = old.labels + tuple(int(v) for v in labels)
        if len(changes["points"]) > MAX_OBJECT_POINTS:
            raise PromptError(f"points: an object accumulates at most {MAX_OBJECT_POINTS} clicks; start a new object")
    if req.box is not None:
        convert.check_box(req.box, entry, "box")
        changes["box"] = tuple(float(v) for v in req.box)
    if req.scribble is not None:
        for i, line in enumerate(req.scribble):
            convert.check_inside(line, entry, f"scribble[{i}]")
        changes["scribbles"] = old.scribbles + tuple(tuple((float(x), float(y)) for x, y in line) for line in req.scribble)
    if req.polygon is not None:
        convert.polygon_mask(req.polygon, entry, "polygon")
        changes["polygons"] = old.polygons + (tuple((float(x), float(y)) for x, y in req.polygon),)
    shapes = changes.get("scribbles", old.scribbles) + changes.get("polygons", old.polygons)
    if sum(len(shape) for shape in shapes) > MAX_OBJECT_VERTICES or len(shapes) > MAX_OBJECT_SHAPES:
        raise PromptError(f"scribble/polygon: an object accumulates at most {MAX_OBJECT_SHAPES} strokes/polygons and "
                          f"{MAX_OBJECT_VERTICES} vertices (each round redraws them all); start a new object")
    if req.mask is not None:
        convert.decode_rle(req.mask, (entry.height, entry.width), "mask")
        changes["masks"] = old.masks + (req.mask.model_dump(),)
    if req.text is not None:
        changes["text"] = req.text
    if req.reference is not None:
        changes["reference"] = state.reference(req.reference, "reference")
    new = dataclasses.replace(old, **changes)
    if new.reference is not None and (new.points or new.box is not None or new.scribbles or new.polygons or new.masks):
        raise PromptError("reference: a referred region cannot be combined with points, box, scribble, polygon or "
                          "mask on the same object; start another object with new_object: true")
    return new


def register_routes(app: FastAPI, state: ServerState) -> None:  # noqa: C901 - one closure per route
    # -------------------------------------------------------------------------------------- images
    upload_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": ImageUpload.model_json_schema()}}}}

    @app.post("/v1/images", response_model=ImageInfo, responses=_ERRORS, openapi_extra=upload_body, tags=["images"])
    async def upload_image(request: Request):
        """Upload an image (multipart field ``file``, or JSON ``{"data": base64}``); it is encoded once and
        cached by the sha256 of its bytes (re-uploading the same bytes returns the same id, no encoding)."""
        ctype = request.headers.get("content-type", "").lower()
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            try:
                file = form.get("file")
                if file is None or isinstance(file, str):
                    raise HTTPException(422, "file: missing multipart file field 'file'")
                data = await file.read()
            finally:
                await form.close()
        elif ctype.startswith("application/json"):
            try:
                body = ImageUpload.model_validate_json(await request.body())
            except ValidationError as exc:
                errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]  # as FastAPI's own
                raise HTTPException(422, validation_detail(errors)[0]) from None
            text = body.data
            if text.startswith("data:"):
                if "," not in text:
                    raise HTTPException(422, "data: a data URI needs a comma before its base64 payload")
                text = text.split(",", 1)[1]
            try:
                data = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(422, "data: not valid base64") from None
        else:
            raise HTTPException(415, "send the image as multipart/form-data (field 'file') or JSON {\"data\": base64}")
        if not data:
            raise HTTPException(422, "file: the upload is empty (0 bytes)")
        entry, created = await run_in_threadpool(state.add_image, data)
        return {"image_id": entry.image_id, "width": entry.width, "height": entry.height, "cached": not created}

    # -------------------------------------------------------------------------------------- one-shot
    @app.post("/v1/predict", response_model=PredictResponse, responses=_ERRORS, tags=["predict"])
    def predict(req: PredictRequest):
        """Stateless prediction, the arguments of ``SeemPredictor.predict`` (see the request schema)."""
        entry = state.image(req.image_id)
        t0 = time.perf_counter()
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
        pred = state.compute(state.view(entry).predict, **kw, joint_prompts=req.joint_prompts)
        return {"masks": convert.encode_prediction(pred), "latency_ms": _ms(t0)}

    @app.post("/v1/panoptic", response_model=PanopticResponse, responses=_ERRORS, tags=["predict"])
    def panoptic(req: PanopticRequest):
        """Panoptic / semantic / instance segmentation of the whole image over a vocabulary."""
        from seem.outputs import panoptic_segments as _panoptic_segments
        from seem.vocabularies import COCO_PANOPTIC_CLASSES, check_vocabulary

        entry = state.image(req.image_id)
        t0 = time.perf_counter()
        if req.vocabulary is None:
            names = None
        elif req.vocabulary == "coco":
            names = list(COCO_PANOPTIC_CLASSES)
        else:
            names = list(check_vocabulary(req.vocabulary, "vocabulary"))
        view = state.view(entry)
        view._everything = entry.everything  # the object queries' decoder pass is shared by every request
        result = state.compute(view.segment_everything, vocabulary=names, kind=req.kind)
        entry.everything = view._everything
        _, masks, entries = _panoptic_segments(result, (entry.height, entry.width))
        segments = [dict(id=e["pixel_value"], label_id=e["label_id"], isthing=e.get("isthing"),
                         **convert.encode_mask(m, e["score"], e["label"])) for e, m in zip(entries, masks)]
        return {"kind": req.kind, "vocabulary_size": len(result.vocabulary), "segments": segments, "latency_ms": _ms(t0)}

    @app.post("/v1/cvat/interactor", response_model=CvatResponse, responses=_ERRORS, tags=["predict"])
    def cvat_interactor(req: CvatRequest):
        """CVAT-style interactor: clicks (+ optional box) of one object -> its largest polygon and mask."""
        entry = state.image(req.image_id)
        convert.check_inside(req.pos_points, entry, "pos_points")
        convert.check_inside(req.neg_points, entry, "neg_points")
        kw: dict = {}
        points = list(req.pos_points) + list(req.neg_points)
        if points:
            kw["points"] = np.asarray(points, dtype=np.float64)
            kw["point_labels"] = np.asarray([1] * len(req.pos_points) + [0] * len(req.neg_points), dtype=np.int64)
        if req.obj_bbox is not None:
            convert.check_box(req.obj_bbox, entry, "obj_bbox")
            kw["boxes"] = np.asarray([req.obj_bbox], dtype=np.float64)
        pred = state.compute(state.view(entry).predict, **kw)
        mask = pred.masks[0]
        return {"polygon": convert.largest_polygon(seem_io.mask_to_polygons(mask)), "mask": seem_io.mask_to_rle(mask)}

    # -------------------------------------------------------------------------------------- sessions
    @app.post("/v1/sessions", response_model=SessionInfo, responses=_ERRORS, tags=["sessions"])
    def create_session(req: SessionCreate):
        """An interactive session on an uploaded image (expires after the idle TTL)."""
        entry = state.image(req.image_id)
        session = state.sessions.create(entry)
        return {"session_id": session.session_id, "image_id": entry.image_id, "width": entry.width,
                "height": entry.height}

    @app.post("/v1/sessions/{session_id}/prompts", response_model=SessionState, responses=_ERRORS, tags=["sessions"])
    def add_prompts(session_id: str, req: PromptRound):
        """One round on one object: its prompts accumulate, and its previous mask is sent as ``memory``
        (SEEM's multi-round interaction). Returns every object's current mask."""
        session = state.session(session_id)
        with session.lock:
            t0 = time.perf_counter()
            entry, snap = session.image, session.state
            objects = list(snap.objects)
            if req.new_object or (req.object is None and not objects):
                if len(objects) >= MAX_OBJECTS:
                    raise PromptError(f"new_object: a session holds at most {MAX_OBJECTS} objects")
                target = len(objects)
                objects.append(ObjectState())
            elif req.object is not None:
                if req.object >= len(objects):
                    raise PromptError(f"object: {req.object} does not exist, the session has {len(objects)} object(s); "
                                      "send new_object: true to start another")
                target = req.object
            else:
                target = snap.current
            old = objects[target]
            new = _merge_round(state, old, req, entry)
            kw = convert.object_kwargs(new, entry)
            memory = old.prediction if old.prediction is not None and convert.has_visual(kw) else None
            pred = state.compute(state.view(entry).predict, **kw, memory=memory)
            encoded = convert.encode_mask(pred.masks[0], pred.scores[0], pred.labels[0])
            objects[target] = dataclasses.replace(new, prediction=pred, encoded=encoded)
            session.commit(Snapshot(tuple(objects), target))
            return _session_state(session, _ms(t0))

    def _history(session_id: str, action: str) -> dict:
        session = state.session(session_id)
        with session.lock:
            if action == "reset":
                session.reset()
            elif not getattr(session, action)():
                raise HTTPException(409, f"nothing to {action}")
            return _session_state(session)

    @app.post("/v1/sessions/{session_id}/undo", response_model=SessionState, responses=_ERRORS, tags=["sessions"])
    def undo(session_id: str):
        """Back to the state before the last round (or reset); 409 when there is none."""
        return _history(session_id, "undo")

    @app.post("/v1/sessions/{session_id}/redo", response_model=SessionState, responses=_ERRORS, tags=["sessions"])
    def redo(session_id: str):
        """Re-apply the last undone step; 409 when there is none (a new round clears redo)."""
        return _history(session_id, "redo")

    @app.post("/v1/sessions/{session_id}/reset", response_model=SessionState, responses=_ERRORS, tags=["sessions"])
    def reset(session_id: str):
        """Drop every object (undoable)."""
        return _history(session_id, "reset")

    @app.get("/v1/sessions/{session_id}", response_model=SessionState, responses=_ERRORS, tags=["sessions"])
    def get_session(session_id: str):
        session = state.session(session_id)
        with session.lock:
            return _session_state(session)

    @app.delete("/v1/sessions/{session_id}", status_code=204, responses=_ERRORS, tags=["sessions"])
    def delete_session(session_id: str):
        if not state.sessions.delete(session_id):
            raise HTTPException(404, f"session_id {session_id[:80]!r}: unknown or expired session")
        return Response(status_code=204)

    # -------------------------------------------------------------------------------------- info, page
    @app.get("/v1/models", response_model=ModelInfo, tags=["info"])
    def models():
        p = state.predictor
        cfg = p.model.config
        summary = {
            "backbone": cfg.backbone.name, "decoder_version": cfg.decoder.version,
            "hidden_dim": cfg.decoder.hidden_dim, "num_queries": cfg.decoder.num_queries,
            "decoder_layers": cfg.decoder.num_layers, "text_width": cfg.text.width, "text_layers": cfg.text.layers,
            "shorter_side": p.shorter_side, "max_size": p.max_size,
            "parameters": int(sum(t.numel() for t in p.model.parameters())),
            "limits": {"max_upload_bytes": state.limits.max_upload_bytes, "max_pixels": state.limits.max_pixels,
                       "max_points": MAX_POINTS, "max_objects": MAX_OBJECTS, "text_tokens": cfg.text.context_length},
        }
        return {"name": state.model_name, "precision": p.precision, "device": str(p.device),
                "vocabulary_size": len(p.vocabulary), "vocabulary": list(p.vocabulary), "config": summary}

    @app.get("/healthz", response_model=Health, tags=["info"])
    def healthz():
        return {"status": "ok", "images": len(state.images), "sessions": len(state.sessions)}

    @app.get("/", include_in_schema=False)
    def index():
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise HTTPException(404, "the web page is not installed (seem/server/static/index.html)")
        return FileResponse(page, media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
