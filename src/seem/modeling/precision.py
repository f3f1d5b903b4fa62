"""The reduced-precision copies a :class:`~seem.SeemPredictor` runs on (``precision`` bf16 / bf16-all / int8).

Each copy is a :class:`~seem.modeling.seem.Seem` sharing the original's other modules; made once per predictor,
it does not see later changes to the original's weights.

Precisions of ``SeemPredictor(precision=...)``:

* ``"fp32"`` (default): the official numerics (the pixel decoder's wide 3x3 convs run as Winograd ``F(4x4, 3x3)``,
  within ~1e-5 of a direct conv: the parity tests hold at 1e-4 with it).
* ``"bf16"``: the image encoder (and the decoder's per-image cache) runs under ``torch.autocast`` with bfloat16
  (:func:`encoding_copy`), prompt rounds stay fp32; masks agree with fp32 at IoU >= 0.98 on the parity and
  demo prompts (tested).
* ``"bf16-all"``: the decoder too runs on a bfloat16 copy of its weights (:func:`decoding_copy`) with bf16 image
  features: about 2x faster prompt rounds on a CPU (they are bound by reading weights), mask borders moving
  slightly more (IoU >= 0.9 against fp32 on the same prompts, tested).
* ``"int8"``: the image encoder and the per-image cache are computed in fp32, then the cache (every layer's
  image keys/values, level-sized mask features) and the mask features are kept in bfloat16, and the decoder
  runs on a copy with int8 linear weights (:mod:`seem.modeling.int8`): prompt rounds read about a third of the
  fp32 bytes (IoU >= 0.95 against fp32 on the same prompts, tested).

The text encoder stays fp32 for class-name vocabularies in every mode and for text prompts except in
``bf16-all``; label scores and post-processing stay fp32; mask logits are fp32 except in
``bf16-all`` and ``int8`` (bf16 products of bf16 mask features, which halve what a prompt round reads).
"""

from __future__ import annotations

import copy

import torch

from seem.modeling.seem import Seem


def encoding_copy(model: Seem, dtype: torch.dtype = torch.bfloat16, winograd_min_channels: int | None = None) -> Seem:
    """The image encoder a predictor runs: ``model`` with its pixel decoder's 3x3 convs on Winograd ``F(4x4, 3x3)``
    in float32 (:func:`seem.modeling.winograd.winograd_copy`, 1.2-1.85x faster than direct convs here, within
    ~1e-5 of them).

    ``dtype`` float32: every parameter is shared with ``model``. bfloat16 (the bf16 modes, run under bf16
    autocast): backbone and pixel decoder are :func:`bf16_conv_linear_copy` copies, computing what autocast
    gives (up to float rounding) without casting the weights for every image; their convs stay direct unless
    ``winograd_min_channels`` is given (see :func:`~seem.modeling.winograd.winograd_copy`).

    Raises:
        ValueError: ``dtype`` is neither float32 nor bfloat16.
    """
    from seem.modeling.winograd import winograd_copy

    backbone, pixel_decoder = model.backbone, model.pixel_decoder
    if dtype == torch.bfloat16:
        backbone, pixel_decoder = bf16_conv_linear_copy(backbone), bf16_conv_linear_copy(pixel_decoder)
    elif dtype != torch.float32:
        raise ValueError(f"encoding_copy: dtype must be float32 or bfloat16, got {dtype}")
    pixel_decoder = winograd_copy(pixel_decoder, dtype, winograd_min_channels)
    return Seem(backbone, pixel_decoder, model.text_encoder, model.decoder, model.tokenizer, model.config,
                model.candidate_scorer, model.grounding_scorer, model.box_scorer, model.refine_scorer).eval()


def decoding_copy(model: Seem, precision: str) -> Seem:
    """``model`` with a bfloat16 (``"bf16-all"``) or int8 (``"int8"``, :func:`seem.modeling.int8.quantize_decoder`)
    copy of its decoder; in ``"bf16-all"`` also a bfloat16 copy of its text encoder (for text prompts: a text
    round reads the whole encoder, 150 MB in fp32 for Focal-T; class-name vocabularies stay fp32)."""
    text_encoder = model.text_encoder
    if precision == "int8":
        from seem.modeling.int8 import quantize_decoder

        decoder = quantize_decoder(model.decoder)
    else:
        decoder = copy.deepcopy(model.decoder).to(torch.bfloat16).eval()
        text_encoder = copy.deepcopy(model.text_encoder).to(torch.bfloat16).eval()
    return Seem(model.backbone, model.pixel_decoder, text_encoder, decoder, model.tokenizer, model.config,
                model.candidate_scorer, model.grounding_scorer, model.box_scorer, model.refine_scorer).eval()


def bf16_conv_linear_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` in eval mode with the weights and biases of its ``Linear`` / ``Conv2d`` layers
    and attention projections in bfloat16; norms, the mask position projection and every other parameter keep
    their dtype.

    Under ``torch.autocast(dtype=torch.bfloat16)`` the copy computes what the original does (autocast rounds
    those same weights to bf16, to nearest, on every call, and keeps norms in fp32), up to float rounding: its
    linear layers run packed bf16 products (GELU fused in) where autocast runs ``F.linear``
    (:mod:`seem.modeling.packed_linear`). It spares the per-call casts, i.e. reading the fp32 weights and
    writing bf16 ones for every image.
    """
    from seem.modeling.layers import MultiheadAttention
    from seem.modeling.mask_position import MaskPositionEncoding

    out = copy.deepcopy(module).eval()
    fp32 = {id(m.proj) for m in out.modules() if isinstance(m, MaskPositionEncoding)}
    for sub in out.modules():
        if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d, MultiheadAttention)) and id(sub) not in fp32:
            for name, param in sub.named_parameters(recurse=False):
                setattr(sub, name, torch.nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False))
    return out
