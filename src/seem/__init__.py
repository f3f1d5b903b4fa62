"""SEEM: Segment Everything Everywhere All at Once (Zou et al., NeurIPS 2023), CPU-first PyTorch.

Public API (importing this package loads torch, numpy and pillow only; nothing is downloaded):

* :func:`from_pretrained` / :func:`build_seem` -> :class:`Seem`
* :class:`SeemPredictor`: ``set_image`` once, then ``predict`` (text, points, boxes, scribbles, polygons,
  masks, referred regions, memory) and ``segment_everything``.
"""

from __future__ import annotations

from .build import build_seem
from .configs import BackboneConfig, DecoderConfig, InferenceConfig, PixelDecoderConfig, SeemConfig, TextConfig
from .errors import CheckpointError, ConfigError, ImageError, PromptError, SeemError
from .modeling.seem import Seem
from .predictor import ReferencePrompt, SeemPredictor
from .structures import InstanceResult, PanopticResult, Prediction, Segment, SemanticResult

__version__ = "0.1.0"
DEFAULT_MODEL = "seem_tiny"  # bundled with the package (trained offline on generated scenes)


def resolve_device(device: str | None) -> str:
    """``"auto"``/``None`` -> ``"cuda"`` when available, else ``"cpu"``; an explicit accelerator must exist.

    Raises:
        SeemError: ``cuda``/``mps`` requested but not available.
    """
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SeemError(f"device {device}: CUDA is not available here; use cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SeemError("device mps: MPS is not available here; use cpu or auto")
    return device


def from_pretrained(name_or_path: str | None = None, device: str | None = "cpu", cache_dir=None) -> Seem:
    """A :class:`Seem` with weights, from a registry name (``seem_focalt_v1`` ...) or a checkpoint path.

    ``None`` gives the bundled default, ``seem_tiny`` (no download).

    Registry names download the official checkpoint from the Hugging Face hub repo ``xdecoder/SEEM``
    once (``pip install 'seem-torch[hub]'``), convert it and cache a safetensors copy; local paths
    (``.safetensors`` with our metadata, or an official ``.pt`` next to its YAML config) work offline.

    Raises:
        ConfigError: unknown name or no default model available.
        CheckpointError: unreadable, unsafe or mismatched checkpoints.
    """
    from .hub import build_from_pretrained

    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    return build_from_pretrained(name_or_path, cache_dir=cache_dir, device=resolve_device(device))


__all__ = [
    "BackboneConfig", "CheckpointError", "ConfigError", "DecoderConfig", "ImageError", "InferenceConfig",
    "InstanceResult", "PanopticResult", "PixelDecoderConfig", "Prediction", "PromptError", "ReferencePrompt",
    "Seem", "SeemConfig", "SeemError", "SeemPredictor", "Segment", "SemanticResult", "TextConfig",
    "build_seem", "from_pretrained", "resolve_device",
]
