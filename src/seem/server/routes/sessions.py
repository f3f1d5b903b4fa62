"""``/v1/sessions``: multi-round interactive segmentation of several objects, with undo / redo / reset.

Each round adds prompts to one object; that object's previous mask goes back to the model as the memory
prompt (SEEM paper §3.1, memory prompts), and every object's current mask is returned.
"""

from __future__ import annotations

import dataclasses
import time

from fastapi import FastAPI, HTTPException, Response

from seem import io as seem_io
from seem.errors import PromptError
from seem.server import convert
from seem.server.routes.common import ERRORS, elapsed_ms
from seem.server.schemas import (
    MAX_OBJECTS,
    MAX_POINTS,
    MAX_TOTAL_VERTICES,
    PromptRound,
    SessionCreate,
    SessionInfo,
    SessionState,
)
from seem.server.state import ServerState
from seem.server.store import ImageEntry, ObjectState, Session, Snapshot

MAX_OBJECT_POINTS = 4 * MAX_POINTS  # clicks accumulated by one session object
MAX_OBJECT_VERTICES = 4 * MAX_TOTAL_VERTICES  # scribble + polygon vertices accumulated by one session object
MAX_OBJECT_SHAPES = 64  # strokes + polygons accumulated by one session object
MAX_OBJECT_MASKS = 32  # mask prompts accumulated by one session object (kept as their union: one RLE)


def session_state(session: Session, latency_ms: float | None = None) -> dict:
    """The :class:`~seem.server.schemas.SessionState` response of ``session``."""
    snap, entry = session.state, session.image
    objects = []
    for i, o in enumerate(snap.objects):
        assert o.encoded is not None  # prompt_round commits every object together with its encoded mask
        objects.append(dict(object=i, num_points=len(o.points), prompts=o.prompt_types(), **o.encoded))
    return dict(session_id=session.session_id, image_id=entry.image_id, width=entry.width, height=entry.height,
                current_object=snap.current, objects=objects, can_undo=bool(session.undo_stack),
                can_redo=bool(session.redo_stack), latency_ms=latency_ms)


def merge_round(state: ServerState, old: ObjectState, req: PromptRound, entry: ImageEntry) -> ObjectState:
    """``old`` plus the prompts of one round (validated against the image), without a prediction."""
    changes: dict = {"memory": None, "encoded": None}
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
        if old.num_masks >= MAX_OBJECT_MASKS:
            raise PromptError(f"mask: an object accumulates at most {MAX_OBJECT_MASKS} mask prompts; start a new object")
        size = (entry.height, entry.width)
        union = convert.decode_rle(req.mask, size, "mask")
        if old.masks:  # the union so far: one RLE, so a round decodes two masks however many were sent
            union |= convert.decode_rle(old.masks[0], size, "mask")
        changes["masks"] = (seem_io.mask_to_rle(union),)
        changes["num_masks"] = old.num_masks + 1
    if req.text is not None:
        changes["text"] = req.text
    if req.reference is not None:
        changes["reference"] = state.reference(req.reference, "reference")
    new = dataclasses.replace(old, **changes)
    if new.reference is not None and (new.points or new.box is not None or new.scribbles or new.polygons or new.masks):
        raise PromptError("reference: a referred region cannot be combined with points, box, scribble, polygon or "
                          "mask on the same object; start another object with new_object: true")
    return new


def prompt_round(state: ServerState, session: Session, req: PromptRound) -> None:
    """Apply one round of ``req`` to ``session`` (caller holds ``session.lock``): pick or add the target
    object, merge its prompts, predict with its previous mask as memory, commit the new snapshot."""
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
        # a snapshot with objects names its current one: prompt_round, the only commit of objects, sets it
        assert snap.current is not None
        target = snap.current
    old = objects[target]
    new = merge_round(state, old, req, entry)
    kw = convert.object_kwargs(new, entry)
    memory = old.memory if old.memory is not None and convert.has_visual(kw) else None
    pred = state.compute(state.view(entry).predict, **kw, memory=memory)
    encoded = convert.encode_mask(pred.masks[0], pred.scores[0], pred.labels[0])
    # undo keeps every snapshot: only the low-res logits (the next round's memory) and the RLE, never the
    # full-size mask (48 MB per round on a 7000 x 7000 image)
    objects[target] = dataclasses.replace(new, memory=pred.logits_lowres.detach().clone(), encoded=encoded)
    session.commit(Snapshot(tuple(objects), target))
    state.sessions.enforce_budget(keep=session)


def register(app: FastAPI, state: ServerState) -> None:
    """Add the session routes: create, prompts, undo, redo, reset, get, delete."""

    @app.post("/v1/sessions", response_model=SessionInfo, responses=ERRORS, tags=["sessions"])
    def create_session(req: SessionCreate):
        """An interactive session on an uploaded image (expires after the idle TTL)."""
        entry = state.image(req.image_id)
        session = state.sessions.create(entry)
        return {"session_id": session.session_id, "image_id": entry.image_id, "width": entry.width,
                "height": entry.height}

    @app.post("/v1/sessions/{session_id}/prompts", response_model=SessionState, responses=ERRORS, tags=["sessions"])
    def add_prompts(session_id: str, req: PromptRound):
        """One round on one object: its prompts accumulate, and its previous mask is sent as ``memory``
        (SEEM's multi-round interaction). Returns every object's current mask."""
        session = state.session(session_id)
        with session.lock:
            t0 = time.perf_counter()
            prompt_round(state, session, req)
            return session_state(session, elapsed_ms(t0))

    def _history(session_id: str, action: str) -> dict:
        session = state.session(session_id)
        with session.lock:
            if action == "reset":
                session.reset()
            elif not getattr(session, action)():
                raise HTTPException(409, f"nothing to {action}")
            return session_state(session)

    @app.post("/v1/sessions/{session_id}/undo", response_model=SessionState, responses=ERRORS, tags=["sessions"])
    def undo(session_id: str):
        """Back to the state before the last round (or reset); 409 when there is none."""
        return _history(session_id, "undo")

    @app.post("/v1/sessions/{session_id}/redo", response_model=SessionState, responses=ERRORS, tags=["sessions"])
    def redo(session_id: str):
        """Re-apply the last undone step; 409 when there is none (a new round clears redo)."""
        return _history(session_id, "redo")

    @app.post("/v1/sessions/{session_id}/reset", response_model=SessionState, responses=ERRORS, tags=["sessions"])
    def reset(session_id: str):
        """Drop every object (undoable)."""
        return _history(session_id, "reset")

    @app.get("/v1/sessions/{session_id}", response_model=SessionState, responses=ERRORS, tags=["sessions"])
    def get_session(session_id: str):
        session = state.session(session_id)
        with session.lock:
            return session_state(session)

    @app.delete("/v1/sessions/{session_id}", status_code=204, responses=ERRORS, tags=["sessions"])
    def delete_session(session_id: str):
        if not state.sessions.delete(session_id):
            raise HTTPException(404, f"session_id {session_id[:80]!r}: unknown or expired session")
        return Response(status_code=204)
