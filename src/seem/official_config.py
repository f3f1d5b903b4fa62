"""Official YAML configs (``configs/seem/*.yaml``, or the parsed dict) -> :class:`SeemConfig`.

Reads the keys the official ``from_config`` methods read (``MODEL.BACKBONE``, ``MODEL.ENCODER``,
``MODEL.TEXT``, ``MODEL.DECODER``, ``ATTENTION_ARCH``, ``INPUT``, ``TEST``); every error names the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from seem.configs import (
    VIT_SIZES,
    BackboneConfig,
    DecoderConfig,
    FocalNetConfig,
    InferenceConfig,
    PixelDecoderConfig,
    SeemConfig,
    TextConfig,
    ViTConfig,
)
from seem.errors import ConfigError, require

_VERSIONS = {"seem_model_v1": "v1", "seem_model_v0": "v0", "seem_model_demo": "v0"}
_BACKBONES = ("focal", "focal_dw", "vit")
_NOT_IMPLEMENTED = {"davit": "DaViT"}
_MISSING = object()
_F, _V, _D = "MODEL.BACKBONE.FOCAL.", "MODEL.BACKBONE.VIT.", "MODEL.DECODER."
_DEFORM_FFN = 1024  # transformer_encoder_deform.py::from_config hard-codes its encoder FFN width


class _Official:
    """Typed access to an official config dict by dotted key; every error names the key."""

    def __init__(self, cfg: Mapping) -> None:
        self.cfg = cfg

    def raw(self, key: str, default: object = _MISSING) -> object:
        node: object = self.cfg
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is _MISSING:
                    raise ConfigError(f"Official SEEM config is missing the key {key}")
                return default
            node = node[part]
        return node

    def text(self, key: str, default: object = _MISSING) -> str:
        return str(self.raw(key, default))

    def integer(self, key: str, default: object = _MISSING) -> int:
        return _to_int(self.raw(key, default), key)

    def number(self, key: str, default: object = _MISSING) -> float:
        return _to_float(self.raw(key, default), key)

    def flag(self, key: str, default: object = _MISSING) -> bool:
        value = self.raw(key, default)
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true/false, got {value!r}")

    def integers(self, key: str, default: object = _MISSING) -> tuple[int, ...]:
        return tuple(_to_int(v, key) for v in self._list(key, default))

    def numbers(self, key: str, default: object = _MISSING) -> tuple[float, ...]:
        return tuple(_to_float(v, key) for v in self._list(key, default))

    def _list(self, key: str, default: object) -> list:
        value = self.raw(key, default)
        if isinstance(value, str):  # "[2, 2, 6, 2]" or "2,2,6,2"
            value = [v for v in re.split(r"[\s,\[\]()]+", value) if v]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key} must be a non-empty list, got {value!r}")
        return list(value)


def _to_int(value: object, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, bool):
        try:
            number = float(str(value).strip())
            if number.is_integer():
                return int(number)
        except ValueError:
            pass
    raise ConfigError(f"{key} must be an integer, got {value!r}")


def _to_float(value: object, key: str) -> float:
    if not isinstance(value, bool):
        try:
            return float(str(value).strip())
        except ValueError:
            pass
    raise ConfigError(f"{key} must be a number, got {value!r}")


def _load_yaml(path: Path) -> object:
    if not path.is_file():
        raise ConfigError(f"Official config file not found: {path}")
    yaml = require("yaml", "hub")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8 YAML) file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Cannot parse the YAML config {path}: {exc}") from None


def config_from_official(cfg: Mapping | str | os.PathLike) -> SeemConfig:
    """Convert an official SEEM config (YAML path or parsed dict) to a :class:`SeemConfig`.

    Reads ``MODEL.NAME`` (``seem_model_v1`` -> ``"v1"``; ``seem_model_v0``/``seem_model_demo`` -> ``"v0"``),
    ``MODEL.BACKBONE`` (``focal``/``focal_dw``: ``FOCAL.*``; ``vit``: ``VIT.SIZE``), ``MODEL.ENCODER``
    (``transformer_encoder_fpn`` or ``transformer_encoder_deform``), ``MODEL.TEXT``, ``MODEL.DIM_PROJ``,
    ``MODEL.DECODER`` (``num_layers = DEC_LAYERS - 1``), ``ATTENTION_ARCH``, ``MODEL.DECODER.TEST``,
    ``TEST.DETECTIONS_PER_IMAGE``, ``INPUT.PIXEL_MEAN/STD`` and ``REF.INPUT``. Numbers may be strings.
    Sizes are required; flags and thresholds absent from the file keep the defaults of :mod:`seem.configs`.

    Raises:
        ConfigError: missing size keys, malformed values, a non-SEEM model, or a backbone / pixel
            decoder that is not implemented (DaViT).
    """
    loaded: object = _load_yaml(Path(cfg)) if isinstance(cfg, (str, os.PathLike)) else cfg
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"An official config must be a mapping, got {type(loaded).__name__}")
    o = _Official(loaded)
    model_name, backbone_name = _check_supported(o)
    backbone = _vit(o) if backbone_name == "vit" else _focal(o, backbone_name)
    conv_dim, mask_dim = o.integer("MODEL.ENCODER.CONVS_DIM"), o.integer("MODEL.ENCODER.MASK_DIM")
    num_heads, dim_feedforward = o.integer(_D + "NHEADS"), o.integer(_D + "DIM_FEEDFORWARD")
    pre_norm = o.flag(_D + "PRE_NORM", DecoderConfig().pre_norm)
    encoder_name = o.text("MODEL.ENCODER.NAME")
    pixel_decoder = PixelDecoderConfig(
        name=encoder_name,
        in_channels=backbone.out_channels,
        conv_dim=conv_dim,
        mask_dim=mask_dim,
        num_encoder_layers=o.integer("MODEL.ENCODER.TRANSFORMER_ENC_LAYERS"),
        num_heads=num_heads,
        dim_feedforward=_DEFORM_FFN if encoder_name == "transformer_encoder_deform" else dim_feedforward,
        pre_norm=pre_norm,
        norm=o.text("MODEL.ENCODER.NORM", PixelDecoderConfig().norm),
    )
    dim_proj = o.integer("MODEL.DIM_PROJ")
    text = TextConfig(
        context_length=o.integer("MODEL.TEXT.CONTEXT_LENGTH", TextConfig().context_length),
        width=o.integer("MODEL.TEXT.WIDTH"),
        layers=o.integer("MODEL.TEXT.LAYERS"),
        heads=o.integer("MODEL.TEXT.HEADS"),
        dim_proj=dim_proj,
        causal=o.flag("MODEL.TEXT.AUTOGRESSIVE", TextConfig().causal),  # sic: official spelling
    )
    decoder = _decoder(o, _VERSIONS[model_name], dim_proj=dim_proj, in_channels=conv_dim, mask_dim=mask_dim,
                       num_heads=num_heads, dim_feedforward=dim_feedforward, pre_norm=pre_norm)
    return _seem_config(o, backbone, pixel_decoder, text, decoder)


def _check_supported(o: _Official) -> tuple[str, str]:
    """``(MODEL.NAME, MODEL.BACKBONE.NAME)`` after checking that this package implements them."""
    model_name = o.text("MODEL.NAME")
    if model_name not in _VERSIONS:
        raise ConfigError(f"MODEL.NAME '{model_name}' is not a SEEM model; expected one of {sorted(_VERSIONS)}")
    backbone_name = o.text("MODEL.BACKBONE.NAME")
    if backbone_name in _NOT_IMPLEMENTED:
        raise ConfigError(
            f"Backbone '{backbone_name}' ({_NOT_IMPLEMENTED[backbone_name]}) is not implemented yet; "
            f"supported: {', '.join(_BACKBONES)}"
        )
    if backbone_name not in _BACKBONES:
        raise ConfigError(f"Unknown MODEL.BACKBONE.NAME '{backbone_name}'; supported: {', '.join(_BACKBONES)}")
    encoder_name = o.text("MODEL.ENCODER.NAME")
    if encoder_name not in PixelDecoderConfig.NAMES:
        raise ConfigError(
            f"Pixel decoder MODEL.ENCODER.NAME '{encoder_name}' is not implemented; "
            f"supported: {', '.join(PixelDecoderConfig.NAMES)}"
        )
    if encoder_name == "transformer_encoder_deform":
        _check_deform(o)
    tokenizer = o.text("MODEL.TEXT.TOKENIZER", "clip")
    if tokenizer != "clip":
        raise ConfigError(f"MODEL.TEXT.TOKENIZER '{tokenizer}' is not supported (only 'clip')")
    return model_name, backbone_name


def _check_deform(o: _Official) -> None:
    """The deformable pixel decoder's fixed layout: 3 transformer levels res3..res5 and a stride-4 FPN level."""
    levels = o.raw("MODEL.ENCODER.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", ["res3", "res4", "res5"])
    if not isinstance(levels, (list, tuple)) or sorted(str(v) for v in levels) != ["res3", "res4", "res5"]:
        raise ConfigError(
            f"MODEL.ENCODER.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES must be [res3, res4, res5], got {levels!r}"
        )
    stride = o.integer("MODEL.ENCODER.COMMON_STRIDE", 4)
    if stride != 4:
        raise ConfigError(f"MODEL.ENCODER.COMMON_STRIDE must be 4 (one FPN level on res2), got {stride}")


