"""The routes of ``seem serve`` (built by :func:`seem.server.create_app`), grouped by resource.

Concurrency: sync routes run in uvicorn's thread pool, each on its own predictor view (see
:mod:`seem.server.state`); requests on one session are serialised by the session's lock, under
``torch.inference_mode()``. Coordinates everywhere: pixels of the original image, x right, y down (see
:mod:`seem.server.schemas`). Errors: 404 unknown image / session, 409 nothing to undo / redo, 413 too large,
415 wrong upload content type, 422 invalid input (``{"detail": message}``).

To add an endpoint: a route in the module of its resource under :mod:`seem.server.routes` (or a new module
with a ``register(app, state)``, listed in :data:`RESOURCES`), its request / response models in
:mod:`seem.server.schemas`.
"""

from __future__ import annotations

from fastapi import FastAPI

from seem.server.routes import cvat, find, images, info, page, panoptic, predict, sessions
from seem.server.routes.page import STATIC_DIR
from seem.server.state import ServerState

__all__ = ["RESOURCES", "STATIC_DIR", "register_routes"]

# Registration order: the order of the paths in the OpenAPI document.
RESOURCES = (images, predict, panoptic, find, cvat, sessions, info, page)


def register_routes(app: FastAPI, state: ServerState) -> None:
    """Add every route of :data:`RESOURCES` to ``app``, serving ``state``."""
    for resource in RESOURCES:
        resource.register(app, state)
