"""Every registered variant builds (on the meta device: no memory, no weights) with the state dict the
checkpoint converter expects: official names convert to exactly its keys and shapes, its sizes read back
from the keys are the config's, and its module structure is the one of the official fixture checkpoint."""

from __future__ import annotations

import re

import pytest
import torch

from seem.build import build_seem
from seem.checkpoint import (
    _RENAME_RULES,
    SEEM_PREFIXES,
    check_state_dict,
    convert_official_state_dict,
    describe_shapes,
)
from seem.registry import iter_variants

from _fixture import fixture_dir

FIXTURE = fixture_dir()
VARIANTS = [v.name for v in iter_variants()]
# Parameter counts stated in the variants' descriptions (official checkpoints: ~165M Focal-T, ~342M Focal-L).
PARAMS_M = {"seem_focalt_v1": 165, "seem_focalt_v0": 165, "seem_focall_v1": 342, "seem_focall_v0": 342}


def _meta_model(name: str) -> torch.nn.Module:
    variant = next(v for v in iter_variants() if v.name == name)
    with torch.device("meta"):
        return build_seem(variant.config)


def _to_official(key: str) -> str:
    """Inverse of the converter's rename table (the most specific seem prefix wins)."""
    for old, new in sorted(_RENAME_RULES, key=lambda r: -len(r[1])):
        if key.startswith(new):
            return old + key[len(new) :]
    raise AssertionError(f"{key} has no official name")


def _pattern(key: str) -> str:
    return re.sub(r"\.\d+(?=\.)", ".#", key)


@pytest.fixture(scope="module")
def fixture_patterns() -> set[str]:
    path = FIXTURE / "model.safetensors"
    if not path.is_file():
        pytest.skip(f"no fixture at {FIXTURE}")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
    return {_pattern(k) for k in convert_official_state_dict(dict.fromkeys(keys, torch.empty(0)))}


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_builds_with_the_keys_the_converter_expects(name):
    model = _meta_model(name)
    state = model.state_dict()
    assert state and all(t.device.type == "meta" for t in state.values())
    assert all(k.startswith(SEEM_PREFIXES) for k in state)
    config = next(v for v in iter_variants() if v.name == name).config
    # the candidate, box, refine and grounding scorers (seem.candidates, seem.grounding_choice) are ours alone: no official
    # name, only where the config has one
    ours = [k for k in state if k.startswith(("candidate_scorer.", "grounding_scorer.", "box_scorer.", "refine_scorer."))]
    assert any(k.startswith("candidate_scorer.") for k in ours) == bool(config.candidate_scorer_hidden)
    assert any(k.startswith("grounding_scorer.") for k in ours) == bool(config.grounding_scorer_hidden)
    assert any(k.startswith("box_scorer.") for k in ours) == bool(config.box_scorer_hidden)
    assert any(k.startswith("refine_scorer.") for k in ours) == bool(config.refine_scorer_hidden)
    official = {_to_official(k): v for k, v in state.items() if k not in ours}
    assert any(k.startswith("sem_seg_head.") for k in official)
    converted = convert_official_state_dict(official)
    assert list(converted) == [k for k in state if k not in ours]
    check_state_dict(model, {**converted, **{k: state[k] for k in ours}})  # keys and shapes, as strict loading checks them

    info = describe_shapes({k: tuple(v.shape) for k, v in state.items()})
    assert info["decoder queries"] == config.decoder.num_queries
    assert info["decoder hidden_dim"] == config.decoder.hidden_dim
    assert info["text width"] == config.text.width
    if config.backbone.name.startswith("focal"):
        assert info["backbone name"] == config.backbone.name
        assert info["backbone embed_dim"] == config.backbone.embed_dim
        assert info["backbone depths"] == tuple(config.backbone.depths)
    if name in PARAMS_M:
        params = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(params - PARAMS_M[name]) / PARAMS_M[name] < 0.02, params


@pytest.mark.parametrize("name", [n for n in VARIANTS if n.startswith("seem_focal")])
def test_official_variants_have_the_official_module_structure(name, fixture_patterns):
    """The fixture is an official v1 Focal-T-style checkpoint at reduced depth / width: once layer indices
    are ignored, a Focal-T variant has exactly its keys; Focal-L lacks only the depth-wise convolutions."""
    patterns = {_pattern(k) for k in _meta_model(name).state_dict()}
    if "focalt" in name:
        assert patterns == fixture_patterns
    else:
        extra = fixture_patterns - patterns
        assert patterns < fixture_patterns and extra and all(".dw" in p or "_dw" in p for p in extra), extra
