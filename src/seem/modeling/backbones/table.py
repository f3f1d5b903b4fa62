"""The backbone table: ``name -> (config type, factory)``. Adding a backbone is one module plus one row here.

A factory takes the backbone's config and returns a module with ``forward(images (B, 3, H, W)) ->
{"res2".."res5"}`` and the attributes of :class:`Backbone`. The config type (in :mod:`seem.configs`) states the
output channels before anything is built and reads its sizes back from checkpoint keys (``describe_shapes``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from torch import Tensor, nn

from seem.configs import FocalNetConfig, MobileNetV2Config, ViTConfig
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


BACKBONES: dict[str, BackboneEntry] = {
    "focal": BackboneEntry(FocalNetConfig, FocalNet),  # SEEM Focal-L
    "focal_dw": BackboneEntry(FocalNetConfig, FocalNet),  # SEEM Focal-T
    "mobilenet_v2": BackboneEntry(MobileNetV2Config, lambda config: MobileNetV2()),  # bundled seem_tiny
    "vit": BackboneEntry(ViTConfig, SamViT),  # SEEM SAM-ViT-B / ViT-L
}
