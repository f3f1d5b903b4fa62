"""Named pretrained variants (timm-style): architecture config + where its weights live.

Each entry pairs a :class:`~seem.configs.SeemConfig` (values of the official ``configs/seem/*.yaml``
named in ``official_config``) with the file released at ``huggingface.co/xdecoder/SEEM``. Weights
metadata (hub file, license) is kept apart from the architecture. Nothing is downloaded here; see
:mod:`seem.hub`.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from seem.configs import (
    VIT_SIZES,
    DecoderConfig,
    FocalNetConfig,
    InferenceConfig,
    MobileNetV2Config,
    PixelDecoderConfig,
    SeemConfig,
    TextConfig,
    ViTConfig,
)
from seem.errors import ConfigError

HUB_REPO = "xdecoder/SEEM"
WEIGHTS_LICENSE = "afl-3.0"  # license tag of the xdecoder/SEEM Hugging Face repo (the code is Apache-2.0)


@dataclass(frozen=True, kw_only=True)
class PretrainedVariant:
    """A registered model: its config and the checkpoint that fits it.

    ``hub_filename`` is a file of ``hub_repo`` (official key names, pickled state dict).
    ``package_file``, when set, names a checkpoint shipped inside the package (``seem/assets/...``,
    this package's key names, ``.safetensors``) that is used instead of downloading.
    """

    name: str
    config: SeemConfig
    hub_repo: str = HUB_REPO
    hub_filename: str | None = None
    package_file: str | None = None
    license: str = WEIGHTS_LICENSE
    description: str = ""
    official_config: str = ""  # the official YAML whose values ``config`` reproduces


def _focal_config(backbone: FocalNetConfig, version: str) -> SeemConfig:
    """A SEEM config around a FocalNet backbone; all other values are the official v0/v1 ones
    (pixel decoder 512/6 layers, decoder 512 / 8 heads / 2048 FFN / DEC_LAYERS 10 / 101 queries,
    text 512 x 12 layers, OBJECT_MASK_THRESHOLD 0.8, DETECTIONS_PER_IMAGE 100), i.e. the defaults
    of :mod:`seem.configs`."""
    return SeemConfig(
        backbone=backbone,
        pixel_decoder=PixelDecoderConfig(in_channels=backbone.out_channels),
        decoder=DecoderConfig(version=version),
    )


def _samvit_config(size: str) -> SeemConfig:
    """A SEEM v1 config around SAM's ViT (``VIT.SIZE: size``) as in configs/seem/samvit{b,l}_unicl_lang_v1.yaml:
    the MSDeformAttn pixel decoder (512 wide, 6 layers, FFN 1024 hard-coded by the official code), inputs padded
    to 1024 x 1024 (``SIZE_DIVISIBILITY: 1024``, the ViT's position grid) after resizing the shorter side to
    1000 with the longer side at most 1024 (``REF.INPUT``); decoder and text encoder as the Focal v1 ones."""
    dim, depth, heads, global_blocks = VIT_SIZES[size]
    backbone = ViTConfig(embed_dim=dim, depth=depth, num_heads=heads, global_attn_indexes=global_blocks)
    return SeemConfig(
        backbone=backbone,
        pixel_decoder=PixelDecoderConfig(name="transformer_encoder_deform", in_channels=backbone.out_channels,
                                         dim_feedforward=1024),
        decoder=DecoderConfig(version="v1"),
        size_divisibility=1024,
        test_shorter_side=1000,
        test_max_size=1024,
    )


# FOCAL values of configs/seem/focalt_unicl_lang_{v0,v1}.yaml and focall_unicl_lang_{v0,v1}.yaml.
_FOCAL_T = FocalNetConfig(
    name="focal_dw", embed_dim=96, depths=(2, 2, 6, 2), focal_levels=(3, 3, 3, 3), focal_windows=(3, 3, 3, 3)
)
_FOCAL_L = FocalNetConfig(
    name="focal", embed_dim=192, depths=(2, 2, 18, 2), focal_levels=(4, 4, 4, 4), focal_windows=(3, 3, 3, 3)
)

# The label space seem_tiny was trained on: COCO's 80 things, CamVid's 11 classes, Clothing Co-Parsing's
# person and 58 parts, then the scene engine's shapes and surfaces (``configs/seem_tiny_real.json``).
SEEM_TINY_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "sky", "building", "pole", "road", "sidewalk", "tree", "sign",
    "fence", "pedestrian", "bicyclist", "accessories", "bag", "belt", "blazer", "blouse", "bodysuit", "boots",
    "bra", "bracelet", "cape", "cardigan", "clogs", "coat", "dress", "earrings", "flats", "glasses", "gloves",
    "hair", "hat", "heels", "hoodie", "intimate", "jacket", "jeans", "jumper", "leggings", "loafers",
    "necklace", "panties", "pants", "pumps", "purse", "ring", "romper", "sandals", "scarf", "shirt", "shoes",
    "shorts", "skin", "skirt", "sneakers", "socks", "stockings", "suit", "sunglasses", "sweater",
    "sweatshirt", "swimwear", "t-shirt", "tights", "top", "vest", "wallet", "watch", "wedges", "circle",
    "square", "rectangle", "triangle", "star", "ellipse", "hexagon", "cross", "heart", "table", "grass",
    "gravel", "wall", "water", "sand", "floor", "wood",
)
# Stuff (amorphous) classes of that label space: CamVid's and the scene engine's surfaces; all others are things.
_SEEM_TINY_STUFF = frozenset({"sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "grass",
                              "gravel", "wall", "water", "sand", "floor", "wood"})
SEEM_TINY_THING_CLASSES: tuple[str, ...] = tuple(c for c in SEEM_TINY_CLASSES if c not in _SEEM_TINY_STUFF)

# The bundled model: SEEM's architecture, small. Text width != hidden is fine: lang_proj maps
# width -> dim_proj, and dim_proj must equal the decoder's hidden size (tokens join the queries).
SEEM_TINY = SeemConfig(
    backbone=MobileNetV2Config(),
    pixel_decoder=PixelDecoderConfig(
        in_channels=(24, 32, 96, 1280), conv_dim=128, mask_dim=128, num_encoder_layers=1, num_heads=4,
        dim_feedforward=256,
    ),
    text=TextConfig(width=96, layers=3, heads=4, dim_proj=128),
    decoder=DecoderConfig(
        hidden_dim=128, num_queries=24, num_heads=4, dim_feedforward=512, num_layers=6, mask_dim=128,
        dim_proj=128, in_channels=128, spatial_memories=32, query_number=3,
    ),
    # 0.4: the best panoptic PQ of the bundled weights on CamVid val (thresholds 0.2-0.5, benchmarks/eval_bundled.py)
    # prompt_connected_masks: GrabCut NoC@90 12.5 -> 9.8 with the stage 3 + 4 weights (README, the bundled model)
    # click_fit: the newest click disagreed with the mask in 77 % of GrabCut rounds 2..20; NoC@90 9.8 -> 5.9
    # click_fit_logit_weight 0.5: held-out photos' mIoU@1 / @5 37.9 / 60.1 -> 40.3 / 65.6 (0.25-0.75 about equal;
    # benchmarks/eval_heldout_clicks.py); spatial_queries "all": 24 candidates per click instead of 3 (with the
    # re-fitted candidate scorer, held-out whole objects' first click 53.2 -> 58.6 %, --whole-objects);
    # box_bounds_masks: one box per whole object of the held-out photos, Eq. 5 52.0 -> 60.9 % (eval_boxes.py)
    # box_anchor: held-out whole objects, a box then 4 clicks with the box kept, mIoU@2 / @5 50.7 / 71.6 -> 57.6 / 74.5
    # (eval_heldout_clicks.py --whole-objects --first-prompt box)
    inference=InferenceConfig(object_mask_threshold=0.4, overlap_threshold=0.8, detections_per_image=50,
                              prompt_connected_masks=True, click_fit=True, click_fit_logit_weight=0.5,
                              spatial_queries="all", box_bounds_masks=True, box_anchor=True),
    test_shorter_side=320,
    test_max_size=640,
    # candidate scorer (seem.candidates) on the first click round: held-out whole objects' mIoU@1 50.6 -> 53.2
    # (benchmarks/eval_heldout_clicks.py --whole-objects); with the click-geometry features 59.0 -> 60.2
    candidate_scorer_hidden=32,
    # grounding scorer (seem.grounding_choice) for text alone: mean IoU of the class-name prompts of the training
    # sets' held-out photos, CamVid 43.0 -> 46.2 %, CCP 29.4 -> 30.8 % (Eq. 6 picked empty masks)
    grounding_scorer_hidden=32,
    # box scorer (seem.candidates) on a first round of boxes alone, over box-bounded candidates: one box per whole
    # object of the training sets' held-out photos, mean IoU 60.9 -> 64.0 % (benchmarks/eval_boxes.py)
    box_scorer_hidden=32,
    # refine scorer (seem.candidates) on later rounds of click-fitted clicks alone (memory given): held-out whole
    # objects' mIoU@2 / @3 / @5 62.9 / 63.2 / 70.8 -> 66.7 / 67.7 / 73.7 (benchmarks/eval_heldout_clicks.py --whole-objects)
    refine_scorer_hidden=32,
    default_vocabulary=SEEM_TINY_CLASSES,  # every class name of its training data (seem.data.real_mix)
    default_thing_classes=SEEM_TINY_THING_CLASSES,
)

_VARIANTS: tuple[PretrainedVariant, ...] = (
    PretrainedVariant(
        name="seem_focalt_v1",
        config=_focal_config(_FOCAL_T, "v1"),
        hub_filename="seem_focalt_v1.pt",
        description="SEEM v1, FocalNet-T (depth-wise) backbone, ~165M params; multi-object interactive.",
        official_config="configs/seem/focalt_unicl_lang_v1.yaml",
    ),
    PretrainedVariant(
        name="seem_focall_v1",
        config=_focal_config(_FOCAL_L, "v1"),
        hub_filename="seem_focall_v1.pt",
        description="SEEM v1, FocalNet-L backbone, ~342M params; multi-object interactive.",
        official_config="configs/seem/focall_unicl_lang_v1.yaml",
    ),
    PretrainedVariant(
        name="seem_samvitb_v1",
        config=_samvit_config("base"),
        hub_filename="seem_samvitb_v1.pt",
        description="SEEM v1, SAM ViT-B image encoder + SimpleFPN, MSDeformAttn pixel decoder, ~216M params; "
        "inputs padded to 1024x1024.",
        official_config="configs/seem/samvitb_unicl_lang_v1.yaml",
    ),
    PretrainedVariant(
        name="seem_samvitl_v1",
        config=_samvit_config("large"),
        hub_filename="seem_samvitl_v1.pt",
        description="SEEM v1, SAM ViT-L image encoder + SimpleFPN, MSDeformAttn pixel decoder, ~441M params; "
        "inputs padded to 1024x1024.",
        official_config="configs/seem/samvitl_unicl_lang_v1.yaml",
    ),
    PretrainedVariant(
        name="seem_focalt_v0",
        config=_focal_config(_FOCAL_T, "v0"),
        hub_filename="seem_focalt_v0.pt",
        description="SEEM v0 (single-object interactive), FocalNet-T (depth-wise) backbone.",
        official_config="configs/seem/focalt_unicl_lang_v0.yaml",
    ),
    PretrainedVariant(
        name="seem_focall_v0",
        config=_focal_config(_FOCAL_L, "v0"),
        hub_filename="seem_focall_v0.pt",
        description="SEEM v0 (single-object interactive), FocalNet-L backbone; the official demo's default.",
        official_config="configs/seem/focall_unicl_lang_v0.yaml",
    ),
    PretrainedVariant(
        name="seem_tiny",
        config=SEEM_TINY,
        hub_filename=None,
        package_file="assets/seem_tiny.safetensors",
        # trained on coco128, Clothing Co-Parsing, CamVid, BSDS500 and ImageNet photos: their terms carry over
        license="non-commercial research use (training data terms: CamVid CC BY-NC 4.0, BSDS500, Clothing "
        "Co-Parsing, ImageNet; see the README's model card); MobileNetV2 init BSD-3",
        description="SEEM architecture with a MobileNetV2 backbone, trained offline on generated scenes and real annotated photos; bundled.",
    ),
)
_BY_NAME = {v.name: v for v in _VARIANTS}


def iter_variants() -> Iterator[PretrainedVariant]:
    """All registered variants, in registration order."""
    return iter(_VARIANTS)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered variants, optionally filtered by a shell pattern (``"*focalt*"``)."""
    names = sorted(_BY_NAME)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def get_variant(name: str) -> PretrainedVariant:
    """The registered variant called ``name``.

    Raises:
        ConfigError: unknown name; the message suggests close matches and lists all names.
    """
    if name in _BY_NAME:
        return _BY_NAME[name]
    close = difflib.get_close_matches(name, list(_BY_NAME), n=3, cutoff=0.5)
    suggestion = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"Unknown model '{name}'.{suggestion} Available: {', '.join(list_models())}.")


def variant_for_filename(filename: str) -> PretrainedVariant | None:
    """The variant whose hub file is called ``filename`` (e.g. ``"seem_focalt_v1.pt"``), if any."""
    return next((v for v in _VARIANTS if v.hub_filename == filename), None)


def get_config(name: str, **overrides: Any) -> SeemConfig:
    """The config of variant ``name``, with top-level fields replaced by ``overrides``.

    ``overrides`` are :class:`SeemConfig` fields of several types; ``replace`` rejects unknown names.
    """
    config = get_variant(name).config
    return replace(config, **overrides) if overrides else config
