"""The one place that turns a :class:`SeemConfig` into modules.

The backbone comes from :data:`seem.modeling.backbones.table.BACKBONES` (``name -> (config type, factory)``),
the pixel decoder from :data:`PIXEL_DECODERS` (``PixelDecoderConfig.name -> class``). Widths that must agree
between parts are checked, never rewritten: a config that does not fit together raises.
"""

from __future__ import annotations

from typing import cast

from torch import nn

from seem.configs import STRIDES, BackboneConfig, SeemConfig
from seem.errors import ConfigError
from seem.modeling.backbones.table import BACKBONES, Backbone
from seem.modeling.msdeform_pixel_decoder import MSDeformAttnPixelDecoder
from seem.modeling.pixel_decoder import TransformerEncoderPixelDecoder
from seem.modeling.seem import Seem

PIXEL_DECODERS: dict[str, type[nn.Module]] = {  # PixelDecoderConfig.name (official MODEL.ENCODER.NAME) -> class
    "transformer_encoder_fpn": TransformerEncoderPixelDecoder,  # Focal, DaViT, MobileNetV2
    "transformer_encoder_deform": MSDeformAttnPixelDecoder,  # SAM-ViT
}


def build_backbone(config: BackboneConfig) -> nn.Module:
    """The backbone module named by ``config.name`` (untrained).

    Raises:
        ConfigError: an unknown name, a config of another family than the name's (e.g. ``name="vit"`` on a
            ``FocalNetConfig``), or a module whose outputs differ from what its config states.
    """
    entry = BACKBONES.get(config.name)
    if entry is None:
        raise ConfigError(f"backbone '{config.name}' is not implemented (supported: {', '.join(sorted(BACKBONES))})")
    if not isinstance(config, entry.config_type):
        raise ConfigError(
            f"backbone '{config.name}' needs a {entry.config_type.__name__}, got a {type(config).__name__}"
        )
    module = entry.factory(config)
    backbone = cast(Backbone, module)
    if tuple(backbone.out_channels) != tuple(config.out_channels) or tuple(backbone.strides) != STRIDES:
        raise ConfigError(
            f"backbone '{config.name}' outputs channels {tuple(backbone.out_channels)} at strides "
            f"{tuple(backbone.strides)}; its config states {tuple(config.out_channels)} at {STRIDES}"
        )
    return module


def check_config(config: SeemConfig) -> None:
    """Raise :class:`ConfigError` naming the first pair of parts whose widths do not fit together.

    The official architecture concatenates text tokens of width ``dim_proj`` with queries of width
    ``hidden_dim``, feeds the backbone's res2..res5 to the pixel decoder, the pixel decoder's ``conv_dim`` maps to
    the decoder and its ``mask_dim`` features to the mask embeddings.
    """
    c = config
    pairs = (
        ("text dim_proj", c.text.dim_proj, "decoder hidden_dim", c.decoder.hidden_dim),
        ("decoder dim_proj", c.decoder.dim_proj, "text dim_proj", c.text.dim_proj),
        ("pixel_decoder in_channels", tuple(c.pixel_decoder.in_channels), f"backbone '{c.backbone.name}' out_channels",
         tuple(c.backbone.out_channels)),
        ("decoder in_channels", c.decoder.in_channels, "pixel decoder conv_dim", c.pixel_decoder.conv_dim),
        ("decoder mask_dim", c.decoder.mask_dim, "pixel decoder mask_dim", c.pixel_decoder.mask_dim),
    )
    for name_a, a, name_b, b in pairs:
        if a != b:
            raise ConfigError(f"{name_a} {a if isinstance(a, tuple) else f'({a})'} must equal {name_b} "
                              f"{b if isinstance(b, tuple) else f'({b})'}")
    if c.pixel_decoder.name not in PIXEL_DECODERS:
        raise ConfigError(
            f"pixel decoder '{c.pixel_decoder.name}' is not implemented (supported: {', '.join(PIXEL_DECODERS)})"
        )
    for name in ("candidate_scorer_hidden", "grounding_scorer_hidden", "box_scorer_hidden", "refine_scorer_hidden"):
        hidden = getattr(c, name)
        if not isinstance(hidden, int) or isinstance(hidden, bool) or not 0 <= hidden <= 1024:
            raise ConfigError(f"{name} must be an integer in 0..1024, got {hidden!r}")
    f = c.pixel_decoder.mask_position_frequencies
    if not isinstance(f, int) or isinstance(f, bool) or not 0 <= f <= 16:
        raise ConfigError(f"pixel_decoder mask_position_frequencies must be an integer in 0..16, got {f!r}")
    if f and c.pixel_decoder.name != "transformer_encoder_fpn":
        raise ConfigError("pixel_decoder mask_position_frequencies is only implemented for transformer_encoder_fpn, "
                          f"not '{c.pixel_decoder.name}'")
    if c.size_divisibility <= 0 or c.size_divisibility % STRIDES[-1]:
        raise ConfigError(f"size_divisibility ({c.size_divisibility}) must be a positive multiple of {STRIDES[-1]}")


def build_pixel_decoder(config: SeemConfig) -> nn.Module:
    """The pixel decoder named by ``config.pixel_decoder.name`` (untrained; see :func:`check_config`)."""
    return PIXEL_DECODERS[config.pixel_decoder.name](config.pixel_decoder)


def build_seem(config: SeemConfig) -> Seem:
    """Build an untrained :class:`Seem` (eval mode) from ``config``.

    Raises:
        ConfigError: an unsupported backbone or pixel decoder, or parts whose widths do not fit
            (:func:`check_config`).
    """
    from seem.candidates import SCORER_FEATURES, CandidateScorer
    from seem.grounding_choice import GROUNDING_FEATURES
    from seem.modeling.decoder import SeemDecoder
    from seem.modeling.language.text_encoder import TextEncoder
    from seem.modeling.language.tokenizer import ClipTokenizer

    check_config(config)
    model = Seem(
        backbone=build_backbone(config.backbone),
        pixel_decoder=build_pixel_decoder(config),
        text_encoder=TextEncoder(config.text),
        decoder=SeemDecoder(config.decoder),
        tokenizer=ClipTokenizer(),
        config=config,
        candidate_scorer=CandidateScorer(config.candidate_scorer_hidden, SCORER_FEATURES["candidate_scorer"])
        if config.candidate_scorer_hidden else None,
        grounding_scorer=CandidateScorer(config.grounding_scorer_hidden, GROUNDING_FEATURES, "grounding scorer")
        if config.grounding_scorer_hidden else None,
        box_scorer=CandidateScorer(config.box_scorer_hidden, SCORER_FEATURES["box_scorer"], "box scorer")
        if config.box_scorer_hidden else None,
        refine_scorer=CandidateScorer(config.refine_scorer_hidden, SCORER_FEATURES["refine_scorer"], "refine scorer")
        if config.refine_scorer_hidden else None,
    )
    return model.eval()
