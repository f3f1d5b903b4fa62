"""int8 weights for the SEEM decoder's linear layers: dynamic quantization with the CPU's quantized engine.

A prompt round with the image cached reads every decoder weight for a handful of query rows: it is bound by
memory bandwidth, not arithmetic. Storing the weights as int8 (one scale per output channel, symmetric) reads
a quarter of the fp32 bytes. Two kernels read them:

* few rows (<= :data:`WEIGHT_ONLY_MAX_ROWS`, a click or box round): weight-only int8
  (``torch._weight_int8pack_mm``): the activations are only rounded to bfloat16, the weights dequantized in
  the kernel;
* more rows (a text round's 100+ grounding queries): dynamic quantization (``torch.ops.quantized.linear_dynamic``,
  fbgemm / x86 kernels): activations quantized per call to uint8 with one scale per tensor, int32 products.

Per-tensor activation scales lose the most on few rows with outlier channels (the positional embeddings added
to the queries), where the weight-only kernel costs no more; on many rows the int8 products are 5-8x faster.
Outputs are fp32.

:func:`quantize_decoder` returns an int8 copy of a :class:`~seem.modeling.decoder.SeemDecoder`: every
``nn.Linear`` of the transformer layers becomes an :class:`Int8Linear` and every attention's projections
(:class:`~seem.modeling.layers.MultiheadAttention`) an :class:`Int8MultiheadAttention`. The ``mask_embed``
MLP stays fp32: its output is the mask, and int8 there moved small masks' borders the most (IoU 0.94 -> 0.99
against fp32 on the parity fixture's two-click case; 3 x D^2 weights, ~10% of the layers'). Embeddings,
LayerNorms, the ``class_embed`` projection and the visual sampler's ``spatial_token_proj`` stay fp32 too
(small, or not read per query row). The decoder's per-image cache is built by the fp32 model (see
:class:`seem.SeemPredictor`, ``precision="int8"``).

Follows PyTorch's ``torch.ao.nn.quantized.dynamic.Linear`` (same ops), without swapping modules in place.
"""

from __future__ import annotations

import copy
import warnings
from typing import TypeVar

import torch
from torch import Tensor, nn

from seem.modeling.layers import MultiheadAttention

# weight-only int8 matmul (PyTorch >= 2.3); without it every call takes the dynamic-quantization kernel
_WEIGHT_ONLY = getattr(torch, "_weight_int8pack_mm", None)


def quantized_engine() -> str:
    """The quantized CPU engine to use: ``x86`` (fbgemm + onednn) where available, else ``fbgemm``, ``qnnpack``.

    Raises:
        RuntimeError: this PyTorch build has no quantized CPU engine.
    """
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    raise RuntimeError(f"no quantized CPU engine in this PyTorch build (supported: {engines}); use bf16-all")


def _pack(weight: Tensor, bias: Tensor | None) -> object:
    """``(N, K)`` fp32 weight -> packed int8 weight with per-output-channel symmetric scales."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
    zero_points = torch.zeros(w.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # quantized tensor creation is deprecated in favour of torchao (2.13)
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch.quantize_per_channel(w, scales, zero_points, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())


# rows up to which Int8Linear uses the weight-only kernel (its cost grows with rows; the dynamic one's barely)
WEIGHT_ONLY_MAX_ROWS = 32


class Int8Linear(nn.Module):
    """``y = x @ W^T + b`` with ``W`` stored as int8 (per-channel scales) and ``x`` quantized per call.

    Args:
        weight: ``(N, K)`` float. bias: ``(N,)`` float or None.

    Input ``(..., K)`` in any float dtype -> ``(..., N)`` fp32.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        if torch.backends.quantized.engine not in ("x86", "fbgemm", "onednn", "qnnpack"):  # e.g. "none"
            torch.backends.quantized.engine = quantized_engine()
        self.in_features, self.out_features = int(weight.shape[1]), int(weight.shape[0])
        self._packed = _pack(weight, bias)
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
        self.register_buffer("weight_int8", torch.round(w / scales[:, None]).to(torch.int8), persistent=False)
        self.register_buffer("weight_scales", scales.to(torch.bfloat16), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().float(), persistent=False)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        """The int8 form of ``linear``.

        Raises:
            ValueError: ``linear`` ends with an activation (:class:`seem.modeling.packed_linear.Linear`), which
                this layer would drop.
        """
        activation = getattr(linear, "activation", "none")
        if activation != "none":
            raise ValueError(f"Int8Linear has no activation: cannot quantize a linear layer ending in {activation!r}")
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        if rows.shape[0] <= WEIGHT_ONLY_MAX_ROWS and _WEIGHT_ONLY is not None:
            y = _WEIGHT_ONLY(rows.to(torch.bfloat16).contiguous(), self.weight_int8, self.weight_scales).float()
            if self.bias is not None:
                y = y + self.bias
        else:
            # reduce_range=True: 7-bit activations, safe from int16 saturation on CPUs without VNNI (torch's default)
            y = torch.ops.quantized.linear_dynamic(rows.float().contiguous(), self._packed, True)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"

    def __deepcopy__(self, memo):  # int8 weights are never changed: share them
        return self


class Int8MultiheadAttention(MultiheadAttention):
    """:class:`~seem.modeling.layers.MultiheadAttention` whose query, key, value and output projections read int8
    weights (the fp32 ``in_proj_weight`` is dropped; keys and values of the image come from the fp32 model's
    cache)."""

    def __init__(self, attention: MultiheadAttention) -> None:
        nn.Module.__init__(self)
        self.embed_dim, self.num_heads = attention.embed_dim, attention.num_heads
        w_q, w_k, w_v = attention.in_proj_weight.detach().chunk(3)
        b_q, b_k, b_v = attention.in_proj_bias.detach().chunk(3)
        self.q_proj = Int8Linear(w_q, b_q)
        self.k_proj = Int8Linear(w_k, b_k)
        self.v_proj = Int8Linear(w_v, b_v)
        self.out_proj = Int8Linear.from_float(attention.out_proj)  # type: ignore[assignment]

    def project_q(self, query: Tensor) -> Tensor:
        return self.q_proj(query)

    def project_kv_rows(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        return self.k_proj(key), self.v_proj(value)


ModuleT = TypeVar("ModuleT", bound=nn.Module)
# decoder submodules kept in fp32 (see the module docstring)
FP32_MODULES = ("mask_embed",)


def quantize_decoder(decoder: ModuleT) -> ModuleT:
    """An int8 copy of ``decoder`` (not changed): linear layers and attention projections as above.

    Raises:
        RuntimeError: no quantized CPU engine (see :func:`quantized_engine`).
    """
    quantized_engine()
    out = copy.deepcopy(decoder).float().eval()
    for name, module in list(out.named_modules()):
        replacement: nn.Module | None = None
        if isinstance(module, MultiheadAttention) and not isinstance(module, Int8MultiheadAttention):
            replacement = Int8MultiheadAttention(module)
        elif isinstance(module, nn.Linear) and not name.endswith("out_proj") and not name.startswith(FP32_MODULES):
            replacement = Int8Linear.from_float(module)
        if replacement is not None:
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, child, replacement)
    return out