def _vit(o: _Official) -> ViTConfig:
    """``MODEL.BACKBONE.VIT.SIZE`` (official ``D2ViT`` hard-codes the sizes per SIZE, see :data:`VIT_SIZES`).

    ``VIT.{EMBED_DIM, DEPTH, NUM_HEADS, GLOBAL_ATTN_INDEXES, NECK_OUT_DIMS, IMAGE_SIZE}`` are not official keys;
    when present (reduced test configs) they override the sizes of ``SIZE``.
    """
    size = o.text(_V + "SIZE")
    if size not in VIT_SIZES:
        raise ConfigError(f"{_V}SIZE '{size}' is not one of {sorted(VIT_SIZES)}")
    dim, depth, heads, global_blocks = VIT_SIZES[size]
    v0 = ViTConfig()
    vit = ViTConfig(
        embed_dim=o.integer(_V + "EMBED_DIM", dim),
        depth=o.integer(_V + "DEPTH", depth),
        num_heads=o.integer(_V + "NUM_HEADS", heads),
        global_attn_indexes=o.integers(_V + "GLOBAL_ATTN_INDEXES", list(global_blocks)),
        neck_out_dims=o.integers(_V + "NECK_OUT_DIMS", list(v0.neck_out_dims)),
        image_size=o.integer(_V + "IMAGE_SIZE", v0.image_size),
    )
    if len(vit.neck_out_dims) != 4 or vit.embed_dim % vit.num_heads:
        raise ConfigError(f"{_V}NECK_OUT_DIMS needs 4 widths and EMBED_DIM must be divisible by NUM_HEADS")
    return vit


