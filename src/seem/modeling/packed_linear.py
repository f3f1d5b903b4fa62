"""Linear layers that run inference on weights pre-packed for oneDNN (CPU).

``F.linear`` on a CPU re-packs the weight for the GEMM kernel on every call; for the few rows of a prompt round
that costs more than the product itself: a 2048 x 512 fp32 weight times 3 rows takes 0.49 ms that way and
0.08 ms from a weight packed once (``torch.ops.mkldnn._reorder_linear_weight``, the layout torch's own
compiler freezes weights into), bf16 0.12 -> 0.04 ms, 101 rows 1.9 -> 0.5 ms (2 threads here). Weights
under ``MIN_PACKED_ELEMENTS`` stay on ``F.linear`` (faster there). Results are fp32 / bf16 GEMMs as before
(differences of float rounding only, ~1e-6 relative in fp32).

The packed copy is made on first use and remade when the weight changes (another tensor, or an in-place update:
its version counter moves), so loading weights into a model keeps working. Plain ``F.linear`` runs whenever
packing does not apply: autograd (training), non-CPU tensors, dtypes other than fp32 / bf16, mismatched
dtypes, autocast to another dtype than the weight's (under autocast to the weight's dtype the input is cast
as autocast would), ONNX / TorchScript tracing, ``torch.compile``, or a torch without oneDNN.
The packed copy costs as much memory as the weight; it is never saved (``state_dict`` is unchanged).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# batch-size hint for the packed layout: measured here, 128 serves 3 to 512 rows as well as any other hint
_PACK_ROWS_HINT = 128
# smaller weights stay on F.linear: a packed product has a ~13 us floor per call here (2 threads), where MKL
# multiplies a 128 x 128 fp32 weight by 3 rows in 6 us; from 512 x 256 on, packing wins (512 x 512: 72 -> 24 us)
MIN_PACKED_ELEMENTS = 1 << 17


@functools.lru_cache(maxsize=1)
def _dtypes() -> tuple[torch.dtype, ...]:
    ops = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or ops is None or not hasattr(ops, "_linear_pointwise"):
        return ()
    return (torch.float32, torch.bfloat16) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else (torch.float32,)


def _autocast_input(x: Tensor, weight: Tensor) -> Tensor:
    """``x`` as CPU autocast hands it to a linear layer: cast to the autocast dtype when that is the weight's
    (the bf16 encoder copies run under autocast with bf16 weights and fp32 norm outputs)."""
    if (x.dtype == torch.float32 and weight.dtype != torch.float32 and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == weight.dtype):
        return x.to(weight.dtype)
    return x


def _packable(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    if weight.numel() < MIN_PACKED_ELEMENTS:
        return False
    if torch.is_autocast_enabled("cpu") and x.dtype != torch.get_autocast_dtype("cpu"):
        return False  # autocast would compute in its own dtype: leave it to F.linear
    if x.device.type != "cpu" or x.dtype != weight.dtype or x.dtype not in _dtypes() or weight.dim() != 2:
        return False
    if bias is not None and bias.dtype != x.dtype:
        return False
    if torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad or (bias is not None and bias.requires_grad)):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    return x.numel() > 0 and x.shape[-1] == weight.shape[1]


class WeightPack:
    """The oneDNN-packed copy of one weight (made on first use, remade when the weight changes)."""

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[tuple, Tensor] | None = None

    def linear(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``F.linear(x, weight, bias)``, on the packed weight where packing applies (module docstring)."""
        if weight.numel() >= MIN_PACKED_ELEMENTS:
            x = _autocast_input(x, weight)
        if not _packable(x, weight, bias):
            return F.linear(x, weight, bias)
        # inference tensors keep no version counter (and are rarely updated in place)
        version = 0 if weight.is_inference() else weight._version
        key = (weight.data_ptr(), version, weight.dtype, tuple(weight.shape), weight.stride())
        entry = self._entry  # one read: threads sharing a module see a consistent (key, packed) pair
        if entry is None or entry[0] != key:
            entry = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _PACK_ROWS_HINT))
            self._entry = entry
        return torch.ops.mkldnn._linear_pointwise(x, entry[1], bias, "none", [], "")

    def __deepcopy__(self, memo) -> WeightPack:  # a copy packs its own (possibly converted) weight
        return WeightPack()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._entry = None


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and ``state_dict``) whose inference runs on a packed weight
    (:class:`WeightPack`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.pack = WeightPack()

    def forward(self, x: Tensor) -> Tensor:
        return self.pack.linear(x, self.weight, self.bias)
