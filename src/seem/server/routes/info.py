"""``GET /v1/models`` (the served model, its limits and vocabulary) and ``GET /healthz``."""

from __future__ import annotations

from fastapi import FastAPI

from seem.server.schemas import MAX_OBJECTS, MAX_POINTS, Health, ModelInfo
from seem.server.state import ServerState


def model_info(state: ServerState) -> dict:
    """The :class:`~seem.server.schemas.ModelInfo` response: name, precision, device, vocabulary, config."""
    p = state.predictor
    cfg = p.model.config
    summary = {
        "backbone": cfg.backbone.name, "decoder_version": cfg.decoder.version,
        "hidden_dim": cfg.decoder.hidden_dim, "num_queries": cfg.decoder.num_queries,
        "decoder_layers": cfg.decoder.num_layers, "text_width": cfg.text.width, "text_layers": cfg.text.layers,
        "shorter_side": p.shorter_side, "max_size": p.max_size,
        "parameters": int(sum(t.numel() for t in p.model.parameters())),
        "limits": {"max_upload_bytes": state.limits.max_upload_bytes, "max_pixels": state.limits.max_pixels,
                   "max_points": MAX_POINTS, "max_objects": MAX_OBJECTS, "text_tokens": cfg.text.context_length},
    }
    return {"name": state.model_name, "precision": p.precision, "device": str(p.device),
            "vocabulary_size": len(p.vocabulary), "vocabulary": list(p.vocabulary), "config": summary}


def register(app: FastAPI, state: ServerState) -> None:
    """Add ``GET /v1/models`` and ``GET /healthz``."""

    @app.get("/v1/models", response_model=ModelInfo, tags=["info"])
    def models():
        return model_info(state)

    @app.get("/healthz", response_model=Health, tags=["info"])
    def healthz():
        memory = {"images_bytes": state.images.total_bytes, "images_budget_bytes": state.images.budget_bytes,
                  "sessions_bytes": state.sessions.total_bytes(), "sessions_budget_bytes": state.sessions.budget_bytes,
                  "vocabularies": state.vocabularies.request_entries()}
        return {"status": "ok", "images": len(state.images), "sessions": len(state.sessions), "memory": memory}