def _focal(o: _Official, name: str) -> FocalNetConfig:
    """``MODEL.BACKBONE.FOCAL.*`` (official ``modeling/vision/backbone/focal.py`` arguments)."""
    b0 = FocalNetConfig()
    backbone = FocalNetConfig(
        name=name,
        embed_dim=o.integer(_F + "EMBED_DIM"),
        depths=o.integers(_F + "DEPTHS"),
        focal_levels=o.integers(_F + "FOCAL_LEVELS"),
        focal_windows=o.integers(_F + "FOCAL_WINDOWS"),
        patch_size=o.integer(_F + "PATCH_SIZE", b0.patch_size),
        mlp_ratio=o.number(_F + "MLP_RATIO", b0.mlp_ratio),
        use_conv_embed=o.flag(_F + "USE_CONV_EMBED", b0.use_conv_embed),
        use_postln=o.flag(_F + "USE_POSTLN", b0.use_postln),
        use_postln_in_modulation=o.flag(_F + "USE_POSTLN_IN_MODULATION", b0.use_postln_in_modulation),
        use_layerscale=o.flag(_F + "USE_LAYERSCALE", b0.use_layerscale),
        scaling_modulator=o.flag(_F + "SCALING_MODULATOR", b0.scaling_modulator),
        drop_path_rate=o.number(_F + "DROP_PATH_RATE", b0.drop_path_rate),
    )
    if not len(backbone.depths) == len(backbone.focal_levels) == len(backbone.focal_windows):
        raise ConfigError(f"{_F}DEPTHS, FOCAL_LEVELS and FOCAL_WINDOWS must have the same length")
    return backbone


