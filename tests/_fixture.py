"""Helpers for parity tests against golden fixtures produced by the official SEEM code.

Two fixture kinds, each located by an env var with a default under ``<repo>/../shared/reference/``:

* ``"focal"``: ``$SEEM_PARITY_FIXTURE`` (default ``seem_v1_tiny``), SEEM v1 with a FocalNet backbone;
* ``"samvit"``: ``$SEEM_PARITY_FIXTURE_SAMVIT`` (default ``seem_v1_samvit_tiny``), SEEM v1 with SAM's ViT and the
  MSDeformAttn pixel decoder.

Dims, backbone, image names and sizes are read from the fixture itself (``config.json``, ``images.json``), so the
same tests run on any fixture set of either kind; :data:`KINDS` parametrizes the parity tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from seem.build import build_backbone, build_pixel_decoder
from seem.configs import BackboneConfig, PixelDecoderConfig
from seem.official_config import config_from_official

REPO_ROOT = Path(__file__).resolve().parents[1]
# kind -> (env var, default directory name under ../shared/reference)
FIXTURES = {"focal": ("SEEM_PARITY_FIXTURE", "seem_v1_tiny"),
            "samvit": ("SEEM_PARITY_FIXTURE_SAMVIT", "seem_v1_samvit_tiny")}
KINDS = list(FIXTURES)


def fixture_dir(kind: str = "focal") -> Path:
    """Directory of the golden fixture of ``kind`` (its env var, else ``<repo>/../shared/reference/<default>``)."""
    env, default = FIXTURES[kind]
    value = os.environ.get(env)
    if value:
        return Path(value)
    return REPO_ROOT.parent / "shared" / "reference" / default


def require_fixture(kind: str = "focal") -> Path:
    """The fixture directory of ``kind``; skips the calling test when it (or its weights) is absent."""
    path = fixture_dir(kind)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        pytest.skip(f"{kind} parity fixture not found at {path} (set {FIXTURES[kind][0]})")
    return path


def load_official_config(path: Path) -> dict[str, Any]:
    """The official config dict the fixture model was built from."""
    with open(path / "config.json") as f:
        return json.load(f)


def backbone_config(cfg: dict[str, Any]) -> BackboneConfig:
    """``MODEL.BACKBONE`` of an official config dict -> :class:`BackboneConfig`."""
    return config_from_official(cfg).backbone


def pixel_decoder_config(cfg: dict[str, Any]) -> PixelDecoderConfig:
    """``MODEL.ENCODER`` (+ the shared ``MODEL.DECODER`` keys) of an official config dict -> :class:`PixelDecoderConfig`."""
    config = config_from_official(cfg)
    return replace(config.pixel_decoder, in_channels=config.backbone.out_channels)


def fixture_backbone(path: Path, weights: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The fixture's backbone (built from its config through the backbone table), weights loaded strictly."""
    model = build_backbone(backbone_config(load_official_config(path))).eval()
    weights = load_tensors(path / "model.safetensors") if weights is None else weights
    model.load_state_dict(strip_prefix(weights, "backbone."), strict=True)  # raises on any missing / unexpected key
    return model


def fixture_pixel_decoder(path: Path, weights: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The fixture's pixel decoder (the one its config names), weights loaded strictly."""
    model = build_pixel_decoder(config_from_official(load_official_config(path))).eval()
    weights = load_tensors(path / "model.safetensors") if weights is None else weights
    model.load_state_dict(strip_prefix(weights, "sem_seg_head.pixel_decoder."), strict=True)
    return model


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file (CPU)."""
    from safetensors.torch import load_file

    return load_file(str(path))


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries whose key starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def image_names(path: Path) -> list[str]:
    """Names of the fixture images that have stored features (``features_<name>.safetensors``)."""
    with open(path / "images.json") as f:
        names = list(json.load(f))
    return [n for n in names if (path / f"features_{n}.safetensors").is_file()]


def preprocess(
    image_uint8_chw: torch.Tensor,
    pixel_mean: tuple[float, ...],
    pixel_std: tuple[float, ...],
    size_divisibility: int = 32,
) -> torch.Tensor:
    """Official preprocessing: ``(x - mean) / std`` in float32, then zero-pad bottom/right to a multiple.

    ``image_uint8_chw (3, H, W)`` uint8 RGB -> ``(1, 3, Hp, Wp)`` float32.
    """
    mean = torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1)
    x = (image_uint8_chw.float() - mean) / std
    h, w = x.shape[-2:]
    pad_h = (-h) % size_divisibility
    pad_w = (-w) % size_divisibility
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h)).unsqueeze(0)


def read_png_chw(path: Path) -> torch.Tensor:
    """An 8-bit RGB PNG -> ``(3, H, W)`` uint8."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def model_input(path: Path, name: str) -> torch.Tensor:
    """``(1, 3, Hp, Wp)`` model input for image ``name``: the stored tensor when present, else built from the PNG."""
    inputs_file = path / "inputs.safetensors"
    if inputs_file.is_file():
        stored = load_tensors(inputs_file).get(f"{name}.normalized_padded")
        if stored is not None:
            return stored
    cfg = load_official_config(path)
    divisibility = cfg["MODEL"]["DECODER"].get("SIZE_DIVISIBILITY", 32)
    return preprocess(
        read_png_chw(path / f"{name}.png"),
        tuple(cfg["INPUT"]["PIXEL_MEAN"]),
        tuple(cfg["INPUT"]["PIXEL_STD"]),
        divisibility,
    )


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` after checking the shapes agree."""
    assert a.shape == b.shape, f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.float() - b.float()).abs().max().item()
