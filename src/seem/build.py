"""The one place that turns a :class:`SeemConfig` into modules."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from seem.configs import SeemConfig
from seem.errors import ConfigError
from seem.modeling.seem import Seem


def build_seem(config: SeemConfig) -> Seem:
    """Build an untrained :class:`Seem` (eval mode) from ``config``.

    Raises:
        ConfigError: an unsupported backbone or inconsistent widths (the official architecture concatenates
            text tokens of width ``dim_proj`` with queries of width ``hidden_dim``, so they must be equal).
    """
    from seem.modeling.backbones.focal import FocalNet
    from seem.modeling.decoder import SeemDecoder
    from seem.modeling.language.text_encoder import TextEncoder
    from seem.modeling.language.tokenizer import ClipTokenizer
    from seem.modeling.pixel_decoder import TransformerEncoderPixelDecoder

    if config.backbone.name not in ("focal", "focal_dw", "mobilenet_v2"):
        raise ConfigError(
            f"backbone '{config.backbone.name}' is not implemented (supported: focal, focal_dw, mobilenet_v2)"
        )
    if config.text.dim_proj != config.decoder.hidden_dim:
        raise ConfigError(
            f"text dim_proj ({config.text.dim_proj}) must equal decoder hidden_dim ({config.decoder.hidden_dim})"
        )
    if config.decoder.dim_proj != config.text.dim_proj:
        raise ConfigError(f"decoder dim_proj ({config.decoder.dim_proj}) != text dim_proj ({config.text.dim_proj})")
    pixel_cfg = replace(config.pixel_decoder, in_channels=config.backbone.out_channels)
    if pixel_cfg != config.pixel_decoder:
        config = replace(config, pixel_decoder=pixel_cfg)
    if config.decoder.in_channels != config.pixel_decoder.conv_dim:
        config = replace(config, decoder=replace(config.decoder, in_channels=config.pixel_decoder.conv_dim))
    if config.decoder.mask_dim != config.pixel_decoder.mask_dim:
        raise ConfigError(
            f"decoder mask_dim ({config.decoder.mask_dim}) != pixel decoder mask_dim ({config.pixel_decoder.mask_dim})"
        )
    backbone: nn.Module
    if config.backbone.name == "mobilenet_v2":
        from seem.modeling.backbones.mobilenet import MobileNetV2

        backbone = MobileNetV2()
    else:
        backbone = FocalNet(config.backbone)
    model = Seem(
        backbone=backbone,
        pixel_decoder=TransformerEncoderPixelDecoder(config.pixel_decoder),
        text_encoder=TextEncoder(config.text),
        decoder=SeemDecoder(config.decoder),
        tokenizer=ClipTokenizer(),
        config=config,
    )
    return model.eval()
