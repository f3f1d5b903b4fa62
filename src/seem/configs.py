"""Frozen configuration dataclasses for every part of SEEM.

Each field mirrors one key of the official YAML configs (``configs/seem/*_v1.yaml``); the key is named
in the comment so that :func:`seem.official_config.config_from_official` stays a plain table. Change a
variant with :func:`dataclasses.replace`; only :mod:`seem.build` turns configs into modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackboneConfig:
    """Image backbone (official ``MODEL.BACKBONE``).

    ``name`` is ``"focal_dw"`` (FocalNet with depth-wise convs, SEEM Focal-T), ``"focal"`` (Focal-L) or
    ``"mobilenet_v2"`` (the bundled ``seem_tiny``; the focal fields are then unused).
    Outputs ``res2..res5`` at strides 4/8/16/32.
    """

    name: str = "focal_dw"
    embed_dim: int = 96  # FOCAL.EMBED_DIM
    depths: tuple[int, ...] = (2, 2, 6, 2)  # FOCAL.DEPTHS
    focal_levels: tuple[int, ...] = (3, 3, 3, 3)  # FOCAL.FOCAL_LEVELS
    focal_windows: tuple[int, ...] = (3, 3, 3, 3)  # FOCAL.FOCAL_WINDOWS
    patch_size: int = 4  # FOCAL.PATCH_SIZE
    mlp_ratio: float = 4.0  # FOCAL.MLP_RATIO
    use_conv_embed: bool = True  # FOCAL.USE_CONV_EMBED: 7x7/stride-4 stem, 3x3/stride-2 downsampling
    use_postln: bool = True  # FOCAL.USE_POSTLN: LayerNorm after each residual branch
    use_postln_in_modulation: bool = False  # FOCAL.USE_POSTLN_IN_MODULATION
    use_layerscale: bool = True  # FOCAL.USE_LAYERSCALE (gamma_1 / gamma_2)
    scaling_modulator: bool = True  # FOCAL.SCALING_MODULATOR: divide the context by the number of levels
    drop_path_rate: float = 0.3  # FOCAL.DROP_PATH_RATE (training only)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of res2..res5."""
        if self.name == "mobilenet_v2":
            return (24, 32, 96, 1280)
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


@dataclass(frozen=True)
class PixelDecoderConfig:
    """Transformer-encoder + FPN pixel decoder (official ``transformer_encoder_fpn``, ``MODEL.ENCODER``)."""

    in_channels: tuple[int, ...] = (96, 192, 384, 768)  # channels of res2..res5
    conv_dim: int = 512  # ENCODER.CONVS_DIM
    mask_dim: int = 512  # ENCODER.MASK_DIM
    num_encoder_layers: int = 6  # ENCODER.TRANSFORMER_ENC_LAYERS
    num_heads: int = 8  # DECODER.NHEADS (shared with the decoder in the official code)
    dim_feedforward: int = 2048  # DECODER.DIM_FEEDFORWARD (shared)
    pre_norm: bool = False  # DECODER.PRE_NORM (shared)
    norm: str = "GN"  # ENCODER.NORM: GroupNorm(32, C) after the FPN convs


@dataclass(frozen=True)
class TextConfig:
    """CLIP-style causal text transformer (official ``MODEL.TEXT`` + ``MODEL.DIM_PROJ``)."""

    vocab_size: int = 49408  # CLIP BPE vocabulary
    context_length: int = 77  # TEXT.CONTEXT_LENGTH
    width: int = 512  # TEXT.WIDTH
    layers: int = 12  # TEXT.LAYERS
    heads: int = 8  # TEXT.HEADS
    dim_proj: int = 512  # MODEL.DIM_PROJ: joint vision-language space
    causal: bool = True  # TEXT.AUTOGRESSIVE: triangular attention mask


@dataclass(frozen=True)
class DecoderConfig:
    """SEEM decoder (official ``modeling/interface/seem_v1.py``, ``MODEL.DECODER`` + ``ATTENTION_ARCH``)."""

    hidden_dim: int = 512  # DECODER.HIDDEN_DIM
    num_queries: int = 101  # DECODER.NUM_OBJECT_QUERIES
    num_heads: int = 8  # DECODER.NHEADS
    dim_feedforward: int = 2048  # DECODER.DIM_FEEDFORWARD
    num_layers: int = 9  # DECODER.DEC_LAYERS - 1 (one prediction is made before the first layer)
    pre_norm: bool = False  # DECODER.PRE_NORM
    mask_dim: int = 512  # ENCODER.MASK_DIM (mask embedding width = mask feature width)
    dim_proj: int = 512  # MODEL.DIM_PROJ (class-embedding width)
    in_channels: int = 512  # pixel-decoder CONVS_DIM; a 1x1 input projection exists only if != hidden_dim
    enforce_input_proj: bool = False  # DECODER.ENFORCE_INPUT_PROJ
    num_feature_levels: int = 3  # always 3 in SEEM: strides 32, 16, 8
    max_spatial_len: tuple[int, ...] = (512, 512, 512, 512)  # DECODER.MAX_SPATIAL_LEN (last: mean query)
    spatial_memories: int = 32  # ATTENTION_ARCH.SPATIAL_MEMORIES
    query_number: int = 3  # ATTENTION_ARCH.QUERY_NUMBER: spatial queries per prompted object (v1)
    version: str = "v1"  # "v1": QUERY_NUMBER random copies per object + per-object blocks; "v0": all queries copied


@dataclass(frozen=True)
class InferenceConfig:
    """Post-processing thresholds (official ``MODEL.DECODER.TEST`` and ``TEST``)."""

    object_mask_threshold: float = 0.8  # TEST.OBJECT_MASK_THRESHOLD (0.4 in the demo configs)
    overlap_threshold: float = 0.8  # TEST.OVERLAP_THRESHOLD
    detections_per_image: int = 100  # TEST.DETECTIONS_PER_IMAGE (instance top-k)
    grounding_logit_scale_max: float = 100.0  # vl_similarity clamps exp(logit_scale) at 100


@dataclass(frozen=True)
class SeemConfig:
    """A whole SEEM model. ``pixel_mean``/``pixel_std`` are in 0-255 RGB units (official ``INPUT``)."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # INPUT.PIXEL_MEAN
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)  # INPUT.PIXEL_STD
    size_divisibility: int = 32  # DECODER.SIZE_DIVISIBILITY: zero-pad (after normalisation) to this
    test_shorter_side: int = 512  # demo / RefCOCO resize of the shorter side (REF.INPUT.MIN_SIZE_TEST)
    test_max_size: int = 1024  # REF.INPUT.MAX_SIZE_TEST
    # label space the model was trained with, used when the user gives none (empty: COCO's 133 classes)
    default_vocabulary: tuple[str, ...] = ()
    default_thing_classes: tuple[str, ...] = ()
