"""Frozen configuration dataclasses for every part of SEEM.

Each field mirrors one key of the official YAML configs (``configs/seem/*_v1.yaml``); the key is named
in the comment so that :func:`seem.official_config.config_from_official` stays a plain table. Change a
variant with :func:`dataclasses.replace`; only :mod:`seem.build` turns configs into modules.

The backbone config is one dataclass per backbone family (:class:`FocalNetConfig`, :class:`MobileNetV2Config`,
:class:`ViTConfig`), told apart by ``name``; each states the channels of the ``res2..res5`` maps it produces
and how to read its sizes back from a checkpoint's keys (``describe_shapes``, for the converter's messages).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from seem.errors import ConfigError

STRIDES = (4, 8, 16, 32)  # res2..res5, for every backbone


@dataclass(frozen=True)
class FocalNetConfig:
    """FocalNet image backbone (official ``MODEL.BACKBONE.FOCAL``, ``modeling/vision/backbone/focal*.py``).

    ``name`` is ``"focal_dw"`` (FocalNet with depth-wise convs, SEEM Focal-T) or ``"focal"`` (Focal-L).
    Outputs ``res2..res5`` at strides 4/8/16/32 with ``embed_dim * 2**i`` channels.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("focal", "focal_dw")

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
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    def describe(self) -> dict[str, object]:
        """The sizes :meth:`describe_shapes` reads from a checkpoint, as this config declares them."""
        return {"backbone name": self.name, "backbone embed_dim": self.embed_dim,
                "backbone depths": tuple(self.depths), "focal levels": self.focal_levels[0]}

    @staticmethod
    def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
        """Sizes readable from ``backbone.*`` keys of a FocalNet checkpoint (empty when it holds none)."""
        blocks: dict[int, int] = {}
        levels: set[int] = set()
        for key in shapes:
            m = re.match(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.", key)
            if m:
                stage, block = int(m.group(1)), int(m.group(2))
                blocks[stage] = max(blocks.get(stage, 0), block + 1)
            m = re.match(r"backbone\.layers\.0\.blocks\.0\.modulation\.focal_layers\.(\d+)\.", key)
            if m:
                levels.add(int(m.group(1)))
        if not blocks:
            return {}
        info: dict[str, object] = {}
        if "backbone.patch_embed.proj.weight" in shapes:
            info["backbone embed_dim"] = shapes["backbone.patch_embed.proj.weight"][0]
        info["backbone depths"] = tuple(blocks.get(i, 0) for i in range(max(blocks) + 1))
        info["backbone name"] = "focal_dw" if "backbone.layers.0.blocks.0.dw1.weight" in shapes else "focal"
        if levels:
            info["focal levels"] = len(levels)
        return info


@dataclass(frozen=True)
class MobileNetV2Config:
    """MobileNetV2 (torchvision layout) of the bundled ``seem_tiny``; it has no size options."""

    NAMES: ClassVar[tuple[str, ...]] = ("mobilenet_v2",)

    name: str = "mobilenet_v2"

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of res2..res5 (``features[3, 6, 13, 18]``)."""
        return (24, 32, 96, 1280)

    def describe(self) -> dict[str, object]:
        return {"backbone name": self.name}

    @staticmethod
    def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
        """``{"backbone name": "mobilenet_v2"}`` for torchvision-style ``backbone.features.*`` keys."""
        return {"backbone name": "mobilenet_v2"} if "backbone.features.18.0.weight" in shapes else {}


# EfficientNet-Lite variants: (width, depth) multipliers of EfficientNet-B0's stages (TF model garden)
EFFICIENTNET_LITE_SIZES: dict[str, tuple[float, float]] = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite2": (1.1, 1.2)}


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """EfficientNet-Lite (lukemelas layout, :mod:`seem.modeling.backbones.efficientnet_lite`); ``name`` is the
    variant, ``"efficientnet_lite0"`` or ``"efficientnet_lite2"``, which fixes every size."""

    NAMES: ClassVar[tuple[str, ...]] = tuple(EFFICIENTNET_LITE_SIZES)

    name: str = "efficientnet_lite0"

    def __post_init__(self) -> None:
        if self.name not in EFFICIENTNET_LITE_SIZES:
            raise ConfigError(f"EfficientNet-Lite variant must be one of {list(EFFICIENTNET_LITE_SIZES)}, got {self.name!r}")

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of res2..res5: stages 2, 3 and 5 (24, 40 / 48, 112 / 120) and the 1280-channel head."""
        width = EFFICIENTNET_LITE_SIZES[self.name][0]
        return (round_channels(24, width), round_channels(40, width), round_channels(112, width), 1280)

    def describe(self) -> dict[str, object]:
        return {"backbone name": self.name}

    @staticmethod
    def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
        """``{"backbone name": variant}`` for lukemelas-style ``backbone._blocks.*`` keys (Lite0: 16 blocks,
        Lite2: 21)."""
        if "backbone._conv_head.weight" not in shapes:
            return {}
        blocks = {int(m.group(1)) for k in shapes if (m := re.match(r"backbone\._blocks\.(\d+)\.", k))}
        return {"backbone name": "efficientnet_lite2" if len(blocks) > 16 else "efficientnet_lite0"}


def round_channels(channels: int, width: float) -> int:
    """TensorFlow EfficientNet's ``round_filters``: ``channels * width`` to a multiple of 8, never below 90 % of it."""
    scaled = channels * width
    out = max(8, int(scaled + 4) // 8 * 8)
    return out + 8 if out < 0.9 * scaled else out


# official D2ViT sizes per MODEL.BACKBONE.VIT.SIZE: (embed dim, depth, heads, global-attention blocks)
VIT_SIZES: dict[str, tuple[int, int, int, tuple[int, ...]]] = {
    "base": (768, 12, 12, (2, 5, 8, 11)),
    "large": (1024, 24, 16, (5, 11, 17, 23)),
    "huge": (1280, 32, 16, (7, 15, 23, 31)),
}


@dataclass(frozen=True)
class ViTConfig:
    """SAM's ViT image encoder with a SimpleFPN neck (official ``modeling/vision/backbone/vit.py::D2ViT``).

    Defaults are ViT-B (``VIT.SIZE: base``); the official code hard-codes the sizes per ``SIZE`` and
    ``image_size = 1024`` (see :data:`VIT_SIZES`). Outputs ``res2..res5`` (strides 4/8/16/32) with
    ``neck_out_dims`` channels.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("vit",)

    name: str = "vit"
    embed_dim: int = 768  # ViT width
    depth: int = 12  # number of transformer blocks
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)  # blocks with global attention; the others use windows
    window_size: int = 14  # window attention size in tokens
    patch_size: int = 16
    image_size: int = 1024  # the absolute position embedding covers image_size / patch_size tokens per side
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    use_rel_pos: bool = True  # decomposed relative positions in every attention
    neck_out_dims: tuple[int, ...] = (128, 256, 512, 1024)  # SimpleFPN channels of res2..res5

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of res2..res5 (the SimpleFPN outputs)."""
        return tuple(self.neck_out_dims)

    def describe(self) -> dict[str, object]:
        return {"backbone name": self.name, "backbone embed_dim": self.embed_dim, "vit depth": self.depth,
                "vit global blocks": tuple(self.global_attn_indexes)}

    @staticmethod
    def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
        """Sizes readable from ``backbone.*`` keys of a SAM-ViT checkpoint (empty when it holds none).

        Global blocks are those whose relative-position table is longer than a window's (``2 * 14 - 1``).
        """
        if "backbone.pos_embed" not in shapes:
            return {}
        rel = {int(m.group(1)): shapes[k][0] for k in shapes
               if (m := re.match(r"backbone\.blocks\.(\d+)\.attn\.rel_pos_h$", k))}
        info: dict[str, object] = {"backbone name": "vit", "backbone embed_dim": shapes["backbone.pos_embed"][-1]}
        if rel:
            info["vit depth"] = max(rel) + 1
            shortest = min(rel.values())
            info["vit global blocks"] = tuple(i for i in sorted(rel) if rel[i] > shortest)
        return info


BackboneConfig = FocalNetConfig | MobileNetV2Config | ViTConfig | EfficientNetLiteConfig  # ``name`` tells which
BACKBONE_CONFIG_TYPES: tuple[type[FocalNetConfig], type[MobileNetV2Config], type[ViTConfig], type[EfficientNetLiteConfig]] = (
    FocalNetConfig, MobileNetV2Config, ViTConfig, EfficientNetLiteConfig)


@dataclass(frozen=True)
class PixelDecoderConfig:
    """Pixel decoder (official ``MODEL.ENCODER``); ``name`` chooses which one.

    ``"transformer_encoder_fpn"`` (Focal / DaViT / MobileNetV2): a transformer encoder on res5 and an FPN
    (:mod:`seem.modeling.pixel_decoder`). ``"transformer_encoder_deform"`` (SAM-ViT): a multi-scale deformable
    attention encoder on res3..res5 plus one FPN level (:mod:`seem.modeling.msdeform_pixel_decoder`).
    """

    NAMES: ClassVar[tuple[str, ...]] = ("transformer_encoder_fpn", "transformer_encoder_deform")

    name: str = "transformer_encoder_fpn"  # ENCODER.NAME
    in_channels: tuple[int, ...] = (96, 192, 384, 768)  # channels of res2..res5 (= the backbone's out_channels)
    conv_dim: int = 512  # ENCODER.CONVS_DIM
    mask_dim: int = 512  # ENCODER.MASK_DIM
    num_encoder_layers: int = 6  # ENCODER.TRANSFORMER_ENC_LAYERS
    num_heads: int = 8  # DECODER.NHEADS (shared with the decoder in the official code)
    dim_feedforward: int = 2048  # DECODER.DIM_FEEDFORWARD (shared); the deformable encoder hard-codes 1024
    pre_norm: bool = False  # DECODER.PRE_NORM (shared; the deformable encoder is always post-norm)
    norm: str = "GN"  # ENCODER.NORM: GroupNorm(32, C) after the FPN convs
    num_points: int = 4  # deformable attention: sampling points per head and level (official enc_n_points)
    # Fourier octaves of the pixel position added (through a learned, zero-initialised projection) to the mask
    # features (seem.modeling.mask_position); 0 = off, as in every official model; transformer_encoder_fpn only
    mask_position_frequencies: int = 0


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


SPATIAL_QUERY_MODES = ("sampled", "all")


@dataclass(frozen=True)
class InferenceConfig:
    """Post-processing thresholds (official ``MODEL.DECODER.TEST`` and ``TEST``)."""

    object_mask_threshold: float = 0.8  # TEST.OBJECT_MASK_THRESHOLD (0.4 in the demo configs)
    overlap_threshold: float = 0.8  # TEST.OVERLAP_THRESHOLD
    detections_per_image: int = 100  # TEST.DETECTIONS_PER_IMAGE (instance top-k)
    grounding_logit_scale_max: float = 100.0  # vl_similarity clamps exp(logit_scale) at 100
    # visual prompts: drop mask regions no positive prompt touches (seem.postprocess.keep_prompted_components);
    # not in the official code, so off for the official variants
    prompt_connected_masks: bool = False
    # a round with boxes: limit each object's mask to the bounding box of its positive prompts (the box;
    # seem.box_bounds.box_bounded): a box says where the object is. Not in the official code: off for them
    box_bounds_masks: bool = False
    # a refinement round (memory given) of boxes and clicks: decode each object from its clicks and an anchor click
    # at the previous mask's interior point inside its box, the box bounding the mask (seem.box_anchor): a box's
    # 512 sampled points otherwise drown the clicks. Not in the official code: off for them
    box_anchor: bool = False
    # clicks: fit each object's mask embedding until its clicks agree with the mask (seem.click_fit, a BRS-style
    # refinement); margin = the logit a click should reach, prior = the pull towards the decoder's embedding,
    # logit weight = the share of that pull measured on the mask logits over the image (seem.click_fit.prior_metric)
    click_fit: bool = False
    click_fit_margin: float = 2.0
    click_fit_prior: float = 1.0
    click_fit_iters: int = 20
    click_fit_logit_weight: float = 0.0
    # an interaction's first round (no memory prompt) of click-fitted clicks alone: choose each object's spatial
    # query by the model's learned candidate scorer when it has one (SeemConfig.candidate_scorer_hidden,
    # seem.candidates) instead of Eq. 5's mask-embedding match; a first round of boxes alone: by its box scorer
    # (SeemConfig.box_scorer_hidden); a later round (memory given) of click-fitted clicks alone: by its refine
    # scorer (SeemConfig.refine_scorer_hidden). Clicks without the fit, boxes with clicks (seem.box_anchor), mixed
    # prompt types, text, strokes, masks and references keep Eq. 5
    candidate_scorer: bool = True
    # a text prompt alone: choose its grounding query by the model's learned grounding scorer when it has one
    # (SeemConfig.grounding_scorer_hidden, seem.grounding_choice) instead of Eq. 6's similarity alone
    grounding_scorer: bool = True
    # which object queries a visual prompt's spatial queries copy at inference: "sampled" = QUERY_NUMBER random
    # draws per object (official v1, and what training does); "all" = every object query once per object (as
    # v0 does), so Eq. 5 / the candidate scorer choose among num_queries candidates (seem.candidates)
    spatial_queries: str = "sampled"

    def __post_init__(self) -> None:
        if self.spatial_queries not in SPATIAL_QUERY_MODES:
            raise ConfigError(f"spatial_queries must be one of {SPATIAL_QUERY_MODES}, got {self.spatial_queries!r}")
        w = self.click_fit_logit_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise ConfigError(f"click_fit_logit_weight must be a number in [0, 1], got {w!r}")


@dataclass(frozen=True)
class SeemConfig:
    """A whole SEEM model. ``pixel_mean``/``pixel_std`` are in 0-255 RGB units (official ``INPUT``)."""

    backbone: BackboneConfig = field(default_factory=FocalNetConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # INPUT.PIXEL_MEAN
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)  # INPUT.PIXEL_STD
    # DECODER.SIZE_DIVISIBILITY: zero-pad (after normalisation) to a multiple of this; 1024 for SAM-ViT, whose
    # position embedding is made for one input size
    size_divisibility: int = 32
    test_shorter_side: int = 512  # demo / RefCOCO resize of the shorter side (REF.INPUT.MIN_SIZE_TEST)
    test_max_size: int = 1024  # REF.INPUT.MAX_SIZE_TEST
    # hidden width of a learned scorer of the spatial-query candidates (seem.candidates); 0: none, Eq. 5 picks
    # (every official checkpoint). Not in the official code.
    candidate_scorer_hidden: int = 0
    # hidden width of a learned scorer of a text prompt's grounding queries (seem.grounding_choice); 0: none,
    # Eq. 6 picks (every official checkpoint). Not in the official code.
    grounding_scorer_hidden: int = 0
    # hidden width of a learned scorer of a box's spatial-query candidates (seem.candidates, same features as the
    # click scorer); 0: none, Eq. 5 picks. Not in the official code.
    box_scorer_hidden: int = 0
    # hidden width of a learned scorer of the click candidates of later rounds (a memory prompt given: the previous
    # round's mask; seem.candidates: the click scorer's features plus the candidate's overlap with that mask); 0: none,
    # Eq. 5 picks. Not in the official code.
    refine_scorer_hidden: int = 0
    # label space the model was trained with, used when the user gives none (empty: COCO's 133 classes)
    default_vocabulary: tuple[str, ...] = ()
    default_thing_classes: tuple[str, ...] = ()
