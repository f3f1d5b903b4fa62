"""What every route module shares: the documented error responses and the latency clock."""

from __future__ import annotations

import time

from seem.server.schemas import ErrorOut

# 404 unknown image / session, 409 nothing to undo / redo, 413 too large, 422 invalid input: ``{"detail": message}``
_WHY = {
    400: "malformed JSON or multipart body",
    403: "cross-origin request from a page on another site (see --allow-origin)",
    404: "unknown image or session id",
    409: "nothing to undo / redo",
    413: "request body, image file or image pixels over the server's limits",
    415: "unsupported content type (upload: multipart/form-data or JSON)",
    422: "invalid prompt or request field (the detail names it)",
}
ERRORS: dict[int | str, dict] = {c: {"model": ErrorOut, "description": why} for c, why in _WHY.items()}


def elapsed_ms(t0: float) -> float:
    """Milliseconds since ``t0`` (a ``time.perf_counter()`` reading), rounded to microseconds."""
    return round((time.perf_counter() - t0) * 1000.0, 3)
