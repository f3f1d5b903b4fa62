"""Backbones: parity with the official code on both golden fixtures (FocalNet and SAM-ViT, ``kind``) and the
official Focal-T / Focal-L layouts."""

from __future__ import annotations

import re

import pytest
import torch

from seem.build import build_backbone
from seem.configs import FocalNetConfig
from seem.modeling.backbones.focal import DropPath, FocalNet

from _fixture import (
    backbone_config,
    fixture_backbone,
    image_names,
    load_official_config,
    load_tensors,
    max_abs_diff,
    model_input,
    preprocess,
    read_png_chw,
    require_fixture,
    strip_prefix,
)

TOL = 1e-4  # README: a faithful re-implementation matches to ~1e-5


def test_preprocessing_matches_stored_input(kind):
    path = require_fixture(kind)
    cfg = load_official_config(path)
    stored = load_tensors(path / "inputs.safetensors")
    mean, std = tuple(cfg["INPUT"]["PIXEL_MEAN"]), tuple(cfg["INPUT"]["PIXEL_STD"])
    assert torch.allclose(stored["pixel_mean"].flatten(), torch.tensor(mean))
    assert torch.allclose(stored["pixel_std"].flatten(), torch.tensor(std))
    checked = 0
    for name in image_names(path):
        pixels = read_png_chw(path / f"{name}.png")
        if f"{name}.uint8" in stored:
            assert torch.equal(pixels, stored[f"{name}.uint8"])
        ours = preprocess(pixels, mean, std, cfg["MODEL"]["DECODER"].get("SIZE_DIVISIBILITY", 32))
        assert ours.shape[-2] % 32 == 0 and ours.shape[-1] % 32 == 0
        if f"{name}.normalized_padded" in stored:
            assert max_abs_diff(ours, stored[f"{name}.normalized_padded"]) == 0.0
            checked += 1
    assert checked >= 1, "fixture stores no normalized_padded input to check against"


def test_backbone_matches_official_outputs(kind):
    path = require_fixture(kind)
    model = fixture_backbone(path)
    names = image_names(path)
    assert names, "fixture has no features_<image>.safetensors"
    diffs = {}
    for name in names:
        expected = load_tensors(path / f"features_{name}.safetensors")
        with torch.no_grad():
            out = model(model_input(path, name))
        assert sorted(out) == ["res2", "res3", "res4", "res5"]
        for key, value in out.items():
            diffs[f"{name}.{key}"] = max_abs_diff(value, expected[f"backbone.{key}"])
        if "backbone.vit.patch_embed" in expected:  # SAM-ViT internals: patch embedding, every block's output
            with torch.no_grad():
                tokens = model.tokens(model_input(path, name))
            keys = ["backbone.vit.patch_embed"] + [f"backbone.vit.blocks.{i}" for i in range(len(tokens) - 1)]
            assert all(k in expected for k in keys)
            diffs.update({f"{name}.{k}": max_abs_diff(t, expected[k]) for k, t in zip(keys, tokens)})
    bad = {k: v for k, v in diffs.items() if v > TOL}
    assert not bad, f"backbone differs from the official outputs: {bad} (all: {diffs})"


def test_backbone_keys_equal_official_keys(kind):
    path = require_fixture(kind)
    model = build_backbone(backbone_config(load_official_config(path)))
    official = strip_prefix(load_tensors(path / "model.safetensors"), "backbone.")
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in official.items()}


# Official Focal-T (configs/seem/focalt_unicl_lang_v1.yaml) and Focal-L (focall_unicl_lang_v1.yaml) backbones.
FOCAL_T = FocalNetConfig(name="focal_dw", embed_dim=96, depths=(2, 2, 6, 2), focal_levels=(3, 3, 3, 3))
FOCAL_L = FocalNetConfig(name="focal", embed_dim=192, depths=(2, 2, 18, 2), focal_levels=(4, 4, 4, 4))


@pytest.mark.parametrize("config", [FOCAL_T, FOCAL_L], ids=["focal_t", "focal_l"])
def test_official_sizes_shapes_and_key_patterns(config: FocalNetConfig):
    torch.manual_seed(0)
    model = FocalNet(config).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    c = config.embed_dim
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (2, c, 16, 24),
        "res3": (2, 2 * c, 8, 12),
        "res4": (2, 4 * c, 4, 6),
        "res5": (2, 8 * c, 2, 3),
    }
    assert all(torch.isfinite(v).all() for v in out.values())

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    levels = config.focal_levels[0]
    assert shapes["patch_embed.proj.weight"] == (c, 3, 7, 7)
    assert shapes["norm0.weight"] == (c,) and shapes["norm3.weight"] == (8 * c,)
    assert shapes["layers.0.blocks.0.modulation.focal_layers.0.0.weight"] == (c, 1, 3, 3)
    assert shapes[f"layers.0.blocks.0.modulation.focal_layers.{levels - 1}.0.weight"] == (c, 1, 1 + 2 * levels, 1 + 2 * levels)
    assert f"layers.0.blocks.0.modulation.focal_layers.{levels}.0.weight" not in shapes
    assert shapes["layers.0.blocks.0.modulation.f.weight"] == (2 * c + levels + 1, c)
    assert shapes["layers.0.blocks.0.modulation.h.weight"] == (c, c, 1, 1)
    assert shapes["layers.2.downsample.proj.weight"] == (8 * c, 4 * c, 3, 3)
    assert shapes["layers.3.blocks.0.gamma_2"] == (8 * c,)
    assert "layers.3.downsample.proj.weight" not in shapes
    assert f"layers.2.blocks.{config.depths[2] - 1}.mlp.fc2.weight" in shapes
    has_dw = any(".dw1." in k or ".dw2." in k for k in shapes)
    assert has_dw == (config.name == "focal_dw")

    pattern = re.compile(
        r"^(patch_embed\.(proj|norm)\.(weight|bias)"
        r"|norm[0-3]\.(weight|bias)"
        r"|layers\.\d+\.downsample\.(proj|norm)\.(weight|bias)"
        r"|layers\.\d+\.blocks\.\d+\.(gamma_1|gamma_2"
        r"|(norm1|norm2|dw1|dw2|mlp\.fc1|mlp\.fc2|modulation\.(f|h|proj))\.(weight|bias)"
        r"|modulation\.focal_layers\.\d+\.0\.weight))$"
    )
    assert [k for k in shapes if not pattern.match(k)] == []


def test_drop_path_is_identity_in_eval_and_stochastic_in_training():
    torch.manual_seed(0)
    x = torch.randn(64, 5, 7)
    layer = DropPath(0.5)
    assert torch.equal(layer.eval()(x), x)
    y = layer.train()(x)
    dropped = (y.flatten(1) == 0).all(1)
    assert 0 < dropped.sum() < 64
    assert torch.allclose(y[~dropped], 2 * x[~dropped])
