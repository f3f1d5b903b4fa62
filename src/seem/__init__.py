"""SEEM: Segment Everything Everywhere All at Once (Zou et al., NeurIPS 2023), CPU-first PyTorch.

Public API (importing this package loads torch, numpy and pillow only; nothing is downloaded):

* :func:`from_pretrained` / :func:`build_seem` -> :class:`Seem`
* :class:`SeemPredictor`: ``set_image`` once, then ``predict`` (a :class:`Prompts` of text, points, boxes,
  scribbles, polygons, masks and referred regions, plus memory) and ``segment_everything``.

This module only re-exports; the code lives in the modules named above.
"""

from __future__ import annotations

from seem.build import build_seem
from seem.configs import BackboneConfig, DecoderConfig, InferenceConfig, PixelDecoderConfig, SeemConfig, TextConfig
from seem.device import resolve_device
from seem.errors import CheckpointError, ConfigError, ImageError, PromptError, SeemError
from seem.hub import DEFAULT_MODEL, from_pretrained
from seem.modeling.seem import Seem
from seem.predictor import SeemPredictor
from seem.prompts import Prompts, ReferencePrompt
from seem.structures import InstanceResult, PanopticResult, Prediction, Segment, SemanticResult

__version__ = "0.1.0"


__all__ = [
    "DEFAULT_MODEL", "BackboneConfig", "CheckpointError", "ConfigError", "DecoderConfig", "ImageError",
    "InferenceConfig", "InstanceResult", "PanopticResult", "PixelDecoderConfig", "Prediction", "PromptError",
    "Prompts", "ReferencePrompt",
    "Seem", "SeemConfig", "SeemError", "SeemPredictor", "Segment", "SemanticResult", "TextConfig",
    "build_seem", "from_pretrained", "resolve_device",
]
