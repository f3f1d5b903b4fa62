"""``POST /v1/find`` (every instance of each phrase) and ``POST /v1/everything`` (everything mode) on an
uploaded image. Both are bulk work: queued behind clicks and session rounds (:mod:`seem.server.scheduler`), new
phrases and vocabularies embedded in short slices. The object queries' decoder pass of an image is kept on its
cache entry and shared with ``/v1/panoptic``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import FastAPI

from seem.server import convert
from seem.server.routes.common import ERRORS, elapsed_ms
from seem.server.schemas import EverythingRequest, EverythingResponse, FindRequest, FindResponse
from seem.server.state import ServerState
from seem.server.store import ImageEntry


def _prepare(state: ServerState, names: Sequence[str]) -> None:
    """Embed ``names`` (a new vocabulary or phrase list) in short bulk slices, so that clicks interleave."""
    from seem.server.scheduler import embed_vocabulary_sliced

    model = state.predictor.model
    state.vocabularies.prepare(tuple(names), lambda key: embed_vocabulary_sliced(
        model, key, lambda fn: state.compute_bulk(fn)))


def _bulk(state: ServerState, entry: ImageEntry, fn_name: str, *args, **kwargs):
    """``view.<fn_name>(*args, **kwargs)`` on the model thread at bulk priority, sharing the entry's object-query
    pass."""
    view = state.view(entry)
    view._everything = entry.everything
    result = state.compute_bulk(getattr(view, fn_name), *args, **kwargs)
    entry.everything = view._everything
    return result


def register(app: FastAPI, state: ServerState) -> None:
    """Add ``POST /v1/find`` and ``POST /v1/everything``."""

    @app.post("/v1/find", response_model=FindResponse, responses=ERRORS, tags=["predict"])
    def find(req: FindRequest):
        """Every instance of each phrase: masks, scores and boxes, one group per phrase (one decoder pass)."""
        from seem.find import FindConfig, check_phrases

        entry = state.image(req.image_id)
        t0 = time.perf_counter()
        phrases = check_phrases(req.texts)
        config = FindConfig(req.score_threshold, req.nms_threshold, req.max_instances)  # checked before queueing
        _prepare(state, phrases)
        result = _bulk(state, entry, "find", list(phrases), score_threshold=config.score_threshold,
                       nms_threshold=config.nms_threshold, max_instances=config.max_instances)
        groups = [{"phrase": g.phrase, "instances": [convert.encode_mask(g.masks[i], g.scores[i], g.phrase)
                                                     for i in range(len(g))]} for g in result]
        return {"groups": groups, "latency_ms": elapsed_ms(t0)}

    @app.post("/v1/everything", response_model=EverythingResponse, responses=ERRORS, tags=["predict"])
    def everything(req: EverythingRequest):
        """Class-agnostic masks of every object and region (object queries, then grid point prompts, by default
        decoded as clicks; stability score and mask NMS as SAM's automatic mask generator; optional crop layers),
        each with its best label."""
        from seem.automatic import EverythingConfig, everything_masks
        from seem.vocabularies import COCO_PANOPTIC_CLASSES, check_vocabulary

        entry = state.image(req.image_id)
        t0 = time.perf_counter()
        if req.vocabulary is None:
            names = None
        else:
            names = list(COCO_PANOPTIC_CLASSES) if req.vocabulary == "coco" else \
                list(check_vocabulary(req.vocabulary, "vocabulary"))
            _prepare(state, tuple(names) + ("background",))
        config = EverythingConfig(points_per_side=req.points_per_side, score_threshold=req.score_threshold,
                                  stability_threshold=req.stability_threshold, nms_threshold=req.nms_threshold,
                                  crop_n_layers=req.crop_n_layers, point_decoding=req.point_decoding,
                                  skip_covered_points=req.skip_covered_points)
        view = state.view(entry)
        view._everything = entry.everything
        # one bulk call per model step (object queries, each batch of points): clicks are served in between
        r = everything_masks(view, names, config, run=lambda fn: state.compute_bulk(fn))
        entry.everything = view._everything
        assert r.crop_boxes is not None  # everything_masks records each mask's crop
        masks = [{**convert.encode_mask(r.masks[i], r.scores[i], r.labels[i]),
                  "stability_score": round(float(r.stability_scores[i]), 6),
                  "label_score": round(float(r.label_scores[i]), 6), "source": r.sources[i],
                  "crop_box": [int(v) for v in r.crop_boxes[i]]} for i in range(len(r))]
        return {"masks": masks, "latency_ms": elapsed_ms(t0)}