def _decoder(o: _Official, version: str, **shared: int | bool) -> DecoderConfig:
    """``MODEL.DECODER.*`` and ``ATTENTION_ARCH.*``; ``shared`` holds the sizes read once for several parts."""
    d0 = DecoderConfig()
    dec_layers = o.integer(_D + "DEC_LAYERS")
    if dec_layers < 2:
        raise ConfigError(f"{_D}DEC_LAYERS must be >= 2 (one prediction before the first layer), got {dec_layers}")
    return DecoderConfig(
        hidden_dim=o.integer(_D + "HIDDEN_DIM"),
        num_queries=o.integer(_D + "NUM_OBJECT_QUERIES"),
        num_layers=dec_layers - 1,
        enforce_input_proj=o.flag(_D + "ENFORCE_INPUT_PROJ", d0.enforce_input_proj),
        max_spatial_len=o.integers(_D + "MAX_SPATIAL_LEN", list(d0.max_spatial_len)),
        spatial_memories=o.integer("ATTENTION_ARCH.SPATIAL_MEMORIES", d0.spatial_memories),
        query_number=o.integer("ATTENTION_ARCH.QUERY_NUMBER", d0.query_number),
        version=version,
        **shared,  # type: ignore[arg-type]
    )


def _seem_config(o: _Official, backbone: BackboneConfig, pixel_decoder: PixelDecoderConfig, text: TextConfig,
                 decoder: DecoderConfig) -> SeemConfig:
    """The model parts plus ``MODEL.DECODER.TEST``, ``TEST.*`` and the ``INPUT`` / ``REF.INPUT`` settings."""
    i0, s0 = InferenceConfig(), SeemConfig()
    inference = InferenceConfig(
        object_mask_threshold=o.number(_D + "TEST.OBJECT_MASK_THRESHOLD", i0.object_mask_threshold),
        overlap_threshold=o.number(_D + "TEST.OVERLAP_THRESHOLD", i0.overlap_threshold),
        detections_per_image=o.integer(
            "TEST.DETECTIONS_PER_IMAGE", o.raw(_D + "TEST.DETECTIONS_PER_IMAGE", i0.detections_per_image)
        ),
    )
    mean, std = o.numbers("INPUT.PIXEL_MEAN", list(s0.pixel_mean)), o.numbers("INPUT.PIXEL_STD", list(s0.pixel_std))
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError("INPUT.PIXEL_MEAN and INPUT.PIXEL_STD must have 3 values (RGB)")
    return SeemConfig(
        backbone=backbone,
        pixel_decoder=pixel_decoder,
        text=text,
        decoder=decoder,
        inference=inference,
        pixel_mean=mean,
        pixel_std=std,
        size_divisibility=o.integer(_D + "SIZE_DIVISIBILITY", s0.size_divisibility),
        test_shorter_side=o.integer("REF.INPUT.MIN_SIZE_TEST", s0.test_shorter_side),
        test_max_size=o.integer("REF.INPUT.MAX_SIZE_TEST", s0.test_max_size),
    )
