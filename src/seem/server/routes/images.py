"""``POST /v1/images``: upload an image once (multipart or base64 JSON); it is encoded and cached."""

from __future__ import annotations

import base64
import binascii

from fastapi import FastAPI, HTTPException, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from seem.server.middleware import validation_detail
from seem.server.routes.common import ERRORS
from seem.server.schemas import ImageInfo, ImageUpload
from seem.server.state import ServerState


async def read_upload(request: Request) -> bytes:
    """The image bytes of an upload request: multipart field ``file``, or JSON ``{"data": base64 or data URI}``.

    Raises:
        HTTPException: 415 another content type; 422 a missing field, invalid JSON / base64, or 0 bytes.
    """
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        try:
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise HTTPException(422, "file: missing multipart file field 'file'")
            data = await file.read()
        finally:
            await form.close()
    elif ctype.startswith("application/json"):
        try:
            body = ImageUpload.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]  # as FastAPI's own
            raise HTTPException(422, validation_detail(errors)[0]) from None
        text = body.data
        if text.startswith("data:"):
            if "," not in text:
                raise HTTPException(422, "data: a data URI needs a comma before its base64 payload")
            text = text.split(",", 1)[1]
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, "data: not valid base64") from None
    else:
        raise HTTPException(415, "send the image as multipart/form-data (field 'file') or JSON {\"data\": base64}")
    if not data:
        raise HTTPException(422, "file: the upload is empty (0 bytes)")
    return data


def register(app: FastAPI, state: ServerState) -> None:
    """Add ``POST /v1/images`` (its request body is documented by hand: the route reads the raw request)."""
    upload_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": ImageUpload.model_json_schema()}}}}

    @app.post("/v1/images", response_model=ImageInfo, responses=ERRORS, openapi_extra=upload_body, tags=["images"])
    async def upload_image(request: Request):
        """Upload an image (multipart field ``file``, or JSON ``{"data": base64}``); it is encoded once and
        cached by the sha256 of its bytes (re-uploading the same bytes returns the same id, no encoding)."""
        data = await read_upload(request)
        entry, created = await run_in_threadpool(state.add_image, data)
        return {"image_id": entry.image_id, "width": entry.width, "height": entry.height, "cached": not created}
