"""Locate and read the official-code parity fixture for the language side (tests only).

The fixture directory of ``kind`` (``"focal"``: ``$SEEM_PARITY_FIXTURE`` or ``../shared/reference/seem_v1_tiny``;
``"samvit"``: ``$SEEM_PARITY_FIXTURE_SAMVIT``, see ``_fixture.py``); every dimension, text, class list and template
list is read from it (other fixture sets differ).
"""

from __future__ import annotations

import json
from functools import cache

import torch

from seem.configs import TextConfig

from _fixture import fixture_dir, require_fixture  # noqa: F401  (re-exported for the text tests)

OFFICIAL_PREFIX = "sem_seg_head.predictor.lang_encoder."


@cache
def case(name: str, kind: str = "focal") -> tuple[dict, dict[str, torch.Tensor]]:
    """(sidecar JSON, tensors) of ``case_<name>``, e.g. ``case('a_generic')``."""
    from safetensors.torch import load_file

    path = require_fixture(kind)
    meta = json.loads((path / f"case_{name}.json").read_text())
    return meta, load_file(str(path / f"case_{name}.safetensors"))


def text_config(kind: str = "focal") -> TextConfig:
    """TextConfig from the fixture's ``config.json`` (``MODEL.TEXT`` and ``MODEL.DIM_PROJ``)."""
    from seem.official_config import config_from_official

    return config_from_official(json.loads((require_fixture(kind) / "config.json").read_text())).text


def text_state_dict(kind: str = "focal") -> dict[str, torch.Tensor]:
    """The fixture's language-encoder weights, renamed to :class:`TextEncoder` keys."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(require_fixture(kind) / "model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safetensors handles are not iterable
            if not key.startswith(OFFICIAL_PREFIX):
                continue
            rest = key[len(OFFICIAL_PREFIX) :]
            if rest.startswith("lang_encoder."):
                rest = "transformer." + rest[len("lang_encoder.") :]
            out[rest] = f.get_tensor(key)
    return out


def class_names(meta: dict) -> list[str]:
    """case_a's class list as passed to get_text_embeddings (background appended when recorded)."""
    return list(meta["classes"]) + (["background"] if meta.get("background_appended") else [])
