"""Linear layers that run inference on weights pre-packed for oneDNN (CPU).

``F.linear`` on a CPU re-packs the weight for the GEMM kernel on every call; for the few rows of a prompt round
that costs more than the product itself: a 2048 x 512 fp32 weight times 3 rows takes 0.49 ms that way and
0.08 ms from a weight packed once (``torch.ops.mkldnn._reorder_linear_weight``, the layout torch's own
compiler freezes weights into), bf16 0.12 -> 0.04 ms, 101 rows 1.9 -> 0.5 ms (2 threads here). Many rows gain
too for smaller weights: an encoder's 22,528 tokens times a 96 x 384 weight take 5.6 -> 2.3 ms in fp32 and 1.5 ->
1.2 ms in bf16. Products below both rules (``MIN_PACKED_ELEMENTS``; ``MIN_ROWS_WEIGHT_ELEMENTS`` over
``MIN_PACKED_ROWS`` rows) stay on ``F.linear`` (faster there). Results are fp32 / bf16 GEMMs as before
(differences of float rounding only, ~1e-6 relative in fp32). An optional GELU runs inside the GEMM as oneDNN's
post-op (one pass over the output instead of two); an optional ReLU runs in place on the product's fresh output
(oneDNN's fused ReLU turns NaN into 0, ``F.relu`` keeps it).

The packed copy is made on first use and remade when the weight changes (another tensor, or an in-place
update that moves its version counter: see :class:`WeightPack`), so loading weights into a model keeps
working. Plain ``F.linear`` runs whenever packing does not apply: autograd (training), forward-mode AD and
``torch.func`` transforms, non-CPU tensors, dtypes other than fp32 / bf16, mismatched dtypes, a strided bias,
autocast to another dtype than the weight's (under autocast to the weight's dtype the input is cast as
autocast would), ONNX / TorchScript / FX tracing, ``torch.compile``, or a torch without oneDNN.
The packed copy costs as much memory as the weight; it is never saved (``state_dict`` is unchanged).
"""

from __future__ import annotations

import functools
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

# batch-size hint for the packed layout: measured here, 128 serves 3 to 512 rows as well as any other hint
_PACK_ROWS_HINT = 128
# smaller weights stay on F.linear: a packed product has a ~13 us floor per call here (2 threads), where MKL
# multiplies a 128 x 128 fp32 weight by 3 rows in 6 us; from 512 x 256 on, packing wins (512 x 512: 72 -> 24 us)
MIN_PACKED_ELEMENTS = 1 << 17
# ... unless there are many rows: from 1,024 rows on a packed product is 1.1-2.4x faster for the weights of at
# least 4,096 elements measured here (64 x 64 to 512 x 128, fp32 and bf16, 2 threads); at 256 rows an fp32
# 96 x 96 one is about even, a 16 x 16 one 4x slower packed
MIN_PACKED_ROWS = 1024
MIN_ROWS_WEIGHT_ELEMENTS = 1 << 12
# the activations a linear layer can end with (oneDNN's post-op names), in their unfused form
_ACTIVATIONS = {"none": lambda y: y, "relu": F.relu, "gelu": F.gelu}


def _activation(name: str):
    """The unfused form of activation ``name``; ``ValueError`` for another name."""
    act = _ACTIVATIONS.get(name)
    if act is None:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return act


@functools.lru_cache(maxsize=1)
def _dtypes() -> tuple[torch.dtype, ...]:
    ops = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or ops is None or not hasattr(ops, "_linear_pointwise"):
        return ()
    return (torch.float32, torch.bfloat16) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else (torch.float32,)


def autocast_cast(x: Tensor) -> Tensor:
    """``x`` in the CPU autocast dtype when autocast is on and ``x`` is fp32: what a linear layer under autocast
    receives (casting once an input that several layers read)."""
    if x.dtype == torch.float32 and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return x.to(torch.get_autocast_dtype("cpu"))
    return x


def _autocast_input(x: Tensor, weight: Tensor) -> Tensor:
    """``x`` as CPU autocast hands it to a linear layer: cast to the autocast dtype when that is the weight's
    (the bf16 encoder copies run under autocast with bf16 weights and fp32 norm outputs)."""
    if weight.dtype != torch.float32 and torch.get_autocast_dtype("cpu") == weight.dtype:
        return autocast_cast(x)
    return x


