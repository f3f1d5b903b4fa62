"""``Seem``: the whole model as built parts (official ``GeneralizedSEEM``, ``seem_model_v1.py``).

It only computes; the caller holds state. ``encode_image`` runs the backbone and pixel decoder once per
image; ``decode`` runs the SEEM decoder for any mix of prompts and is what each interaction round costs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from seem.configs import SeemConfig
from seem.modeling.decoder import DecoderImageCache, DecoderOutput, LevelFeatures, SeemDecoder, VisualPromptTokens
from seem.modeling.language.text_encoder import TextEncoder
from seem.modeling.layout import row_major
from seem.modeling.visual_sampler import PromptSampler


@dataclass(frozen=True)
class ImageFeatures:
    """Everything the decoder needs from one image (computed once, reused for every prompt).

    Attributes:
        mask_features: ``(B, Dm, H_pad/4, W_pad/4)`` per-pixel embeddings.
        multi_scale_features: ``[1/32, 1/16, 1/8]`` each ``(B, C, h, w)``.
        levels: the decoder's projected, flattened view of ``multi_scale_features``.
        padded_size: ``(H_pad, W_pad)`` of the model input.
        cache: the decoder's per-image precomputation (:meth:`Seem.cache_features`), or None.
        packs: packed features for prompt rounds (:mod:`seem.modeling.feature_products`). Features are treated
            as fixed once encoded: after writing into ``mask_features`` (or the cache's level features) in place,
            ``packs.clear()`` (and ``cache.packs.clear()``), or rounds keep reading the old packed copy.
    """

    mask_features: Tensor
    multi_scale_features: list[Tensor]
    levels: LevelFeatures
    padded_size: tuple[int, int]
    cache: DecoderImageCache | None = None
    # the packed copy of mask_features prompt rounds multiply (seem.modeling.feature_products), made on first use
    packs: dict = field(default_factory=dict, compare=False, repr=False)

    def to(self, dtype: torch.dtype, mask_features_dtype: torch.dtype | None = None) -> ImageFeatures:
        """All floating tensors in ``dtype`` (``self`` when they already are); ``mask_features`` in
        ``mask_features_dtype`` when given (the decoder computes mask logits in their dtype)."""
        mdt = mask_features_dtype or dtype
        # mask features row-major: every prompt round multiplies them as (B, Dm, h*w), a view only of a
        # row-major tensor (a channels-last one, as the encoder's convs return, would be copied in every round)
        if self.mask_features.dtype == mdt and self.mask_features.is_contiguous() and all(s.dtype == dtype for s in self.levels.src) and (
                self.cache is None or self.cache.keys[0].dtype == dtype):
            return self
        c = None if self.cache is None else self.cache.to(dtype)
        converted = self.with_level_dtype(dtype)
        return ImageFeatures(row_major(self.mask_features, mdt), converted.multi_scale_features, converted.levels,
                             self.padded_size, c)

    def with_level_dtype(self, dtype: torch.dtype) -> ImageFeatures:
        """``levels`` and ``multi_scale_features`` in ``dtype`` (what a decoder in ``dtype`` reads, with or without
        the cache); ``mask_features`` (layout included) and the cache as they are."""
        levels = LevelFeatures([s.to(dtype) for s in self.levels.src], [p.to(dtype) for p in self.levels.pos],
                               self.levels.sizes)
        return ImageFeatures(self.mask_features, [m.to(dtype) for m in self.multi_scale_features], levels,
                             self.padded_size, self.cache)

    def with_cache_dtype(self, dtype: torch.dtype) -> ImageFeatures:
        """The decoder's per-image cache and ``mask_features`` in ``dtype`` (the bulk of a prompt round's reads);
        ``levels`` (sampled for visual prompt tokens) and ``multi_scale_features`` unchanged."""
        c = None if self.cache is None else self.cache.to(dtype)
        return ImageFeatures(row_major(self.mask_features, dtype), self.multi_scale_features, self.levels, self.padded_size, c)

    def select(self, index: int) -> ImageFeatures:
        """The features of image ``index`` of the batch, as a batch of one (views, no copy)."""
        i = slice(index, index + 1)
        levels = LevelFeatures([s[:, i] for s in self.levels.src], [p[:, i] for p in self.levels.pos], self.levels.sizes)
        cache = None if self.cache is None else self.cache.select(index, len(self.cache.keys[0]) // self.mask_features.shape[0])
        return ImageFeatures(self.mask_features[i], [m[i] for m in self.multi_scale_features], levels, self.padded_size, cache)


@dataclass(frozen=True)
class TextPrompt:
    """Projected text tokens of one or more sentences, ready for the decoder.

    Attributes:
        tokens: ``(T, 1, Dp)`` valid (non-padding) token embeddings of all sentences, concatenated.
        padding: ``(1, T)`` bool, True = token ignored by self-attention.
        sentence_embeddings: ``(S, Dp)`` end-of-text embedding of each sentence (not normalised).
    """

    tokens: Tensor
    padding: Tensor
    sentence_embeddings: Tensor


class Seem(nn.Module):
    """SEEM: backbone -> pixel decoder -> SEEM decoder, plus the text encoder.

    Args:
        backbone: images ``(B, 3, H_pad, W_pad)`` -> ``{"res2".."res5"}``.
        pixel_decoder: backbone features -> ``mask_features``, ``multi_scale_features``.
        text_encoder: :class:`seem.modeling.language.text_encoder.TextEncoder`.
        decoder: :class:`SeemDecoder`.
        tokenizer: CLIP BPE tokenizer (not a module; no weights).
        config: the :class:`SeemConfig` the parts were built from.
        candidate_scorer: :class:`seem.candidates.CandidateScorer` when ``config.candidate_scorer_hidden`` (not
            official), else ``None``.
        grounding_scorer: the same form over :func:`seem.grounding_choice.grounding_features` when
            ``config.grounding_scorer_hidden`` (not official), else ``None``.
        box_scorer: a :class:`seem.candidates.CandidateScorer` of a box's spatial-query candidates when
            ``config.box_scorer_hidden`` (not official), else ``None``.
        refine_scorer: a :class:`seem.candidates.CandidateScorer` of the click candidates of later rounds (a memory
            prompt given) when ``config.refine_scorer_hidden`` (not official), else ``None``.
    """

    # registered buffers (see __init__): declared so that attribute access is typed as a Tensor
    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(self, backbone: nn.Module, pixel_decoder: nn.Module, text_encoder: TextEncoder,
                 decoder: SeemDecoder, tokenizer, config: SeemConfig, candidate_scorer: nn.Module | None = None,
                 grounding_scorer: nn.Module | None = None, box_scorer: nn.Module | None = None,
                 refine_scorer: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.text_encoder = text_encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.config = config
        self.candidate_scorer = candidate_scorer
        self.grounding_scorer = grounding_scorer
        self.box_scorer = box_scorer
        self.refine_scorer = refine_scorer
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(3, 1, 1), persistent=False)

    # -------------------------------------------------------------- image
    def encode_image(self, images: Tensor) -> ImageFeatures:
        """``images`` ``(B, 3, H_pad, W_pad)`` normalised and padded (see :mod:`seem.transforms`)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        div = self.config.size_divisibility
        if images.shape[-2] % div or images.shape[-1] % div:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of {div}; pad it first")
        # a backbone marked ``supports_bf16 = False`` (MobileNetV2) keeps the image encoder in fp32 under an
        # outer bf16 autocast: its features lose too much when the pixel decoder rounds them to bf16
        keep_fp32 = not getattr(self.backbone, "supports_bf16", True)
        with torch.autocast(images.device.type, enabled=False) if keep_fp32 else contextlib.nullcontext():
            out = self.pixel_decoder(self.backbone(images))
        levels = self.decoder.prepare_features(out.multi_scale_features)
        return ImageFeatures(out.mask_features, list(out.multi_scale_features), levels,
                             (images.shape[-2], images.shape[-1]))

    def cache_features(self, features: ImageFeatures, level_dtype: torch.dtype | None = None) -> ImageFeatures:
        """``features`` plus the decoder's per-image cache (cross-attention keys/values of every layer and
        level-sized mask features, :class:`~seem.modeling.decoder.DecoderImageCache`): every later
        :meth:`decode` on them skips that work. Costs about one generic decoder pass's key/value
        projections once, and ``2 * layers * h*w * D`` floats of memory. ``level_dtype``: the dtype of the
        level-sized mask features (default: that of ``features.levels``, the decoder's queries)."""
        cache = self.decoder.build_cache(features.levels, features.mask_features, level_dtype)
        return ImageFeatures(features.mask_features, features.multi_scale_features, features.levels,
                             features.padded_size, cache)

    # -------------------------------------------------------------- text
    def encode_text(self, texts: Sequence[str], official_sign_mask: bool = False) -> TextPrompt:
        """Referring phrases -> decoder text tokens (official ``get_text_token_embeddings``, norm=False).

        All valid tokens of all sentences are concatenated (official ``evaluate_grounding``).
        ``official_sign_mask=True`` reproduces a quirk of the official text + visual path
        (``evaluate_interactive_grounding``): it ignores every token whose embedding *sums* to a negative
        number, not only padding. Off by default.

        Raises:
            seem.errors.PromptError: a text longer than the context length.
        """
        tok = self.tokenizer.encode(list(texts), context_length=self.config.text.context_length)
        device = self.pixel_mean.device
        ids, attn = tok.input_ids.to(device), tok.attention_mask.to(device)
        # trim: the causal encoder runs only up to the longest prompt (padding columns change nothing)
        emb = self.text_encoder(ids, attn, trim=True)
        valid = emb.attention_mask
        tokens = emb.token_embeddings[valid][:, None]
        if official_sign_mask:
            padding = (tokens.sum(-1) < 0).t()
        else:
            padding = torch.zeros(1, tokens.shape[0], dtype=torch.bool, device=device)
        return TextPrompt(tokens, padding, emb.sentence_embeddings)

    def embed_vocabulary(self, names: Sequence[str]) -> Tensor:
        """Class names -> ``(C, Dp)`` L2-normalised template-averaged embeddings (official eval path)."""
        return self.text_encoder.embed_vocabulary(list(names), self.tokenizer)

    def class_logits(self, class_embed: Tensor, vocabulary_embeddings: Tensor) -> Tensor:
        """``(..., Dp)`` query class embeddings -> ``(..., C)`` logits (official ``compute_similarity``)."""
        return self.text_encoder.class_logits(class_embed, vocabulary_embeddings)

    # -------------------------------------------------------------- prompts + decoder
    def encode_visual_prompt(self, features: ImageFeatures, positive: Tensor, negative: Tensor,
                             sampler: PromptSampler) -> VisualPromptTokens:
        """``positive``/``negative`` ``(K, H_pad, W_pad)`` bool regions on the image of ``features``."""
        if tuple(positive.shape[-2:]) != tuple(features.padded_size):
            raise ValueError(
                f"prompt masks are {tuple(positive.shape[-2:])}, the image is {tuple(features.padded_size)}"
            )
        return self.decoder.encode_visual_prompt(features.levels, features.mask_features[:1], positive, negative, sampler)

    def decode(self, features: ImageFeatures, visual: VisualPromptTokens | None = None,
               text: TextPrompt | None = None, memory_mask: Tensor | None = None,
               sampler: PromptSampler | None = None, joint_prompts: bool = False,
               object_queries: bool = True, intermediate: bool = True, final_masks: bool = True,
               all_spatial_queries: bool = False) -> DecoderOutput:
        """Run the SEEM decoder on cached image features with any mix of prompts.

        ``joint_prompts=True`` lets the visual queries read the text tokens (and the text queries the visual
        tokens) in self-attention; the official v1 layout keeps them apart. ``object_queries=False`` drops
        the generic object queries from a prompted pass and ``intermediate=False`` returns only the last
        layer's predictions (see :meth:`SeemDecoder.forward`): the fast interactive path, with the same
        prompt outputs; ``final_masks=False`` leaves the last layer's mask logits to the caller
        (:meth:`SeemDecoder.mask_logits` of the queries it returns); ``all_spatial_queries`` copies every object
        query into each visual object's spatial queries (``InferenceConfig.spatial_queries``). ``features.cache`` (from
        :meth:`cache_features`) is used when present.
        """
        return self.decoder(
            features.multi_scale_features,
            features.mask_features,
            visual=visual,
            text_tokens=None if text is None else text.tokens,
            text_padding=None if text is None else text.padding,
            memory_mask=memory_mask,
            sampler=sampler,
            levels=features.levels,
            joint_prompts=joint_prompts,
            cache=features.cache,
            object_queries=object_queries,
            intermediate=intermediate,
            final_masks=final_masks,
            all_spatial_queries=all_spatial_queries,
        )
