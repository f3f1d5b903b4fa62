"""CLIP-style causal text transformer of SEEM, with the projection into the joint vision-language space.

Follows the official ``modeling/language/LangEncoder/transformer.py::Transformer`` (the ``transformer``
sub-module here) and ``modeling/language/vlpencoder.py::LanguageEncoder`` (``lang_proj``, ``logit_scale``,
``forward_language(_token)``, ``get_text_embeddings``, ``compute_similarity``) plus
``vl_similarity`` of ``modeling/architectures/seem_model_v1.py::evaluate_grounding``.

Parameter names equal the official ones after this prefix mapping (the module lives at ``text_encoder.``
inside :class:`seem.modeling.seem.Seem`)::

    sem_seg_head.predictor.lang_encoder.lang_encoder.X  ->  transformer.X
    sem_seg_head.predictor.lang_encoder.lang_proj       ->  lang_proj      (width x dim_proj, raw parameter)
    sem_seg_head.predictor.lang_encoder.logit_scale     ->  logit_scale    (scalar; applied as exp())

Numerics reproduced from the official code: the TF-style LayerNorm (eps 1e-12 inside the square root,
statistics in fp32, affine in the input dtype), QuickGELU, the causal mask (``AUTOGRESSIVE: True``) with
**no** key-padding mask (the official forward drops ``attention_mask`` when causal), the sentence
embedding read at ``input_ids.argmax(-1)`` (the first EOT) and projected after the gather, and the
``+ 1e-7`` in every L2 normalisation except the final re-normalisation of the template mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seem.configs import TextConfig
from seem.modeling.language.templates import TEMPLATES, clean_class_name
from seem.modeling.packed_linear import Linear, WeightPack

_NORM_EPS = 1e-7  # official: x / (x.norm(dim=-1, keepdim=True) + 1e-7)


@dataclass(frozen=True)
class TextEmbeddings:
    """Output of :meth:`TextEncoder.forward`. L' = L, or the trimmed length when ``trim=True``.

    Attributes:
        token_embeddings: (B, L', dim_proj), dtype of the parameters: every position's final hidden state
            @ ``lang_proj``, **not** normalised (official ``forward_language_token(norm=False)``; the
            grounding prompt tokens are ``token_embeddings[attention_mask]``).
        sentence_embeddings: (B, dim_proj): the hidden state at the first EOT @ ``lang_proj``, **not**
            normalised (official ``class_emb``).
        attention_mask: (B, L') bool, True on real tokens: the given mask (trimmed), or ``sot .. first eot``
            derived from the ids when none was given.
    """

    token_embeddings: torch.Tensor
    sentence_embeddings: torch.Tensor
    attention_mask: torch.Tensor


class LayerNorm(nn.Module):
    """Official TF-style LayerNorm: statistics in fp32, eps 1e-12 inside the square root.

    ``weight * normalised.to(input dtype) + bias``; the explicit mean/variance formula is kept (not
    ``F.layer_norm``) so that results match the official module to the last bits.
    """

    def __init__(self, width: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight * x.to(dtype) + self.bias


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names and maths, batch-first.

    Parameters: ``in_proj_weight`` (3W, W), ``in_proj_bias`` (3W,), ``out_proj`` (Linear W -> W).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = Linear(width, width)
        self.in_proj_pack = WeightPack()  # inference on a packed weight (seem.modeling.packed_linear)

    def train(self, mode: bool = True) -> SelfAttention:
        self.in_proj_pack.clear()  # weights may have been written around the version counter while training
        return super().train(mode)

    def forward(self, x: torch.Tensor, causal: bool, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, L, W) -> (B, L, W). ``key_padding_mask`` (B, L) bool, True = ignore that key."""
        batch, length, width = x.shape
        qkv = self.in_proj_pack.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, L), True = attend
            if causal:
                mask = mask & torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
                causal = False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class QuickGELU(nn.Module):
    """CLIP's GELU approximation ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Module):
    """``c_fc`` (W -> 4W), QuickGELU, ``c_proj`` (4W -> W)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))`` (official, drop-path off)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = Mlp(width)
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, causal: bool, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal, key_padding_mask)
        return x + self.mlp(self.ln_2(x))


