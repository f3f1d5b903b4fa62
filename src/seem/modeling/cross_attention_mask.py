"""Masked attention's masks (Mask2Former, Cheng et al. 2022, §3.2.1): each query of a decoder layer reads the
image only inside the mask it predicted in the previous layer (official ``SEEMDecoder.forward_prediction_heads``
``attn_mask``). Boolean ``(B, Q, h*w)`` maps, True = blocked, the same for every head.

On the CPU the comparisons and the row test run in NumPy on views of the tensors: torch's bool-producing
kernels are several times slower on these maps, and a prompt round makes six of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def outside_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Mask logits ``(B, Q, h, w)`` resized bilinearly to ``size`` -> ``(B, Q, size[0] * size[1])`` bool, True
    where ``sigmoid(logit) < 0.5`` (the official test)."""
    m = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    return (m.sigmoid().flatten(2) < 0.5).detach()


def negative_logits(logits: Tensor) -> Tensor:
    """``(B, Q, h, w)`` logits -> ``(B, Q, h * w)`` bool ``logit < 0``: :func:`outside_masks`' test at the logits'
    own size, the same except for logits within ~3e-8 of 0 (where fp32's sigmoid rounds to 0.5), far below the
    logits' own rounding. bf16 logits compare as float32 (exact)."""
    m = logits.detach().flatten(2)
    if not plain_cpu(m):
        return m < 0
    return torch.from_numpy(m.float().numpy() < 0)


def unblock_empty_rows(attn_mask: Tensor) -> Tensor:
    """``attn_mask`` with rows that would see nothing opened to everything (official ``attn_mask[all] =
    False``), in place; returns it."""
    if plain_cpu(attn_mask):
        blocked = attn_mask.numpy()
        blocked[blocked.all(axis=-1)] = False
    else:
        attn_mask[attn_mask.all(dim=-1)] = False
    return attn_mask


def plain_cpu(t: Tensor) -> bool:
    """Whether ``t`` is an ordinary CPU tensor NumPy can view (not traced, not a ``torch.func`` wrapper or a
    subclass)."""
    return (type(t) is Tensor and t.device.type == "cpu" and not torch.jit.is_tracing()
            and not torch._C._are_functorch_transforms_active()
            and not torch._C._functorch.is_functorch_wrapped_tensor(t))
