"""Resolving names and paths, the converted cache, and a fake offline Hugging Face cache (no network)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from seem import hub
from seem.checkpoint import (
    config_from_official,
    read_checkpoint,
    read_safetensors_metadata,
    save_safetensors,
    to_seem_state_dict,
)
from seem.config_dict import config_from_dict
from seem.errors import CheckpointError, ConfigError
from seem.registry import get_variant

from _fixture import fixture_dir

hf = pytest.importorskip("huggingface_hub")
hf_constants = pytest.importorskip("huggingface_hub.constants")

FIXTURE = fixture_dir()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Offline mode for huggingface_hub, and any socket connection fails loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _official_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = {
        "backbone.patch_embed.proj.weight": (4, 3, 7, 7),
        "sem_seg_head.pixel_decoder.mask_features.weight": (4, 4, 3, 3),
        "sem_seg_head.predictor.query_feat.weight": (5, 4),
        "sem_seg_head.predictor.mask_sptial_embed.0": (4, 4),
        "sem_seg_head.predictor.lang_encoder.lang_proj": (4, 4),
        "sem_seg_head.predictor.lang_encoder.logit_scale": (),
        "sem_seg_head.predictor.lang_encoder.lang_encoder.ln_final.weight": (4,),
        "criterion.empty_weight": (134,),
        "dilation_kernel": (1, 1, 3, 3),
    }
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def _module_with_keys(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """An nn.Module whose state_dict has exactly these keys and shapes (zeros)."""
    root = nn.Module()
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(torch.zeros_like(value)))
    return root


def _fake_hf_cache(root: Path, filename: str = "seem_focalt_v1.pt") -> Path:
    repo = root / "models--xdecoder--SEEM"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    torch.save(_official_state_dict(), snapshot / filename)
    return snapshot / filename


def test_registry_name_downloads_converts_and_caches(tmp_path, monkeypatch):
    pt = _fake_hf_cache(tmp_path)
    path, config = hub.resolve_checkpoint("seem_focalt_v1", cache_dir=tmp_path)
    assert path == tmp_path / "seem" / "seem_focalt_v1.safetensors" and path.is_file()
    assert config == get_variant("seem_focalt_v1").config
    meta = read_safetensors_metadata(path)
    assert config_from_dict(json.loads(meta["seem_config"])) == config
    assert meta["seem_variant"] == "seem_focalt_v1" and meta["source"] == "hf://xdecoder/SEEM/seem_focalt_v1.pt"
    converted = read_checkpoint(path)
    assert sorted(converted) == sorted(
        [
            "backbone.patch_embed.proj.weight",
            "pixel_decoder.mask_features.weight",
            "decoder.query_feat.weight",
            "decoder.spatial_token_proj.0",
            "text_encoder.lang_proj",
            "text_encoder.logit_scale",
            "text_encoder.transformer.ln_final.weight",
        ]
    )
    assert torch.equal(converted["decoder.spatial_token_proj.0"], torch.load(pt)["sem_seg_head.predictor.mask_sptial_embed.0"])

    # Second call: served from the converted cache; neither the hub nor the pickle is touched.
    pt.unlink()

    def forbidden(*args, **kwargs):
        raise AssertionError("second call must not download or unpickle")

    monkeypatch.setattr(hf, "hf_hub_download", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert hub.resolve_checkpoint("seem_focalt_v1", cache_dir=tmp_path) == (path, config)


def test_broken_converted_cache_is_rebuilt(tmp_path):
    _fake_hf_cache(tmp_path)
    cached = hub.converted_cache_path("seem_focalt_v1", tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x00" * 16)
    path, _ = hub.resolve_checkpoint("seem_focalt_v1", cache_dir=tmp_path)
    assert "decoder.query_feat.weight" in read_checkpoint(path)


def test_offline_and_not_cached_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError) as err:
        hub.resolve_checkpoint("seem_focall_v1", cache_dir=tmp_path)
    msg = str(err.value)
    assert "seem_focall_v1.pt" in msg and "xdecoder/SEEM" in msg and "offline" in msg
    assert not (tmp_path / "seem" / "seem_focall_v1.safetensors").exists()


def test_revision_gets_its_own_cache_file(tmp_path):
    assert hub.converted_cache_path("seem_focalt_v1", tmp_path, "main").name == "seem_focalt_v1.safetensors"
    assert hub.converted_cache_path("seem_focalt_v1", tmp_path, "v1/x").name == "seem_focalt_v1@v1_x.safetensors"


def test_default_cache_root_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEM_CACHE_DIR", str(tmp_path / "c"))
    assert hub.converted_cache_path("seem_focalt_v1") == tmp_path / "c" / "seem" / "seem_focalt_v1.safetensors"


def test_unknown_name_and_missing_path():
    with pytest.raises(ConfigError, match="Did you mean 'seem_focalt_v1'"):
        hub.resolve_checkpoint("seem_focalt_v2")
    with pytest.raises(CheckpointError, match="not found"):
        hub.resolve_checkpoint("missing/seem.pt")
    with pytest.raises(CheckpointError, match="not found"):
        hub.resolve_checkpoint(Path("nowhere.safetensors"))


def test_local_files_and_their_configs(tmp_path):
    official = _official_state_dict()
    variant = get_variant("seem_focall_v1")
    # A .pt with the released name: config from the registry.
    torch.save(official, tmp_path / "seem_focall_v1.pt")
    path, config = hub.resolve_checkpoint(str(tmp_path / "seem_focall_v1.pt"))
    assert path == tmp_path / "seem_focall_v1.pt" and config == variant.config
    # Any other name: an explicit config, or an error that says what to do.
    torch.save(official, tmp_path / "mine.pth")
    with pytest.raises(ConfigError, match="Cannot tell which SEEM variant"):
        hub.resolve_checkpoint(tmp_path / "mine.pth")
    assert hub.resolve_checkpoint(tmp_path / "mine.pth", config=variant.config)[1] == variant.config
    # A safetensors written by seem carries its config.
    save_safetensors({"backbone.x": torch.zeros(1)}, tmp_path / "ours.safetensors", config=variant.config)
    assert hub.resolve_checkpoint(tmp_path / "ours.safetensors")[1] == variant.config


def test_local_safetensors_with_sibling_official_yaml():
    if not (FIXTURE / "model.safetensors").is_file():
        pytest.skip(f"no fixture at {FIXTURE}")
    path, config = hub.resolve_checkpoint(FIXTURE / "model.safetensors")
    assert path == FIXTURE / "model.safetensors"
    assert config == config_from_official(FIXTURE / "config.yaml")
    assert (config.backbone.embed_dim, config.decoder.hidden_dim, config.decoder.num_layers) == (32, 64, 3)


def test_load_pretrained_weights_from_official_pt_and_hub(tmp_path):
    official = _official_state_dict()
    torch.save(official, tmp_path / "weights.pt")
    model = _module_with_keys(to_seem_state_dict(official))
    hub.load_pretrained_weights(model, tmp_path / "weights.pt")
    assert torch.equal(model.text_encoder.lang_proj, official["sem_seg_head.predictor.lang_encoder.lang_proj"])

    _fake_hf_cache(tmp_path / "hf")
    fresh = _module_with_keys(to_seem_state_dict(official))
    hub.load_pretrained_weights(fresh, "seem_focalt_v1", cache_dir=tmp_path / "hf")
    assert torch.equal(fresh.decoder.query_feat.weight, official["sem_seg_head.predictor.query_feat.weight"])

    wrong = nn.Module()
    wrong.decoder = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="Unexpected keys"):
        hub.load_pretrained_weights(wrong, tmp_path / "weights.pt")


def test_build_from_pretrained_fixture():
    if not (FIXTURE / "model.safetensors").is_file():
        pytest.skip(f"no fixture at {FIXTURE}")
    pytest.importorskip("seem.build", reason="seem.build (build_seem) not written yet")
    model = hub.build_from_pretrained(FIXTURE / "model.safetensors", device="cpu")
    assert not model.training
    official = read_checkpoint(FIXTURE / "model.safetensors")
    assert torch.equal(model.state_dict()["decoder.query_feat.weight"], official["sem_seg_head.predictor.query_feat.weight"])
