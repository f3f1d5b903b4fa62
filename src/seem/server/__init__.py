"""``seem serve``: a JSON HTTP API (FastAPI) over one :class:`seem.SeemPredictor`.

Endpoints (OpenAPI schema at ``/docs`` and ``/openapi.json``; coordinates are pixels of the original image,
x right, y down; masks are COCO RLE + polygons + COCO ``[x, y, w, h]`` boxes):

* ``POST /v1/images``: upload (multipart ``file`` or JSON ``{"data": base64}``) -> ``{image_id, width, height}``;
  encoded once, cached by sha256 in a memory-bounded LRU.
* ``POST /v1/sessions`` / ``POST /v1/sessions/{id}/prompts`` / ``undo`` / ``redo`` / ``reset`` /
  ``GET`` / ``DELETE /v1/sessions/{id}``: multi-round interactive segmentation of several objects.
* ``POST /v1/predict`` (stateless), ``POST /v1/panoptic``, ``POST /v1/cvat/interactor``.
* ``GET /v1/models``, ``GET /healthz``, ``GET /`` (the web page) and ``/static/*``.

Importing this package has no side effects and does not import FastAPI; :func:`create_app` does
(``pip install 'seem-torch[serve]'``).
"""

from __future__ import annotations

from seem.server.factory import create_app

__all__ = ["create_app"]
