"""Checkpoint conversion, strict loading, safe reading, safetensors metadata and official configs."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from seem.build import build_seem
from seem.checkpoint import (
    IGNORED_OFFICIAL_KEYS,
    config_from_official,
    convert_official_state_dict,
    load_state_dict_strict,
    read_checkpoint,
    read_safetensors_metadata,
    save_safetensors,
    to_seem_state_dict,
)
from seem.config_dict import config_from_dict, config_to_dict
from seem.configs import SeemConfig
from seem.errors import CheckpointError, ConfigError
from seem.registry import get_variant

from _fixture import fixture_dir

FIXTURE = fixture_dir()
needs_fixture = pytest.mark.skipif(not (FIXTURE / "model.safetensors").is_file(), reason=f"no fixture at {FIXTURE}")


@pytest.fixture(scope="module")
def official_sd() -> dict[str, torch.Tensor]:
    if not (FIXTURE / "model.safetensors").is_file():
        pytest.skip(f"no fixture at {FIXTURE}")
    return load_file(str(FIXTURE / "model.safetensors"))


# ------------------------------------------------------------------ conversion


def _group(key: str) -> str:
    if key.startswith("decoder.spatial_token_proj."):
        return "decoder.spatial_token_proj"
    return key.split(".")[0]


def test_convert_fixture_every_key_maps(official_sd):
    converted = convert_official_state_dict(official_sd)
    assert len(official_sd) == 257
    assert len(converted) == 257 - len(IGNORED_OFFICIAL_KEYS)
    assert not set(IGNORED_OFFICIAL_KEYS) & set(converted)
    assert Counter(_group(k) for k in converted) == {
        "backbone": 116,
        "pixel_decoder": 37,
        "text_encoder": 30,
        "decoder": 69,
        "decoder.spatial_token_proj": 3,
    }
    renames = {
        "sem_seg_head.predictor.lang_encoder.lang_encoder.token_embedding.weight": (
            "text_encoder.transformer.token_embedding.weight"
        ),
        "sem_seg_head.predictor.lang_encoder.lang_proj": "text_encoder.lang_proj",
        "sem_seg_head.predictor.lang_encoder.logit_scale": "text_encoder.logit_scale",
        "sem_seg_head.predictor.mask_sptial_embed.2": "decoder.spatial_token_proj.2",
        "sem_seg_head.predictor.class_embed": "decoder.class_embed",
        "sem_seg_head.pixel_decoder.mask_features.weight": "pixel_decoder.mask_features.weight",
        "backbone.layers.0.blocks.0.dw1.weight": "backbone.layers.0.blocks.0.dw1.weight",
    }
    for old, new in renames.items():
        assert converted[new] is official_sd[old]  # renamed, not copied
    assert converted["text_encoder.transformer.token_embedding.weight"].shape == (49408, 64)


def test_convert_is_pure_and_strips_wrapper_prefixes(official_sd):
    before = dict(official_sd)
    plain = convert_official_state_dict(official_sd)
    assert official_sd.keys() == before.keys()
    for prefix in ("model.", "module.", "module.model."):
        wrapped = convert_official_state_dict({prefix + k: v for k, v in official_sd.items()})
        assert wrapped.keys() == plain.keys()


def test_convert_rejects_unknown_prefixes():
    sd = {"backbone.a": torch.zeros(1), "sem_seg_head.captioning.x": torch.zeros(1), "foo.bar": torch.zeros(1)}
    with pytest.raises(CheckpointError) as err:
        convert_official_state_dict(sd)
    assert "'sem_seg_head.captioning' (1 keys)" in str(err.value)
    assert "'foo.bar' (1 keys)" in str(err.value)


def test_to_seem_state_dict_passes_converted_through():
    ours = {"backbone.x": torch.zeros(1), "decoder.y": torch.ones(1)}
    assert to_seem_state_dict({"module." + k: v for k, v in ours.items()}).keys() == ours.keys()
    official = {"sem_seg_head.predictor.y": torch.ones(1), "dilation_kernel": torch.ones(1, 1, 3, 3)}
    assert list(to_seem_state_dict(official)) == ["decoder.y"]


# ------------------------------------------------------------------ strict loading


class _Block(nn.Module):
    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, 7)
        self.layers = nn.ModuleList()
        stage = nn.Module()
        stage.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.layers.append(stage)


class _TinyModel(nn.Module):
    def __init__(self, dim: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.backbone = _Block(dim, depth)
        self.decoder = nn.Linear(dim, 3)


def test_load_strict_success_copies_values():
    src, dst = _TinyModel(), _TinyModel()
    load_state_dict_strict(dst, src.state_dict())
    assert torch.equal(dst.decoder.weight, src.decoder.weight)


def test_load_strict_reports_missing_unexpected_and_shapes():
    model = _TinyModel()
    sd = model.state_dict()
    sd.pop("decoder.bias")
    sd["decoder.extra"] = torch.zeros(2)
    sd["decoder.weight"] = torch.zeros(5, 4)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(model, sd)
    msg = str(err.value)
    assert "1 missing keys, 1 unexpected keys, 1 shape mismatches" in msg
    assert "Missing keys" in msg and "decoder.bias" in msg
    assert "Unexpected keys" in msg and "decoder.extra" in msg
    assert "decoder.weight: checkpoint [5, 4] vs model [3, 4]" in msg


def test_load_strict_abbreviates_long_lists():
    model = _TinyModel()
    sd = dict(model.state_dict())
    sd.update({f"decoder.junk.{i}": torch.zeros(1) for i in range(45)})
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(model, sd)
    msg = str(err.value)
    assert "45 unexpected keys" in msg
    assert "... and 25 more (by prefix: decoder.junk (45))" in msg
    assert msg.count("decoder.junk.") == 20


def test_load_strict_hints_wrong_variant_and_unconverted():
    small, large = _TinyModel(dim=4, depth=2), _TinyModel(dim=8, depth=3)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(small, large.state_dict())
    msg = str(err.value)
    assert "different model variant" in msg
    assert "backbone embed_dim 8 (model: 4)" in msg and "backbone depths (3,) (model: (2,))" in msg
    official = {"sem_seg_head.predictor.query_feat.weight": torch.zeros(2, 2)}
    with pytest.raises(CheckpointError, match="official SEEM key names"):
        load_state_dict_strict(small, official)


def test_load_strict_names_matching_registered_variant():
    """Focal-L-shaped backbone weights into a Focal-T-shaped model: the hint names seem_focall_*."""
    focal_t, focal_l = get_variant("seem_focalt_v1").config.backbone, get_variant("seem_focall_v1").config.backbone

    def shapes_module(embed: int, depths: tuple[int, ...]) -> nn.Module:
        m = nn.Module()
        m.backbone = nn.Module()
        m.backbone.patch_embed = nn.Module()
        m.backbone.patch_embed.proj = nn.Conv2d(3, embed, 1)
        m.backbone.layers = nn.ModuleList()
        for depth in depths:
            stage = nn.Module()
            stage.blocks = nn.ModuleList(nn.LayerNorm(1) for _ in range(depth))
            m.backbone.layers.append(stage)
        return m

    model = shapes_module(focal_t.embed_dim, focal_t.depths)
    ckpt = shapes_module(focal_l.embed_dim, focal_l.depths).state_dict()
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(model, ckpt)
    assert "seem_focall_v1" in str(err.value) and "seem_focalt_v1" not in str(err.value).split("matches")[-1]


def test_fixture_loads_into_full_model_strictly(official_sd):
    model = build_seem(config_from_official(FIXTURE / "config.yaml"))
    load_state_dict_strict(model, convert_official_state_dict(official_sd))
    assert torch.equal(model.state_dict()["decoder.class_embed"], official_sd["sem_seg_head.predictor.class_embed"])


# ------------------------------------------------------------------ reading files


def test_read_pt_safetensors_and_containers(tmp_path):
    sd = {"a.weight": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"model": sd, "iteration": 7}, tmp_path / "wrapped.pth")
    torch.save({"state_dict": sd, "epoch": 1}, tmp_path / "lightning.bin")
    save_safetensors(sd, tmp_path / "x.safetensors")
    for name in ("plain.pt", "wrapped.pth", "lightning.bin", "x.safetensors"):
        got = read_checkpoint(tmp_path / name)
        assert got.keys() == sd.keys()
        assert torch.equal(got["a.weight"], sd["a.weight"])


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"w": torch.zeros(2), "payload": _Evil(marker)}, tmp_path / "evil.pt")
    with open(tmp_path / "evil_raw.pth", "wb") as handle:
        pickle.dump({"payload": _Evil(marker)}, handle)
    for name in ("evil.pt", "evil_raw.pth"):
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(tmp_path / name)
        if name == "evil.pt":
            assert "non-tensor Python objects" in str(err.value) and "refused for safety" in str(err.value)
    assert not marker.exists()


def test_missing_empty_corrupt_and_unsupported_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    torch.save({"a": torch.zeros(100)}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "text.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    for name in ("trunc.pt", "garbage.pt", "text.pt", "garbage.safetensors"):
        with pytest.raises(CheckpointError, match="Cannot read"):
            read_checkpoint(tmp_path / name)
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="Unsupported checkpoint format"):
        read_checkpoint(tmp_path / "weights.npz")
    torch.save({"a": torch.zeros(1), "step": 3}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="non-tensor entries"):
        read_checkpoint(tmp_path / "mixed.pt")


# ------------------------------------------------------------------ configs and safetensors metadata


def _custom_config() -> SeemConfig:
    base = SeemConfig()
    return dataclasses.replace(
        base,
        backbone=dataclasses.replace(base.backbone, embed_dim=48, depths=(1, 2, 3, 1)),
        decoder=dataclasses.replace(base.decoder, num_queries=7, version="v0"),
        pixel_mean=(1.0, 2.0, 3.5),
    )


def test_config_dict_round_trip_preserves_tuples():
    config = _custom_config()
    data = json.loads(json.dumps(config_to_dict(config)))
    back = config_from_dict(data)
    assert back == config
    assert isinstance(back.backbone.depths, tuple) and isinstance(back.pixel_mean, tuple)
    assert config_from_dict({}) == SeemConfig()
    with pytest.raises(ConfigError, match="Unknown field"):
        config_from_dict({"decoder": {"num_querys": 3}})
    with pytest.raises(ConfigError, match="must be int"):
        config_from_dict({"decoder": {"num_queries": "many"}})


def test_config_round_trip_through_safetensors_metadata(tmp_path):
    config = _custom_config()
    a = torch.randn(3, 2)
    path = save_safetensors({"x": a, "y": a}, tmp_path / "sub" / "m.safetensors", {"note": "hi"}, config=config)
    meta = read_safetensors_metadata(path)
    assert meta["note"] == "hi"
    assert config_from_dict(json.loads(meta["seem_config"])) == config
    got = read_checkpoint(path)
    assert torch.equal(got["x"], a) and torch.equal(got["y"], a)
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temp file left


@needs_fixture
def test_official_yaml_of_fixture():
    c = config_from_official(FIXTURE / "config.yaml")
    assert (c.backbone.name, c.backbone.embed_dim, c.backbone.depths) == ("focal_dw", 32, (1, 1, 1, 1))
    assert c.backbone.focal_levels == (3, 3, 3, 3) and c.backbone.focal_windows == (3, 3, 3, 3)
    assert c.pixel_decoder.in_channels == (32, 64, 128, 256)
    assert (c.pixel_decoder.conv_dim, c.pixel_decoder.mask_dim, c.pixel_decoder.num_encoder_layers) == (64, 64, 1)
    assert (c.pixel_decoder.num_heads, c.pixel_decoder.dim_feedforward) == (2, 128)
    assert (c.text.width, c.text.layers, c.text.heads, c.text.dim_proj, c.text.causal) == (64, 2, 2, 64, True)
    d = c.decoder
    assert (d.hidden_dim, d.num_heads, d.dim_feedforward, d.num_layers, d.num_queries) == (64, 2, 128, 3, 10)
    assert (d.mask_dim, d.dim_proj, d.in_channels, d.spatial_memories, d.query_number) == (64, 64, 64, 32, 3)
    assert d.version == "v1" and d.max_spatial_len == (512, 512, 512, 512)
    assert c.inference.object_mask_threshold == 0.5 and c.inference.detections_per_image == 15
    assert c.pixel_mean == (123.675, 116.28, 103.53) and c.pixel_std == (58.395, 57.12, 57.375)
    assert (c.size_divisibility, c.test_shorter_side, c.test_max_size) == (32, 512, 1024)
    assert config_from_official(json.loads((FIXTURE / "config.json").read_text())) == c


# A minimal excerpt with the values of the official configs/seem/focalt_unicl_lang_v1.yaml.
FOCALT_V1_EXCERPT = """
MODEL:
  NAME: seem_model_v1
  DIM_PROJ: 512
  TEXT: {ARCH: vlpencoder, TOKENIZER: clip, CONTEXT_LENGTH: 77, WIDTH: 512, HEADS: 8, LAYERS: 12, AUTOGRESSIVE: True}
  BACKBONE:
    NAME: focal_dw
    FOCAL:
      PATCH_SIZE: 4
      EMBED_DIM: 96
      DEPTHS: [2, 2, 6, 2]
      FOCAL_LEVELS: [3, 3, 3, 3]
      FOCAL_WINDOWS: [3, 3, 3, 3]
      DROP_PATH_RATE: 0.3
      MLP_RATIO: 4.0
      USE_CONV_EMBED: True
      SCALING_MODULATOR: True
      USE_POSTLN: true
      USE_POSTLN_IN_MODULATION: false
      USE_LAYERSCALE: True
  ENCODER: {NAME: transformer_encoder_fpn, CONVS_DIM: 512, MASK_DIM: 512, NORM: "GN", TRANSFORMER_ENC_LAYERS: 6}
  DECODER:
    NAME: seem_v1
    HIDDEN_DIM: 512
    NUM_OBJECT_QUERIES: 101
    NHEADS: 8
    DIM_FEEDFORWARD: 2048
    MAX_SPATIAL_LEN: [512, 512, 512, 512]
    PRE_NORM: False
    ENFORCE_INPUT_PROJ: False
    SIZE_DIVISIBILITY: 32
    DEC_LAYERS: 10
    TEST: {OVERLAP_THRESHOLD: 0.8, OBJECT_MASK_THRESHOLD: 0.8}