def _in_transform() -> bool:
    """Tracing, scripting, compiling, FX, forward-mode AD or a ``torch.func`` transform: the packed op has no
    formulas or graph form for them."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling() or is_fx_symbolic_tracing()
            or forward_ad._current_level >= 0 or torch._C._functorch.maybe_current_level() is not None)


def packable(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> bool:
    """Whether ``WeightPack.linear(x, weight, bias)`` would run on a packed weight (module docstring)."""
    return not _in_transform() and _packable(x, weight, bias)


def _large(x: Tensor, weight: Tensor) -> bool:
    """Whether the product is large enough for a packed weight to pay (module docstring)."""
    if weight.numel() >= MIN_PACKED_ELEMENTS:
        return True
    return weight.numel() >= MIN_ROWS_WEIGHT_ELEMENTS and x.dim() > 0 and x.numel() >= MIN_PACKED_ROWS * x.shape[-1]


def _packable(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    if not _large(x, weight):
        return False
    if torch.is_autocast_enabled("cpu") and x.dtype != torch.get_autocast_dtype("cpu"):
        return False  # autocast would compute in its own dtype: leave it to F.linear
    if x.device.type != "cpu" or x.dtype != weight.dtype or x.dtype not in _dtypes() or weight.dim() != 2:
        return False
    if bias is not None and (bias.dtype != x.dtype or not bias.is_contiguous()):
        return False
    if torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad or (bias is not None and bias.requires_grad)):
        return False
    return x.numel() > 0 and x.shape[-1] == weight.shape[1]


class WeightPack:
    """The oneDNN-packed copy of one weight (made on first use, remade when the weight changes).

    The copy belongs to one weight tensor (a parameter, or a fixed view of one given with its ``owner``):
    it is remade when the tensor is another one (held by weak reference, so a new tensor at a freed one's
    address is not mistaken for it), its view or dtype changes, or its version counter moves (in-place
    updates through autograd-visible ops: ``copy_``, ``load_state_dict``, optimizers' foreach steps). Writes
    that bypass the counter (``weight.data.copy_(...)``, numpy views, fused optimizer kernels, inference
    tensors) are not seen: :meth:`clear` after them; :class:`Linear` clears on ``train()`` / ``eval()``.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[weakref.ref, tuple, Tensor] | None = None

    def clear(self) -> None:
        """Drop the packed copy (the next inference call packs the weight again)."""
        self._entry = None

    def linear(self, x: Tensor, weight: Tensor, bias: Tensor | None, owner: Tensor | None = None,
               activation: str = "none") -> Tensor:
        """``act(F.linear(x, weight, bias))``, on the packed weight where packing applies (module docstring).

        ``owner``: the persistent tensor ``weight`` is a view of, when it is one made per call (the attention's
        q / k / v rows of ``in_proj_weight``); the packed copy is tied to it (a per-call view would be packed
        again on every call). ``activation``: ``"none"``, ``"relu"`` or ``"gelu"`` (exact, erf form, as
        ``nn.GELU()``; fused into the packed product), equal to applying it after the product.

        Raises:
            ValueError: another ``activation``.
        """
        act = _activation(activation)
        if _in_transform():  # checked first: under FX the tensors are proxies
            return act(F.linear(x, weight, bias))
        if _large(x, weight):
            x = _autocast_input(x, weight)
        if not _packable(x, weight, bias):
            return act(F.linear(x, weight, bias))
        owner = weight if owner is None else owner
        # inference tensors keep no version counter (they are rarely updated in place: see the class doc)
        version = 0 if weight.is_inference() else weight._version
        key = (weight.data_ptr(), version, weight.dtype, tuple(weight.shape), weight.stride())
        entry = self._entry  # one read: threads sharing a module see a consistent (owner, key, packed) triple
        if entry is None or entry[0]() is not owner or entry[1] != key:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), _PACK_ROWS_HINT)
            entry = (weakref.ref(owner), key, packed)
            self._entry = entry
        if activation == "gelu":  # oneDNN's GELU post-op, algorithm "none": the erf form (NaN stays NaN)
            return torch.ops.mkldnn._linear_pointwise(x, entry[2], bias, "gelu", [], "none")
        y = torch.ops.mkldnn._linear_pointwise(x, entry[2], bias, "none", [], "")
        # ReLU in place on the fresh product (outside autograd here); not oneDNN's post-op, which maps NaN to 0
        return torch.relu_(y) if activation == "relu" else y

    def __deepcopy__(self, memo) -> WeightPack:  # a copy packs its own (possibly converted) weight
        return WeightPack()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._entry = None


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and ``state_dict``) whose inference runs on a packed weight
    (:class:`WeightPack`), optionally followed by an ``activation`` (``"none"``, ``"relu"`` or ``"gelu"``, exact)
    that is part of the layer's output (fused into the packed product for GELU; forward hooks see the activated
    output).

    Raises:
        ValueError: another ``activation``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 activation: str = "none") -> None:
        _activation(activation)  # validated before any parameter is made
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.activation = activation
        self.pack = WeightPack()

    def train(self, mode: bool = True) -> Linear:
        self.pack.clear()  # weights may have been written around the version counter while training
        return super().train(mode)

    def forward(self, x: Tensor) -> Tensor:
        return self.pack.linear(x, self.weight, self.bias, activation=self.activation)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.activation == "none" else f", activation={self.activation}")