class TextTransformer(nn.Module):
    """Token + positional embedding, ``layers`` residual blocks, ``ln_final`` (official ``Transformer``)."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(config.width, config.heads) for _ in range(config.layers)
        )
        self.ln_final = LayerNorm(config.width)

    def forward(
        self, input_ids: torch.Tensor, causal: bool, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """input_ids (B, L) int64, L <= context_length -> last hidden state (B, L, width)."""
        x = self.token_embedding(input_ids) + self.positional_embedding[: input_ids.shape[1]]
        for block in self.resblocks:
            x = block(x, causal, key_padding_mask)
        return self.ln_final(x)


class TextEncoder(nn.Module):
    """SEEM's language encoder: text transformer, ``lang_proj`` and the vision-language ``logit_scale``.

    Args:
        config: widths/depth/heads/context and ``dim_proj`` (official ``MODEL.TEXT`` + ``MODEL.DIM_PROJ``).
    """

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = TextTransformer(config)
        self.lang_proj = nn.Parameter(torch.empty(config.width, config.dim_proj))
        self.logit_scale = nn.Parameter(torch.ones([]))  # official init 1.0; used as exp(logit_scale)
        self.reset_parameters()

    @property
    def context_length(self) -> int:
        return self.config.context_length

    def reset_parameters(self) -> None:
        """Official initialisation: truncated normal (std 0.02) for embeddings, Linear weights and
        ``lang_proj``; zero biases; Xavier-uniform ``in_proj_weight`` (``nn.MultiheadAttention``'s own);
        LayerNorms 1/0; ``logit_scale`` 1."""
        std = 0.02
        nn.init.trunc_normal_(self.transformer.token_embedding.weight, std=std)
        nn.init.trunc_normal_(self.transformer.positional_embedding, std=std)
        for module in self.transformer.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, SelfAttention):
                nn.init.xavier_uniform_(module.in_proj_weight)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.lang_proj, std=std)
        nn.init.ones_(self.logit_scale)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, trim: bool = False
    ) -> TextEmbeddings:
        """Encode tokenised texts (official ``forward_language_token(norm=False)``).

        Args:
            input_ids: (B, L) int64 CLIP ids (``[sot, ..., eot, eot padding]``), L <= context length, on the
                parameters' device.
            attention_mask: (B, L) int or bool, 1/True on real tokens. With the causal encoder (every SEEM
                model) it is **not** used by the network, exactly as in the official code; it only becomes
                :attr:`TextEmbeddings.attention_mask`. A non-causal config uses it as key-padding mask.
            trim: run only the first L' columns, L' = 1 + the last column holding a real token (mask) or a
                first EOT in any row, i.e. the longest prompt of the batch. With the causal encoder a
                position never sees later columns, so the kept outputs and the sentence embeddings are
                unchanged (up to GEMM rounding, ~1e-7); only padding columns are dropped. Positional
                embeddings are still indexed from 0.

        Returns:
            :class:`TextEmbeddings` with ``token_embeddings`` (B, L', dim_proj), ``sentence_embeddings``
            (B, dim_proj), ``attention_mask`` (B, L') bool.
        """
        if input_ids.dim() != 2 or input_ids.shape[1] > self.context_length:
            raise ValueError(
                f"input_ids must be (B, L) with L <= {self.context_length}, got {tuple(input_ids.shape)}"
            )
        eot_index = input_ids.argmax(dim=-1)  # (B,): first EOT, since 49407 is the largest id
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        token_mask = (
            attention_mask.bool() if attention_mask is not None else positions[None, :] <= eot_index[:, None]
        )
        if trim and input_ids.shape[0] > 0:
            if not self.config.causal and attention_mask is None:
                raise ValueError("trim=True with a non-causal text encoder needs the attention_mask")
            real_columns = token_mask.any(dim=0).nonzero()
            length = max(int(eot_index.max()), int(real_columns.max()) if len(real_columns) else 0) + 1
            input_ids, token_mask = input_ids[:, :length], token_mask[:, :length]
        key_padding_mask = None if self.config.causal or attention_mask is None else ~token_mask
        hidden = self.transformer(input_ids, self.config.causal, key_padding_mask)  # (B, L', width)
        sentence = hidden[torch.arange(hidden.shape[0], device=hidden.device), eot_index] @ self.lang_proj
        return TextEmbeddings(
            token_embeddings=hidden @ self.lang_proj,
            sentence_embeddings=sentence,
            attention_mask=token_mask,
        )

    def embed_vocabulary(
        self,
        names: Sequence[str],
        tokenizer,
        templates: Sequence[str] = TEMPLATES,
        batch_size: int = 1024,
    ) -> torch.Tensor:
        """Class-name embeddings for open-vocabulary classification: official
        ``get_text_embeddings(names, is_eval=True, prompt=True, norm=True)``.

        Each name is cleaned (:func:`clean_class_name`), put into every template, tokenised and encoded;
        each sentence embedding is L2-normalised (``+1e-7``), averaged over the templates and re-normalised
        (no epsilon). All C x T sentences are batched together, sorted by length and trimmed per batch.
        Runs without autograd, like the official evaluation path (the text encoder is frozen in SEEM).

        Args:
            names: C class names (e.g. COCO's 133 + ``"background"``).
            tokenizer: a :class:`seem.modeling.language.tokenizer.ClipTokenizer`.
            templates: T format strings with one ``{}``; default the official 81.
            batch_size: sentences per forward pass.

        Returns:
            (C, dim_proj) float32 on the parameters' device, unit rows.
        """
        if isinstance(names, str):
            raise TypeError("names must be a sequence of class names, not a single str")
        if len(templates) == 0:
            raise ValueError("at least one template is needed")
        device = self.lang_proj.device
        if len(names) == 0:
            return torch.zeros(0, self.config.dim_proj, device=device)
        texts = [template.format(clean_class_name(name)) for name in names for template in templates]
        tokens = tokenizer.encode(texts, context_length=self.context_length)
        input_ids, attention_mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
        order = input_ids.argmax(dim=-1).argsort()  # group sentences of similar length
        sentences = torch.empty(len(texts), self.config.dim_proj, dtype=self.lang_proj.dtype, device=device)
        with torch.no_grad():
            for chunk in order.split(batch_size):
                sentences[chunk] = self(input_ids[chunk], attention_mask[chunk], trim=True).sentence_embeddings
        sentences = sentences.float()
        sentences = sentences / (sentences.norm(dim=-1, keepdim=True) + _NORM_EPS)
        mean = sentences.view(len(names), len(templates), -1).mean(dim=1)
        return mean / mean.norm(dim=-1, keepdim=True)

    def class_logits(self, class_embed: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Open-vocabulary class logits: official ``LanguageEncoder.compute_similarity``.

        ``(exp(logit_scale) * class_embed / (||class_embed|| + 1e-7)) @ text_embeddings.T``.

        Args:
            class_embed: (..., dim_proj) decoder class embeddings (``decoder_norm(q) @ class_embed``).
            text_embeddings: (C, dim_proj) from :meth:`embed_vocabulary` (unit rows).

        Returns:
            (..., C) in the dtype of ``class_embed``.
        """
        x = class_embed / (class_embed.norm(dim=-1, keepdim=True) + _NORM_EPS)
        text = text_embeddings.to(device=x.device, dtype=x.dtype)
        return (self.logit_scale.exp().to(x.dtype) * x) @ text.transpose(0, 1)

    def grounding_similarity(
        self, query_embed: torch.Tensor, sentence_embed: torch.Tensor, max_scale: float = 100.0
    ) -> torch.Tensor:
        """Query-to-sentence logits for referring segmentation: official ``vl_similarity`` as called in
        ``evaluate_grounding`` (both sides L2-normalised with ``+1e-7``; scale ``exp(logit_scale)`` clamped
        at ``max_scale``, applied after the product).

        Args:
            query_embed: (Q, dim_proj) grounding-query class embeddings (official ``pred_gtexts``).
            sentence_embed: (S, dim_proj) sentence embeddings (official ``class_emb``), not normalised.

        Returns:
            (Q, S) in the dtype of ``query_embed``; argmax over Q picks each sentence's query.
        """
        q = query_embed / (query_embed.norm(dim=-1, keepdim=True) + _NORM_EPS)
        s = sentence_embed.to(device=q.device, dtype=q.dtype)
        s = s / (s.norm(dim=-1, keepdim=True) + _NORM_EPS)
        return self.logit_scale.exp().clamp(max=max_scale).to(q.dtype) * (q @ s.transpose(0, 1))
