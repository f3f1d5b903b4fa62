"""Which torch device a model runs on: ``"auto"`` picks an accelerator when there is one."""

from __future__ import annotations


def resolve_device(device: str | None) -> str:
    """``"auto"``/``None`` -> ``"cuda"`` when available, else ``"cpu"``; an explicit accelerator must exist.

    Raises:
        SeemError: ``cuda``/``mps`` requested but not available.
    """
    import torch

    from seem.errors import SeemError

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SeemError(f"device {device}: CUDA is not available here; use cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SeemError("device mps: MPS is not available here; use cpu or auto")
    return device