ATTENTION_ARCH: {SPATIAL_MEMORIES: 32, QUERY_NUMBER: 3}
INPUT: {PIXEL_MEAN: [123.675, 116.280, 103.530], PIXEL_STD: [58.395, 57.120, 57.375]}
TEST: {DETECTIONS_PER_IMAGE: 100}
REF: {INPUT: {MIN_SIZE_TEST: 512, MAX_SIZE_TEST: 1024}}
"""


def _excerpt(**edits: str) -> str:
    text = FOCALT_V1_EXCERPT
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    return text


def test_official_focalt_v1_excerpt_equals_registry(tmp_path):
    path = tmp_path / "focalt_unicl_lang_v1.yaml"
    path.write_text(FOCALT_V1_EXCERPT)
    config = config_from_official(path)
    assert config == get_variant("seem_focalt_v1").config
    assert config.decoder.num_layers == 9 and config.pixel_decoder.in_channels == (96, 192, 384, 768)


def test_official_focall_and_v0_values_equal_registry():
    yaml = pytest.importorskip("yaml")
    focall = _excerpt(
        **{
            "NAME: focal_dw": "NAME: focal",
            "EMBED_DIM: 96": "EMBED_DIM: 192",
            "DEPTHS: [2, 2, 6, 2]": "DEPTHS: [2, 2, 18, 2]",
            "FOCAL_LEVELS: [3, 3, 3, 3]": "FOCAL_LEVELS: [4, 4, 4, 4]",
        }
    )
    assert config_from_official(yaml.safe_load(focall)) == get_variant("seem_focall_v1").config
    v0 = yaml.safe_load(_excerpt(**{"NAME: seem_model_v1": "NAME: seem_model_v0"}))
    assert config_from_official(v0) == get_variant("seem_focalt_v0").config
    demo = yaml.safe_load(_excerpt(**{"NAME: seem_model_v1": "NAME: seem_model_demo"}))
    assert config_from_official(demo).decoder.version == "v0"


def test_official_values_may_be_strings():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load(FOCALT_V1_EXCERPT)
    cfg["MODEL"]["DECODER"]["DEC_LAYERS"] = "10"
    cfg["MODEL"]["BACKBONE"]["FOCAL"]["DEPTHS"] = "[2, 2, 6, 2]"
    cfg["MODEL"]["DECODER"]["TEST"]["OBJECT_MASK_THRESHOLD"] = "0.4"
    cfg["MODEL"]["BACKBONE"]["FOCAL"]["USE_POSTLN"] = "true"
    cfg["TEST"] = {}
    cfg["MODEL"]["DECODER"]["TEST"]["DETECTIONS_PER_IMAGE"] = "50"  # demo configs keep it here
    config = config_from_official(cfg)
    assert config.decoder.num_layers == 9 and config.backbone.depths == (2, 2, 6, 2)
    assert config.inference.object_mask_threshold == 0.4 and config.inference.detections_per_image == 50


def _samvit_excerpt(size: str, **edits: str) -> str:
    """The values of the official configs/seem/samvit{b,l}_unicl_lang_v1.yaml (SAM ViT, MSDeformAttn decoder)."""
    backbone = FOCALT_V1_EXCERPT[FOCALT_V1_EXCERPT.index("  BACKBONE:"): FOCALT_V1_EXCERPT.index("  ENCODER:")]
    text = FOCALT_V1_EXCERPT.replace(backbone, f"  BACKBONE:\n    NAME: vit\n    VIT: {{SIZE: {size}}}\n").replace(
        "{NAME: transformer_encoder_fpn,",
        "{NAME: transformer_encoder_deform, DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES: [res3, res4, res5], "
        "COMMON_STRIDE: 4,",
    ).replace("SIZE_DIVISIBILITY: 32", "SIZE_DIVISIBILITY: 1024").replace("MIN_SIZE_TEST: 512", "MIN_SIZE_TEST: 1000")
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    return text


def test_official_samvit_values_equal_registry():
    yaml = pytest.importorskip("yaml")
    assert config_from_official(yaml.safe_load(_samvit_excerpt("base"))) == get_variant("seem_samvitb_v1").config
    assert config_from_official(yaml.safe_load(_samvit_excerpt("large"))) == get_variant("seem_samvitl_v1").config
    for edits, message in (
        ({"SIZE: base": "SIZE: giant"}, "MODEL.BACKBONE.VIT.SIZE 'giant' is not one of"),
        ({"[res3, res4, res5]": "[res2, res3, res4]"}, "DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES must be"),
        ({"COMMON_STRIDE: 4": "COMMON_STRIDE: 8"}, "COMMON_STRIDE must be 4"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_official(yaml.safe_load(_samvit_excerpt("base", **edits)))


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"NAME: focal_dw": "NAME: davit"}, "'davit' (DaViT) is not implemented yet"),
        ({"NAME: focal_dw": "NAME: vit"}, "missing the key MODEL.BACKBONE.VIT.SIZE"),
        ({"NAME: focal_dw": "NAME: resnet"}, "Unknown MODEL.BACKBONE.NAME 'resnet'"),
        ({"NAME: transformer_encoder_fpn": "NAME: transformer_encoder_msda"}, "'transformer_encoder_msda' is not implemented"),
        ({"NAME: seem_model_v1": "NAME: xdecoder_model"}, "is not a SEEM model"),
        ({"    HIDDEN_DIM: 512\n": ""}, "missing the key MODEL.DECODER.HIDDEN_DIM"),
        ({"DEC_LAYERS: 10": "DEC_LAYERS: ten"}, "MODEL.DECODER.DEC_LAYERS must be an integer"),
        ({"FOCAL_WINDOWS: [3, 3, 3, 3]": "FOCAL_WINDOWS: [3, 3]"}, "same length"),
    ],
)
def test_official_config_errors(tmp_path, edits, message):
    path = tmp_path / "bad.yaml"
    path.write_text(_excerpt(**edits))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_official(path)


def test_official_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config_from_official(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("MODEL: [unclosed\n")
    with pytest.raises(ConfigError, match="Cannot parse"):
        config_from_official(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_from_official(["not", "a", "dict"])  # type: ignore[arg-type]
