"""Request-size limit and the mapping of errors to HTTP responses (never a 500 for bad input).

* :class:`seem.errors.PromptError` -> 422; :class:`seem.errors.ImageError` -> 413 when the image has too
  many pixels, 422 otherwise (corrupt, not an image, ...).
* Request validation (pydantic) -> 422 with ``detail`` a readable ``"field.path: message"`` string and
  ``errors`` the structured list (``loc``, ``msg``, ``type``).
* Every error body is ``{"detail": str, ...}``.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from seem.errors import ImageError, PromptError


def image_error_status(exc: ImageError) -> int:
    """413 for images over the pixel limit, 422 for everything else."""
    text = str(exc)
    return 413 if ("max_pixels" in text or "too many pixels" in text) else 422


def _field(loc) -> str:
    loc = list(loc)
    if loc and loc[0] in ("body", "query", "path", "header"):  # the location kind, not a field named so
        loc = loc[1:]
    return ".".join(str(p) for p in loc) or "body"


def validation_detail(errors) -> tuple[str, list[dict]]:
    """``(readable message, [{"loc", "msg", "type"}])`` of pydantic errors (inputs are not echoed back)."""
    slim = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors]
    text = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in slim[:5])
    if len(slim) > 5:
        text += f"; and {len(slim) - 5} more"
    return text or "invalid request", slim


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PromptError)
    async def _prompt_error(request: Request, exc: PromptError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ImageError)
    async def _image_error(request: Request, exc: ImageError):
        return JSONResponse({"detail": str(exc)}, status_code=image_error_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        text, errors = validation_detail(exc.errors())
        return JSONResponse({"detail": text, "errors": errors}, status_code=422)


class BodyLimit:
    """ASGI middleware: refuse request bodies above the limit with 413 before the app reads (or JSON-decodes)
    them: ``limit`` bytes on ``upload_paths`` (image uploads), ``prompt_limit`` bytes elsewhere (prompt
    bodies: clicks, strokes, RLE masks), so a huge prompt body is refused from its size alone.

    A declared ``Content-Length`` is checked up front; a chunked body is buffered up to the limit.
    """

    def __init__(self, app, limit: int, prompt_limit: int | None = None, upload_paths: tuple[str, ...] = ()) -> None:
        self.app, self.limit = app, int(limit)
        self.prompt_limit = int(prompt_limit) if prompt_limit is not None else self.limit
        self.upload_paths = tuple(upload_paths)

    def limit_for(self, path: str) -> int:
        """The byte limit of a request to ``path``."""
        return self.limit if not self.upload_paths or path.startswith(self.upload_paths) else self.prompt_limit

    @staticmethod
    async def _refuse(send, limit: int) -> None:
        body = json.dumps({"detail": f"request body is larger than the {limit:,}-byte limit"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = limit + 1
            if size > limit:
                await self._refuse(send, limit)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await self._refuse(send, limit)
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_allow_header(app: FastAPI) -> None:
    """405 answers list every method of the path in ``Allow`` (Starlette lists only the first matching
    route's, so ``/v1/sessions/{id}`` would hide DELETE behind GET)."""
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.routing import Match

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods: set[str] = set()
            for route in app.router.routes:
                match, _ = route.matches({**request.scope, "method": "GET"})
                route_methods = getattr(route, "methods", None)
                if match != Match.NONE and route_methods:
                    methods |= set(route_methods)
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers or None)
