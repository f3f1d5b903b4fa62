"""The FastAPI app of ``seem serve``: :func:`create_app` (stores, limits, middleware, routes, warm-up).

Importing this module does not import FastAPI; :func:`create_app` does (``pip install 'seem-torch[serve]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["create_app"]


def create_app(predictor: Any, *, max_images: int = 32, feature_budget_bytes: int = 1 << 30,
               session_ttl_s: float = 1800.0, max_sessions: int = 256, max_history: int = 20,
               max_upload_bytes: int = 20 * 1024 * 1024, max_pixels: int = 50_000_000,
               model_name: str | None = None, warm: bool = True, max_concurrent_inference: int = 1,
               allowed_hosts: Sequence[str] | None = None, allowed_origins: Sequence[str] = (),
               max_prompt_bytes: int = 16 << 20, session_budget_bytes: int = 512 << 20) -> Any:
    """The FastAPI app serving ``predictor`` (a :class:`seem.SeemPredictor`; never given an image itself).

    Args:
        max_images / feature_budget_bytes: bounds of the cache of encoded images (count, and approximate bytes
            of their feature tensors + RGB pixels); least recently used images are dropped first.
        session_ttl_s: a session idle this many seconds is deleted (default 30 min).
        max_sessions: at most this many live sessions; a new one drops the least recently used.
        max_history: undo steps kept per session (each holds the objects' masks at the image's size).
        max_upload_bytes: largest accepted image file (413 above; the request body may be 4/3 of it + 1 MiB
            for base64 / multipart overhead). max_pixels: largest image, width x height (413 above).
        model_name: shown by ``GET /v1/models`` (default: the model's backbone name).
        warm: embed the predictor's vocabulary, build the bf16 decoder copy and run one tiny encode + click now
            (the first call of each kernel is slow), not in the first request.
        max_concurrent_inference: model calls (encode, prompt rounds, panoptic) running at once; the others
            wait. 1 suits a CPU (each call already uses every torch thread; concurrent calls only
            oversubscribe the cores); raise it for a GPU.
        allowed_hosts: serve only requests whose ``Host`` header is one of these (Starlette's
            ``TrustedHostMiddleware``; ``seem serve`` on loopback passes the loopback names); None = any.
        session_budget_bytes: approximate bytes of all session histories (low-res logits, RLE, vertices);
            above it the least recently used sessions are dropped. Budgets and use are in ``GET /healthz``.
        max_prompt_bytes: largest request body on every route but the image upload (413 above, before the
            JSON is decoded): 16 MiB holds thousands of clicks and vertices and RLE masks of any sane image.
        allowed_origins: origins besides this server's own whose pages may send state-changing requests
            (:class:`seem.server.site_guard.SiteGuard`: other cross-origin POST/PUT/PATCH/DELETE get 403).

    Raises:
        seem.errors.MissingDependencyError: FastAPI is not installed.
    """
    from seem.errors import require

    require("fastapi", "serve")
    from fastapi import FastAPI

    from seem.server.app import register_routes
    from seem.server.middleware import BodyLimit, install_allow_header, install_error_handlers
    from seem.server.site_guard import SiteGuard
    from seem.server.state import Limits, ServerState
    from seem.server.store import ImageStore, SessionStore

    if warm:
        _ = predictor.decoding_model, predictor.encoding_model  # made lazily otherwise: not thread-safe
        predictor.vocabularies.get(tuple(predictor.vocabulary) + ("background",))

    state = ServerState(
        predictor,
        ImageStore(max_images=max_images, budget_bytes=feature_budget_bytes),
        SessionStore(max_sessions=max_sessions, ttl_s=session_ttl_s, max_history=max_history,
                     budget_bytes=session_budget_bytes),
        Limits(max_upload_bytes=max_upload_bytes, max_pixels=max_pixels),
        model_name or predictor.model.config.backbone.name,
        max_concurrent_inference=max_concurrent_inference,
    )
    app = FastAPI(title="SEEM", version=_version(),
                  description="Promptable segmentation (SEEM): clicks, boxes, scribbles, polygons, masks, text and "
                  "referred regions. Coordinates are pixels of the original image, x right, y down.")
    if warm:
        state.compute(_warm_up, predictor)  # on the model thread, which keeps what the first call builds
    app.state.seem = state
    install_error_handlers(app)
    install_allow_header(app)
    register_routes(app, state)
    app.add_middleware(BodyLimit, limit=max_upload_bytes * 4 // 3 + (1 << 20), prompt_limit=max_prompt_bytes,
                       upload_paths=("/v1/images",))
    app.add_middleware(SiteGuard, allowed_origins=tuple(allowed_origins))  # outside BodyLimit: refused unread
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


def _version() -> str:
    from seem import __version__

    return __version__


def _warm_up(predictor: Any) -> None:
    """One encode, one click and one mask encoding on a small blank image, so that the first user's round is
    not the slow one (first kernel calls, lazy imports)."""
    import numpy as np

    from seem import io as seem_io

    frame, features = predictor.encode(np.zeros((64, 64, 3), dtype=np.uint8))
    pred = predictor.with_image(frame, features).predict(points=[[32.0, 32.0]])
    seem_io.mask_to_polygons(pred.masks[0])  # imports scikit-image (~0.4 s) now, not in the first response
    seem_io.mask_to_rle(pred.masks[0])
