"""Weights stored in bfloat16 for modules that run under bf16 autocast."""

from __future__ import annotations

import copy

import torch


def bf16_conv_linear_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` in eval mode with the weights and biases of its ``Linear`` / ``Conv2d`` layers
    in bfloat16; norms and every other parameter keep their dtype.

    Under ``torch.autocast(dtype=torch.bfloat16)`` the copy computes exactly what the original does (autocast
    rounds those same weights to bf16, to nearest, on every call, and keeps norms in fp32); it only spares
    those per-call casts, i.e. reading the fp32 weights and writing bf16 ones for every image.
    """
    out = copy.deepcopy(module).eval()
    for sub in out.modules():
        if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)):
            for name, param in sub.named_parameters(recurse=False):
                setattr(sub, name, torch.nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False))
    return out
