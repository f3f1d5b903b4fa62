"""``POST /v1/panoptic``: panoptic / semantic / instance segmentation of a whole uploaded image."""

from __future__ import annotations

import time

from fastapi import FastAPI

from seem.server import convert
from seem.server.routes.common import ERRORS, elapsed_ms
from seem.server.schemas import PanopticRequest, PanopticResponse
from seem.server.state import ServerState


def register(app: FastAPI, state: ServerState) -> None:
    """Add ``POST /v1/panoptic``. The object queries' decoder pass of an image is kept on its cache entry and
    shared by every request on it (any vocabulary, any kind)."""

    @app.post("/v1/panoptic", response_model=PanopticResponse, responses=ERRORS, tags=["predict"])
    def panoptic(req: PanopticRequest):
        """Panoptic / semantic / instance segmentation of the whole image over a vocabulary."""
        from seem.grounded_semantic import add_text_grounding
        from seem.outputs import panoptic_segments as _panoptic_segments
        from seem.server.scheduler import embed_vocabulary_sliced
        from seem.vocabularies import COCO_PANOPTIC_CLASSES, check_vocabulary

        entry = state.image(req.image_id)
        t0 = time.perf_counter()
        if req.vocabulary is None:
            names = None
        elif req.vocabulary == "coco":
            names = list(COCO_PANOPTIC_CLASSES)
        else:
            names = list(check_vocabulary(req.vocabulary, "vocabulary"))
        if names is not None:  # a new vocabulary is embedded in short slices, so clicks interleave
            model = state.predictor.model
            state.vocabularies.prepare(tuple(names) + ("background",), lambda key: embed_vocabulary_sliced(
                model, key, lambda fn: state.compute_bulk(fn)))
        view = state.view(entry)
        view._everything = entry.everything  # the object queries' decoder pass is shared by every request
        result = state.compute_bulk(view.segment_everything, vocabulary=names, kind=req.kind)
        if req.text_grounding:  # one queued step per name, so clicks are served in between
            result = add_text_grounding(view, result, run=lambda fn: state.compute_bulk(fn))
        entry.everything = view._everything
        _, masks, entries = _panoptic_segments(result, (entry.height, entry.width))
        segments = [dict(id=e["pixel_value"], label_id=e["label_id"], isthing=e.get("isthing"),
                         **convert.encode_mask(m, e["score"], e["label"])) for e, m in zip(entries, masks)]
        return {"kind": req.kind, "vocabulary_size": len(result.vocabulary), "segments": segments,
                "latency_ms": elapsed_ms(t0)}
