"""Shared setup for the decoder / post-processing parity tests: the fixture model and its cases.

Every helper takes the fixture ``kind`` (``"focal"`` or ``"samvit"``, see ``_fixture.py``), default ``"focal"``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from seem.build import build_seem
from seem.checkpoint import config_from_official, convert_official_state_dict, load_state_dict_strict
from seem.modeling.visual_sampler import RecordedSampler
from seem.transforms import plan_frame, preprocess_image

from _fixture import fixture_dir, load_tensors, read_png_chw

ATOL = 1e-4  # <= 1e-4 absolute on logits / features: the parity contract with the official code


@lru_cache(maxsize=2)
def fixture_model(kind: str = "focal"):
    path = fixture_dir(kind)
    model = build_seem(config_from_official(path / "config.yaml"))
    load_state_dict_strict(model, convert_official_state_dict(load_tensors(path / "model.safetensors")))
    return model


def case(name: str, kind: str = "focal") -> tuple[dict, dict[str, torch.Tensor]]:
    path = fixture_dir(kind)
    if not (path / f"{name}.json").is_file():
        import pytest

        pytest.skip(f"{kind} fixture has no {name}")
    with open(path / f"{name}.json") as f:
        meta = json.load(f)
    return meta, load_tensors(path / f"{name}.safetensors")


def image_uint8(name: str, kind: str = "focal"):
    """``(H, W, 3)`` uint8 of a fixture image, read from its PNG."""
    return read_png_chw(fixture_dir(kind) / f"{name}.png").permute(1, 2, 0).numpy()


@lru_cache(maxsize=4)
def image_features(name: str, kind: str = "focal"):
    """Encode a fixture image through our own preprocessing (no resize; padding to the divisor)."""
    model = fixture_model(kind)
    img = image_uint8(name, kind)
    frame = plan_frame(img.shape[:2], None, None, model.config.size_divisibility)
    with torch.no_grad():
        return frame, model.encode_image(preprocess_image(img, frame, model.pixel_mean, model.pixel_std))


def vocabulary_embeddings(kind: str = "focal") -> torch.Tensor:
    """The ``default`` class embeddings every case's class logits use (case_a ``text.class_embeddings``)."""
    return load_tensors(fixture_dir(kind) / "case_a_generic.safetensors")["text.class_embeddings"]


def recorded_sampler(meta: dict, tensors: dict, prefix: str = "sampling.", kind: str = "focal") -> RecordedSampler:
    """Replay the official random draws stored with a case."""
    points = []
    i = 0
    while f"{prefix}rand_sample.{i}" in tensors:
        points.append(tensors[f"{prefix}rand_sample.{i}"])
        i += 1
    queries = [tensors[k] for k in sorted(tensors) if k.startswith(f"{prefix}spatial_query_object_idx.")]
    memory = (meta.get("attention_struct") or {}).get("memory_indices")
    layers = fixture_model(kind).config.decoder.num_layers
    memories = [torch.tensor(memory)] * layers if memory else []
    return RecordedSampler(points, queries, memories)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.float() - expected.float()).abs().max().item() if actual.numel() else 0.0
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol}"


def compare(tensors: dict, key: str, actual: torch.Tensor, atol: float = ATOL) -> bool:
    """Compare with the stored tensor ``key`` when the fixture stores it (optional intermediates)."""
    if key not in tensors:
        return False
    assert_close(actual, tensors[key], key, atol)
    return True


def assert_masks_equal(actual: torch.Tensor, expected: torch.Tensor, logits: torch.Tensor, threshold: float, what: str):
    """Binary masks equal except where the logit is within ATOL of the threshold."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    differ = actual.bool() != expected.bool()
    near = (logits - threshold).abs() <= ATOL
    bad = int((differ & ~near).sum())
    assert bad == 0, f"{what}: {bad} pixels differ away from the threshold"


def fixture_path(kind: str = "focal") -> Path:
    return fixture_dir(kind)
