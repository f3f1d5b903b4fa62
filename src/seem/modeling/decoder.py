"""The SEEM decoder: object, grounding and spatial queries; text, visual and memory prompts (paper §3.1).

Follows ``modeling/interface/seem_v1.py::SEEMDecoder`` and its ``AttentionDataStruct`` (SEEM-REFERENCE.md
§1.5). Per layer: masked cross-attention of the *queries* (object, grounding, spatial, memory) to one level
of image features (1/32, 1/16, 1/8, repeated), then self-attention over queries + prompt tokens with the
group mask of :mod:`seem.modeling.attention_mask`, then an FFN, then the prediction heads. Prompts enter
only through self-attention; memory prompts cross-attend only inside the previous round's mask.

Prompted decoding works on one image at a time (batch size 1), like the official evaluation paths;
generic (prompt-free) decoding accepts any batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seem.configs import DecoderConfig
from seem.modeling.attention_mask import QueryGroup
from seem.modeling.cross_attention_mask import negative_logits, outside_masks, unblock_empty_rows
from seem.modeling.decoder_queries import DecoderQueries
from seem.modeling.decoder_types import DecoderImageCache, DecoderOutput, HeadOutput, LevelFeatures, VisualPromptTokens
from seem.modeling.downsample import resize_to_levels
from seem.modeling.feature_products import feature_logits
from seem.modeling.layers import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from seem.modeling.packed_linear import autocast_cast
from seem.modeling.position_encoding import PositionEmbeddingSine
from seem.modeling.visual_sampler import PromptSampler, RandomSampler, mean_prompt_features, point_sample

__all__ = ["DecoderImageCache", "DecoderOutput", "DecoderPass", "HeadOutput", "LevelFeatures", "QueryGroup",
           "SeemDecoder", "VisualPromptTokens"]


@dataclass(frozen=True)
class DecoderPass:
    """The inputs every :meth:`SeemDecoder.layer_step` of one :meth:`SeemDecoder.forward` pass reads.

    Attributes:
        levels: the image's :class:`LevelFeatures` (``src`` / ``pos`` ``(h*w, B, D)`` per level).
        mask_features: ``(B, Dm, H/4, W/4)``.
        sampler: the source of random draws (memory prompt objects, per layer).
        visual, memory_mask, cache, joint_prompts, intermediate, final_masks: as the arguments of
            :meth:`SeemDecoder.forward` (``memory_mask`` ``(1, K, h', w')`` logits).
        memory_blocked: the memory prompts' attention masks of this pass by level size (filled as layers ask).
    """

    levels: LevelFeatures
    mask_features: Tensor
    sampler: PromptSampler
    visual: VisualPromptTokens | None = None
    memory_mask: Tensor | None = None
    cache: DecoderImageCache | None = None
    joint_prompts: bool = False
    intermediate: bool = True
    final_masks: bool = True
    memory_blocked: dict[tuple[int, int], Tensor] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.levels.src[0].shape[1])


class SeemDecoder(nn.Module):
    """Multi-scale masked transformer decoder with SEEM's prompt groups. Built by :mod:`seem.build`."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        d = c.hidden_dim
        self.num_heads = c.num_heads
        self.pe_layer = PositionEmbeddingSine(d // 2, normalize=True)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d, c.num_heads, c.pre_norm) for _ in range(c.num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d, c.num_heads, c.pre_norm) for _ in range(c.num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d, c.dim_feedforward, c.pre_norm) for _ in range(c.num_layers)
        )
        self.decoder_norm = nn.LayerNorm(d)
        self.query_feat = nn.Embedding(c.num_queries, d)
        self.query_embed = nn.Embedding(c.num_queries, d)
        self.pn_indicator = nn.Embedding(2, d)  # 0 = positive, 1 = negative
        self.level_embed = nn.Embedding(c.num_feature_levels, d)
        self.input_proj = nn.ModuleList(
            nn.Conv2d(c.in_channels, d, 1) if (c.in_channels != d or c.enforce_input_proj) else nn.Identity()
            for _ in range(c.num_feature_levels)
        )
        self.mask_embed = MLP(d, d, c.mask_dim, 3)
        self.class_embed = nn.Parameter(torch.empty(d, c.dim_proj))
        self.spatial_token_proj = nn.ParameterList(nn.Parameter(torch.empty(d, d)) for _ in range(c.num_feature_levels))
        self.spatial_embed = nn.Embedding(c.spatial_memories, d)  # memory prompt positions
        self.spatial_featured = nn.Embedding(c.spatial_memories, d)  # memory prompt contents
        nn.init.trunc_normal_(self.class_embed, std=0.02)
        for p in self.spatial_token_proj:
            nn.init.trunc_normal_(p, std=0.02)

    # ------------------------------------------------------------------ image side
    def prepare_features(self, multi_scale_features: list[Tensor]) -> LevelFeatures:
        """``multi_scale_features`` [1/32, 1/16, 1/8] each ``(B, C, h, w)`` -> :class:`LevelFeatures`."""
        src, pos, sizes = [], [], []
        for i, x in enumerate(multi_scale_features[: self.config.num_feature_levels]):
            sizes.append((int(x.shape[-2]), int(x.shape[-1])))
            pos.append(self.pe_layer(x).flatten(2).permute(2, 0, 1).contiguous())
            s = self.input_proj[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]
            src.append(s.permute(2, 0, 1).contiguous())
        return LevelFeatures(src, pos, sizes)

    # ------------------------------------------------------------------ visual sampler
    def encode_visual_prompt(
        self,
        levels: LevelFeatures,
        mask_features: Tensor,
        positive: Tensor,
        negative: Tensor,
        sampler: PromptSampler,
    ) -> VisualPromptTokens:
        """Turn region masks into prompt tokens (paper Eq. 4; official spatial branch of ``forward``).

        Args:
            levels: features of the image the regions are drawn on (the target image, or a reference
                image for referred-region prompts).
            mask_features: ``(1, Dm, H/4, W/4)`` of that image.
            positive, negative: ``(K, H_pad, W_pad)`` bool region masks in the padded model frame.
            sampler: the source of random draws.
        """
        if positive.shape != negative.shape:
            raise ValueError(f"positive {tuple(positive.shape)} and negative {tuple(negative.shape)} masks differ")
        k = positive.shape[0]
        max_len = self.config.max_spatial_len
        pos_mean = mean_prompt_features(mask_features, sampler.sample_points(positive, max_len[-1]), k)
        neg_mean = mean_prompt_features(mask_features, sampler.sample_points(negative, max_len[-1]), k)
        tokens, objects, padding = [], [], []
        for i, (src, (h, w)) in enumerate(zip(levels.src, levels.sizes)):
            feats = src.view(h, w, src.shape[1], src.shape[2]).permute(2, 3, 0, 1)[:1]  # (1, D, h, w)
            p = sampler.sample_points(positive, max_len[i])
            n = sampler.sample_points(negative, max_len[i])
            points = torch.cat([p, n], dim=1)
            # bilinear sampling is linear: project the T sampled features, not every pixel of the level
            tok = point_sample(feats, points[1:].t()[None]).permute(2, 0, 1) @ self.spatial_token_proj[i]  # (T, 1, D)
            is_pos = torch.arange(points.shape[1], device=tok.device) < p.shape[1]
            tok = tok + torch.where(is_pos[:, None], self.pn_indicator.weight[0], self.pn_indicator.weight[1])[:, None]
            tokens.append(tok)
            objects.append(points[0].long()[None])
            padding.append(torch.zeros(1, points.shape[1], dtype=torch.bool, device=tok.device))
        return VisualPromptTokens(tokens, objects, padding, pos_mean[None], neg_mean[None])

    # ------------------------------------------------------------------ heads
    def prediction_heads(self, output: Tensor, mask_features: Tensor, masks: bool = True) -> HeadOutput:
        """``output`` ``(Q, B, D)`` -> class/mask embeddings and (``masks``) mask logits at 1/4 resolution."""
        d = self.decoder_norm(output).transpose(0, 1)
        mask_embed = self.mask_embed(d)
        if masks:
            logits = self.mask_logits(mask_embed, mask_features)
        else:
            logits = mask_embed.new_empty((*mask_embed.shape[:2], 0, 0))
        return HeadOutput(d @ self.class_embed, mask_embed, logits)

    @staticmethod
    def mask_logits(mask_embed: Tensor, mask_features: Tensor, packs: dict | None = None) -> Tensor:
        """``(B, Q, Dm)`` mask embeddings x ``(B, Dm, H/4, W/4)`` mask features -> ``(B, Q, H/4, W/4)`` logits,
        computed in the dtype of the mask features, also under autocast (bf16 logits would move mask borders).
        ``packs``: the image's dict of packed features (:func:`~seem.modeling.feature_products.feature_logits`)."""
        return feature_logits(mask_embed, mask_features, packs, "mask_features")

    def _level_attention_mask(self, mask_embed: Tensor, level_mask_features: Tensor, packs: dict | None = None,
                              level: int = 0) -> Tensor:
        """:func:`~seem.modeling.cross_attention_mask.outside_masks` of the full-resolution masks, computed at the
        level's size (:func:`~seem.modeling.cross_attention_mask.negative_logits`: one pass instead of two)."""
        return negative_logits(feature_logits(mask_embed, level_mask_features, packs, level))

    def build_cache(self, levels: LevelFeatures, mask_features: Tensor,
                    level_dtype: torch.dtype | None = None) -> DecoderImageCache:
        """Precompute the per-image part of every decoder pass (see :class:`DecoderImageCache`); the level mask
        features in ``level_dtype`` (default: the level features' dtype, that of the decoder's queries)."""
        keys, values = [], []
        # each level's key / value inputs once (layers cycle through the levels), in the dtype autocast would
        # hand the projections (cast once per level instead of once per layer)
        key_inputs = [autocast_cast(src + pos) for src, pos in zip(levels.src, levels.pos)]
        value_inputs = [autocast_cast(src) for src in levels.src]
        for i, layer in enumerate(self.transformer_cross_attention_layers):
            level = i % self.config.num_feature_levels
            # nn.ModuleList is not generic: __init__ fills this one with CrossAttentionLayer only
            attn = cast(CrossAttentionLayer, layer).multihead_attn
            k, v = attn.project_kv(key_inputs[level], value_inputs[level])
            keys.append(k)
            values.append(v)
        # row-major (rounds read them as (B, Dm, h*w) views: a channels-last copy would be re-laid out per round),
        # in the dtype of the decoder's queries, not of the (possibly fp32) mask features
        resized = resize_to_levels(mask_features, levels.sizes, level_dtype or levels.src[0].dtype)
        return DecoderImageCache(keys, values, resized)

    # ------------------------------------------------------------------ query assembly
    def assemble_queries(
        self,
        batch: int,
        visual: VisualPromptTokens | None,
        text_tokens: Tensor | None,
        text_padding: Tensor | None,
        memory: bool,
        sampler: PromptSampler,
        object_queries: bool = True,
        all_spatial_queries: bool = False,
    ) -> DecoderQueries:
        """The query groups of one pass (SEEM-REFERENCE.md §1.5 items 2-5; official ``SEEMDecoder.forward``
        up to the first layer, ``AttentionDataStruct.set``).

        Object queries are ``query_feat`` / ``query_embed`` ``(Q, B, D)``; grounding queries a full copy of
        them, text tokens ``(T, 1, Dp)`` with a detached copy as position; spatial queries v1:
        ``query_number`` random object queries per prompted object (one draw of ``sampler``), v0 (or
        ``all_spatial_queries``): all;
        visual tokens those of level 0 (replaced per layer); memory prompts ``spatial_featured`` /
        ``spatial_embed`` ``(M, B, D)`` when ``memory``.
        """
        c = self.config
        base_content = self.query_feat.weight[:, None].repeat(1, batch, 1)
        base_position = self.query_embed.weight[:, None].repeat(1, batch, 1)
        queries = DecoderQueries()
        if object_queries:
            queries.add(QueryGroup.OBJECT, base_content, base_position)
        if text_tokens is not None:
            queries.add(QueryGroup.GROUNDING, base_content.clone(), base_position.clone())
            if text_padding is None:
                text_padding = torch.zeros(1, text_tokens.shape[0], dtype=torch.bool, device=text_tokens.device)
            queries.add(QueryGroup.GROUNDING_TOKENS, text_tokens, text_tokens.detach().clone(), text_padding)
        if visual is not None:
            k = visual.num_objects
            if c.version == "v1" and not all_spatial_queries:
                idx = sampler.sample_query_indices(c.num_queries, c.query_number * k).to(base_content.device)
                queries.spatial_object = torch.arange(k).repeat_interleave(c.query_number)
            else:  # v0: every object query is copied for the (single) prompted object
                idx = torch.arange(c.num_queries).repeat(k)
                queries.spatial_object = torch.arange(k).repeat_interleave(c.num_queries)
            queries.add(QueryGroup.SPATIAL, base_content[idx], base_position[idx])
            queries.set_visual_level(visual, 0)
        if memory:
            queries.add(QueryGroup.SPATIAL_MEMORY, self.spatial_featured.weight[:, None].repeat(1, batch, 1),
                        self.spatial_embed.weight[:, None].repeat(1, batch, 1))
        return queries

    # ------------------------------------------------------------------ one layer
    def layer_step(
        self, index: int, queries: DecoderQueries, output: Tensor, mask_embed: Tensor, run: DecoderPass,
        predictions: list[HeadOutput],
    ) -> tuple[Tensor, Tensor]:
        """Decoder layer ``index`` (official loop body of ``SEEMDecoder.forward``, Mask2Former order).

        Masked cross-attention of the cross-attention groups to feature level ``index % levels`` (each query
        reads inside its previous prediction, see :meth:`_cross_attention_mask`), self-attention over all
        groups with the group mask, FFN, then the prediction heads: appended to ``predictions`` at full mask
        resolution when ``run.intermediate`` or in the last layer, else only the mask embeddings.

        Args:
            output: ``(Q, B, D)`` contents of the cross-attention groups (``queries.cross_groups`` order).
            mask_embed: ``(B, Q, Dm)`` the previous prediction's mask embeddings.
        Returns:
            The new ``output`` ``(Q, B, D)`` and its mask embeddings ``(B, Q, Dm)``.
        """
        c = self.config
        level = index % c.num_feature_levels
        attn_mask = self._cross_attention_mask(level, queries, mask_embed, run, predictions)
        kv = (run.cache.keys[index], run.cache.values[index]) if run.cache is not None else None
        output = self.transformer_cross_attention_layers[index](
            output, run.levels.src[level], attn_mask[:, None], run.levels.pos[level], queries.cat_position(queries.cross_groups),
            kv=kv,
        )
        queries.split(queries.cross_groups, output)

        if run.visual is not None:
            queries.set_visual_level(run.visual, level)
        token_object = run.visual.objects[level] if run.visual is not None else None
        self_mask, rows = queries.self_attention_mask(
            run.batch, token_object, c.version == "v1", run.joint_prompts, output.device
        )
        groups = queries.self_groups
        output = self.transformer_self_attention_layers[index](
            queries.cat(groups), self_mask, queries.cat_position(groups), rows=rows
        )
        output = self.transformer_ffn_layers[index](output)
        queries.split(queries.kept_groups, output)

        output = queries.cat(queries.cross_groups)
        last = index == c.num_layers - 1
        full = run.intermediate or last
        return output, self._predict(output, run.mask_features, predictions, full, masks=run.final_masks or not last)

    def _cross_attention_mask(
        self, level: int, queries: DecoderQueries, mask_embed: Tensor, run: DecoderPass, predictions: list[HeadOutput]
    ) -> Tensor:
        """``(B, Q, h*w)`` bool, True = blocked (the same for every head): each query reads inside its previous mask (from the
        full-resolution masks, or with ``run.intermediate`` off from ``mask_embed`` at the level's size);
        memory prompts inside their object's previous-round mask (objects re-drawn per layer); rows that
        would see nothing see everything (official ``attn_mask[all] = False``)."""
        size = run.levels.sizes[level]
        if run.intermediate:
            attn_mask = outside_masks(predictions[-1].masks, size)
        else:
            level_features = run.cache.level_mask_features[level] if run.cache is not None else F.interpolate(
                run.mask_features, size=size, mode="bilinear", align_corners=False)
            packs = run.cache.packs if run.cache is not None else None
            attn_mask = self._level_attention_mask(mask_embed, level_features, packs, level)
        if run.memory_mask is not None and run.visual is not None:
            memory_object = run.sampler.sample_memory_objects(run.visual.num_objects, self.config.spatial_memories)
            queries.memory_object = memory_object.to(attn_mask.device)
            if size not in run.memory_blocked:  # layers reading one level share it
                run.memory_blocked[size] = outside_masks(run.memory_mask, size)
            s, e = queries.ranges()[QueryGroup.SPATIAL_MEMORY]
            attn_mask[:, s:e] = run.memory_blocked[size][:, queries.memory_object]
        return unblock_empty_rows(attn_mask)

    def _predict(self, output: Tensor, mask_features: Tensor, predictions: list[HeadOutput], full: bool,
                 masks: bool = True) -> Tensor:
        """Mask embeddings ``(B, Q, Dm)`` of ``output``; ``full``: also append its :class:`HeadOutput` (with mask
        logits when ``masks``)."""
        if full:
            head = self.prediction_heads(output, mask_features, masks)
            predictions.append(head)
            return head.mask_embed
        return self.mask_embed(self.decoder_norm(output).transpose(0, 1))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        multi_scale_features: list[Tensor],
        mask_features: Tensor,
        visual: VisualPromptTokens | None = None,
        text_tokens: Tensor | None = None,
        text_padding: Tensor | None = None,
        memory_mask: Tensor | None = None,
        sampler: PromptSampler | None = None,
        levels: LevelFeatures | None = None,
        joint_prompts: bool = False,
        cache: DecoderImageCache | None = None,
        object_queries: bool = True,
        intermediate: bool = True,
        final_masks: bool = True,
        all_spatial_queries: bool = False,
    ) -> DecoderOutput:
        """Decode one batch: :meth:`assemble_queries`, a first prediction, then :meth:`layer_step` per layer.

        Args:
            multi_scale_features: [1/32, 1/16, 1/8] ``(B, C, h, w)`` from the pixel decoder.
            mask_features: ``(B, Dm, H/4, W/4)``.
            visual: prompt tokens from :meth:`encode_visual_prompt` (on this or another image).
            text_tokens: ``(T, 1, Dp)`` projected text token embeddings (grounding prompts).
            text_padding: ``(1, T)`` bool, True = token ignored.
            memory_mask: ``(1, K, h', w')`` previous-round mask logits of the K visual objects.
            sampler: random draws (default: a fresh :class:`RandomSampler`).
            levels: precomputed :meth:`prepare_features` output (saves work across prompt rounds).
            joint_prompts: spatial queries read text tokens and grounding queries visual tokens (False: the
                official v1 table; :func:`~seem.modeling.attention_mask.build_self_attention_mask`).
            cache: :meth:`build_cache` of these features: cross-attention keys/values and level-sized mask
                features are reused instead of recomputed (same outputs up to float rounding).
            object_queries: include the generic object queries. They attend only to themselves and the
                image (SEEM-REFERENCE.md §1.5), so a prompted pass without them gives the prompt groups'
                outputs unchanged; the prompt round then costs only the prompt-side queries.
            intermediate: every layer's predictions at full mask resolution (training, parity). False: only
                the last layer's :class:`HeadOutput`; other layers make only their attention masks.
            final_masks: False: the last prediction set has empty ``masks`` (the caller computes the masks of
                the queries it returns with :meth:`mask_logits`, the prompt rounds' path).
            all_spatial_queries: every object query (not ``query_number`` random ones) per visual object.

        Returns:
            :class:`DecoderOutput`; its ``ranges`` locate each :class:`QueryGroup` on the query axis.

        Raises:
            ValueError: a prompted batch larger than one, memory without visual prompt, or nothing to decode.
        """
        levels = levels or self.prepare_features(multi_scale_features)
        run = DecoderPass(levels, mask_features, sampler or RandomSampler(), visual, memory_mask, cache,
                          joint_prompts, intermediate, final_masks)
        prompted = visual is not None or text_tokens is not None
        if prompted and run.batch != 1:
            raise ValueError(f"prompted decoding needs one image at a time, got a batch of {run.batch}")
        if memory_mask is not None and visual is None:
            raise ValueError("a memory prompt needs the visual prompt of the same objects")
        if not object_queries and not prompted:
            raise ValueError("without object queries there is nothing to decode: give a visual or text prompt")
        queries = self.assemble_queries(run.batch, visual, text_tokens, text_padding, memory_mask is not None,
                                        run.sampler, object_queries, all_spatial_queries)
        output = queries.cat(queries.cross_groups)
        predictions: list[HeadOutput] = []
        mask_embed = self._predict(output, mask_features, predictions, full=intermediate, masks=True)
        for i in range(self.config.num_layers):
            output, mask_embed = self.layer_step(i, queries, output, mask_embed, run, predictions)
        return DecoderOutput(predictions, queries.ranges(), visual, queries.memory_object)
