"""SEEM: Segment Everything Everywhere All at Once (Zou et al., NeurIPS 2023), CPU-first PyTorch.

Public API (names resolve on first use: importing the package loads nothing heavy; the model classes load
torch, numpy and pillow; nothing is downloaded):

* :func:`from_pretrained` / :func:`build_seem` -> :class:`Seem`
* :class:`SeemPredictor`: ``set_image`` once, then ``predict`` (a :class:`Prompts` of text, points, boxes,
  scribbles, polygons, masks and referred regions, plus memory) and ``segment_everything``.

This module only re-exports; the code lives in the modules named above.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module: resolved on first use (PEP 562), so `seem --help` and `import seem.cli` do not load torch
_EXPORTS = {
    "build_seem": "seem.build",
    **dict.fromkeys(("BackboneConfig", "DecoderConfig", "EfficientNetLiteConfig", "FocalNetConfig", "InferenceConfig", "MobileNetV2Config",
                     "PixelDecoderConfig", "SeemConfig", "TextConfig", "ViTConfig"), "seem.configs"),
    "resolve_device": "seem.device",
    **dict.fromkeys(("CheckpointError", "ConfigError", "ImageError", "PromptError", "PromptTypeError", "SeemError"),
                   "seem.errors"),
    "DEFAULT_MODEL": "seem.hub", "from_pretrained": "seem.hub",
    "Seem": "seem.modeling.seem",
    "SeemPredictor": "seem.predictor",
    "Prompts": "seem.prompts", "ReferencePrompt": "seem.prompts",
    **dict.fromkeys(("InstanceResult", "PanopticResult", "Prediction", "Segment", "SemanticResult"), "seem.structures"),
}

if TYPE_CHECKING:
    from seem.build import build_seem
    from seem.configs import (
        BackboneConfig,
        DecoderConfig,
        EfficientNetLiteConfig,
        FocalNetConfig,
        InferenceConfig,
        MobileNetV2Config,
        PixelDecoderConfig,
        SeemConfig,
        TextConfig,
        ViTConfig,
    )
    from seem.device import resolve_device
    from seem.errors import CheckpointError, ConfigError, ImageError, PromptError, PromptTypeError, SeemError
    from seem.hub import DEFAULT_MODEL, from_pretrained
    from seem.modeling.seem import Seem
    from seem.predictor import SeemPredictor
    from seem.prompts import Prompts, ReferencePrompt
    from seem.structures import InstanceResult, PanopticResult, Prediction, Segment, SemanticResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DEFAULT_MODEL", "BackboneConfig", "CheckpointError", "ConfigError", "DecoderConfig", "EfficientNetLiteConfig", "FocalNetConfig",
    "ImageError", "InferenceConfig", "InstanceResult", "MobileNetV2Config", "PanopticResult", "PixelDecoderConfig",
    "Prediction", "PromptError", "PromptTypeError", "Prompts", "ReferencePrompt",
    "Seem", "SeemConfig", "SeemError", "SeemPredictor", "Segment", "SemanticResult", "TextConfig", "ViTConfig",
    "build_seem", "from_pretrained", "resolve_device",
]
