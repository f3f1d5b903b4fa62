"""``GET /`` (the web page, not in the OpenAPI document) and ``/static/*`` (its files)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from seem.server.state import ServerState

STATIC_DIR = Path(__file__).parent.parent / "static"


def register(app: FastAPI, state: ServerState) -> None:
    """Add ``GET /`` and mount ``/static``; 404 on ``/`` when the page is not installed."""
    del state  # the page needs no server state

    @app.get("/", include_in_schema=False)
    def index():
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise HTTPException(404, "the web page is not installed (seem/server/static/index.html)")
        return FileResponse(page, media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
