"""What every route module shares: the documented error responses and the latency clock."""

from __future__ import annotations

import time

from seem.server.schemas import ErrorOut

# 404 unknown image / session, 409 nothing to undo / redo, 413 too large, 422 invalid input: ``{"detail": message}``
ERRORS: dict[int | str, dict] = {c: {"model": ErrorOut} for c in (404, 409, 413, 422)}


def elapsed_ms(t0: float) -> float:
    """Milliseconds since ``t0`` (a ``time.perf_counter()`` reading), rounded to microseconds."""
    return round((time.perf_counter() - t0) * 1000.0, 3)
