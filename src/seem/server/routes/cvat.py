"""``POST /v1/cvat/interactor``: the interactor protocol of CVAT (clicks + optional box -> polygon + mask)."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI

from seem import io as seem_io
from seem.server import convert
from seem.server.routes.common import ERRORS
from seem.server.schemas import CvatRequest, CvatResponse
from seem.server.state import ServerState


def register(app: FastAPI, state: ServerState) -> None:
    """Add ``POST /v1/cvat/interactor``."""

    @app.post("/v1/cvat/interactor", response_model=CvatResponse, responses=ERRORS, tags=["predict"])
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
