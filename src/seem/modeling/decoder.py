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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..configs import DecoderConfig
from .attention_mask import CROSS_ATTENTION_GROUPS, GROUPS, QueryLayout, build_self_attention_mask
from .layers import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from .position_encoding import PositionEmbeddingSine
from .visual_sampler import PromptSampler, RandomSampler, mean_prompt_features, point_sample


@dataclass(frozen=True)
class LevelFeatures:
    """Decoder-side image features: per level ``src``/``pos`` ``(h*w, B, D)`` and ``sizes`` ``(h, w)``.

    ``src`` includes the input projection and the level embedding (official ``prepare_features``).
    """

    src: list[Tensor]
    pos: list[Tensor]
    sizes: list[tuple[int, int]]


@dataclass(frozen=True)
class VisualPromptTokens:
    """Output of the visual sampler for K prompted objects of one image.

    Attributes:
        tokens: per level ``(T_i, 1, D)`` prompt tokens (features @ spatial_token_proj + pn indicator).
        objects: per level ``(1, T_i)`` int64 object index of each token.
        padding: per level ``(1, T_i)`` bool (True = padding).
        positive_mean: ``(1, K, Dm)`` mean mask feature of each object's positive pixels.
        negative_mean: ``(1, K, Dm)`` same for negative pixels (-1 where there are none).
    """

    tokens: list[Tensor]
    objects: list[Tensor]
    padding: list[Tensor]
    positive_mean: Tensor
    negative_mean: Tensor

    @property
    def num_objects(self) -> int:
        return int(self.positive_mean.shape[1])


@dataclass(frozen=True)
class HeadOutput:
    """One prediction set: ``class_embed (B, Q, Dp)``, ``mask_embed (B, Q, Dm)``, ``masks (B, Q, H/4, W/4)``."""

    class_embed: Tensor
    mask_embed: Tensor
    masks: Tensor


@dataclass(frozen=True)
class DecoderImageCache:
    """Prompt-independent decoder state of one image, computed once by :meth:`SeemDecoder.build_cache`.

    Queries never change the image features, so each layer's cross-attention keys and values can be
    projected once per image; and as bilinear resizing is linear, the attention masks of intermediate
    layers can be computed from mask features resized to each level (``mask_embed @ resize(F)`` equals
    ``resize(mask_embed @ F)``) instead of full-resolution masks.

    Attributes:
        keys, values: per decoder layer, the projections of that layer's level: keys transposed
            ``(B * heads, D / heads, h*w)``, values ``(B * heads, h*w, D / heads)``.
        level_mask_features: per feature level ``(B, Dm, h, w)`` mask features bilinearly resized to it.
    """

    keys: list[Tensor]
    values: list[Tensor]
    level_mask_features: list[Tensor]

    def select(self, index: int, num_heads: int) -> DecoderImageCache:
        """The cache of image ``index`` of the batch (views)."""
        rows = slice(index * num_heads, (index + 1) * num_heads)
        return DecoderImageCache([k[rows] for k in self.keys], [v[rows] for v in self.values],
                                 [f[index : index + 1] for f in self.level_mask_features])


@dataclass(frozen=True)
class DecoderOutput:
    """All prediction sets (``num_layers + 1``) and where each query group sits on the query axis."""

    predictions: list[HeadOutput]
    ranges: dict[str, tuple[int, int]]
    visual: VisualPromptTokens | None = None
    memory_objects: Tensor | None = None

    @property
    def last(self) -> HeadOutput:
        return self.predictions[-1]


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
    def prediction_heads(self, output: Tensor, mask_features: Tensor) -> HeadOutput:
        """``output`` ``(Q, B, D)`` -> class/mask embeddings and mask logits at 1/4 resolution."""
        d = self.decoder_norm(output).transpose(0, 1)
        mask_embed = self.mask_embed(d)
        # mask logits in the dtype of the mask features, also under autocast (bf16 logits would move mask borders)
        with torch.autocast(mask_features.device.type, enabled=False):
            masks = torch.einsum("bqc,bchw->bqhw", mask_embed.to(mask_features.dtype), mask_features)
        return HeadOutput(d @ self.class_embed, mask_embed, masks)

    def _attention_mask(self, masks: Tensor, size: tuple[int, int]) -> Tensor:
        """Mask logits ``(B, Q, h, w)`` -> ``(B*heads, Q, size)`` bool, True = outside the mask (blocked)."""
        m = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        return (m.sigmoid().flatten(2) < 0.5).repeat_interleave(self.num_heads, dim=0).detach()

    def _level_attention_mask(self, mask_embed: Tensor, level_mask_features: Tensor) -> Tensor:
        """Same as :meth:`_attention_mask` of the full-resolution masks, computed at the level's size."""
        m = torch.einsum("bqc,bchw->bqhw", mask_embed, level_mask_features.to(mask_embed.dtype))
        return (m.sigmoid().flatten(2) < 0.5).repeat_interleave(self.num_heads, dim=0).detach()

    def build_cache(self, levels: LevelFeatures, mask_features: Tensor) -> DecoderImageCache:
        """Precompute the per-image part of every decoder pass (see :class:`DecoderImageCache`)."""
        keys, values = [], []
        for i, layer in enumerate(self.transformer_cross_attention_layers):
            level = i % self.config.num_feature_levels
            k, v = layer.multihead_attn.project_kv(levels.src[level] + levels.pos[level], levels.src[level])
            keys.append(k)
            values.append(v)
        # in the dtype of the decoder's queries (the level features'), not of the (possibly fp32) mask features
        resized = [F.interpolate(mask_features, size=size, mode="bilinear", align_corners=False).to(levels.src[0].dtype)
                   for size in levels.sizes]
        return DecoderImageCache(keys, values, resized)

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
    ) -> DecoderOutput:
        """Decode one batch.

        Args:
            multi_scale_features: [1/32, 1/16, 1/8] ``(B, C, h, w)`` from the pixel decoder.
            mask_features: ``(B, Dm, H/4, W/4)``.
            visual: prompt tokens from :meth:`encode_visual_prompt` (on this or another image).
            text_tokens: ``(T, 1, Dp)`` projected text token embeddings (grounding prompts).
            text_padding: ``(1, T)`` bool, True = token ignored.
            memory_mask: ``(1, K, h', w')`` previous-round mask logits of the K visual objects.
            sampler: random draws (default: a fresh :class:`RandomSampler`).
            levels: precomputed :meth:`prepare_features` output (saves work across prompt rounds).
            joint_prompts: let spatial queries read text tokens and grounding queries read visual tokens
                (see :func:`build_self_attention_mask`); False = the official v1 attention table.
            cache: :meth:`build_cache` of these features: cross-attention keys/values and level-sized mask
                features are reused instead of recomputed (same outputs up to float rounding).
            object_queries: include the generic object queries. They attend only to themselves and the
                image (SEEM-REFERENCE.md §1.5), so a prompted pass without them gives the prompt groups'
                outputs unchanged; the prompt round then costs only the prompt-side queries.
            intermediate: compute every layer's predictions at full mask resolution (training, parity).
                False: only the last layer's :class:`HeadOutput` is returned; intermediate layers only
                produce their attention masks, at the attention level's resolution.

        Raises:
            ValueError: a prompted batch larger than one, memory without visual prompt, or nothing to decode.
        """
        sampler = sampler or RandomSampler()
        levels = levels or self.prepare_features(multi_scale_features)
        batch = levels.src[0].shape[1]
        prompted = visual is not None or text_tokens is not None
        if prompted and batch != 1:
            raise ValueError(f"prompted decoding needs one image at a time, got a batch of {batch}")
        if memory_mask is not None and visual is None:
            raise ValueError("a memory prompt needs the visual prompt of the same objects")
        if not object_queries and not prompted:
            raise ValueError("without object queries there is nothing to decode: give a visual or text prompt")
        c = self.config
        base_content = self.query_feat.weight[:, None].repeat(1, batch, 1)
        base_position = self.query_embed.weight[:, None].repeat(1, batch, 1)
        content: dict[str, Tensor] = {}
        position: dict[str, Tensor] = {}
        sizes: dict[str, int] = {}
        if object_queries:
            content["queries_object"], position["queries_object"] = base_content, base_position
            sizes["queries_object"] = c.num_queries
        layout_extra: dict = {}
        if text_tokens is not None:
            content["queries_grounding"] = base_content.clone()
            position["queries_grounding"] = base_position.clone()
            content["tokens_grounding"] = text_tokens
            position["tokens_grounding"] = text_tokens.detach().clone()
            sizes["queries_grounding"] = c.num_queries
            sizes["tokens_grounding"] = text_tokens.shape[0]
            if text_padding is None:
                text_padding = torch.zeros(1, text_tokens.shape[0], dtype=torch.bool, device=text_tokens.device)
            layout_extra["tokens_grounding"] = text_padding
        k = visual.num_objects if visual is not None else 0
        spatial_object = None
        if visual is not None:
            if c.version == "v1":
                idx = sampler.sample_query_indices(c.num_queries, c.query_number * k).to(base_content.device)
                spatial_object = torch.arange(k).repeat_interleave(c.query_number)
            else:  # v0: every object query is copied for the (single) prompted object
                idx = torch.arange(c.num_queries).repeat(k)
                spatial_object = torch.arange(k).repeat_interleave(c.num_queries)
            content["queries_spatial"] = base_content[idx]
            position["queries_spatial"] = base_position[idx]
            sizes["queries_spatial"] = idx.numel()
            sizes["tokens_spatial"] = visual.tokens[0].shape[0]
        if memory_mask is not None:
            m = c.spatial_memories
            content["memories_spatial"] = self.spatial_featured.weight[:, None].repeat(1, batch, 1)
            position["memories_spatial"] = self.spatial_embed.weight[:, None].repeat(1, batch, 1)
            sizes["memories_spatial"] = m

        cross_groups = tuple(g for g in CROSS_ATTENTION_GROUPS if g in sizes)
        self_groups = tuple(g for g in GROUPS if g in sizes)
        # visual tokens are reset from the image features every layer: their self-attention outputs are never read
        kept_groups = tuple(g for g in self_groups if g != "tokens_spatial")

        def cat(groups, table):
            return torch.cat([table[g] for g in groups])

        def split(groups, tensor):
            start = 0
            for g in groups:
                content[g] = tensor[start : start + sizes[g]]
                start += sizes[g]

        layout_sizes = {g: sizes[g] for g in GROUPS if g in sizes}
        cross_layout = QueryLayout(sizes={g: sizes[g] for g in cross_groups})
        ranges = cross_layout.ranges(CROSS_ATTENTION_GROUPS)

        output = cat(cross_groups, content)
        query_pos = cat(cross_groups, position)
        predictions: list[HeadOutput] = []
        if intermediate:
            head = self.prediction_heads(output, mask_features)
            predictions.append(head)
            mask_embed = head.mask_embed
        else:
            mask_embed = self.mask_embed(self.decoder_norm(output).transpose(0, 1))
        memory_objects = None
        for i in range(c.num_layers):
            level = i % c.num_feature_levels
            if intermediate:
                attn_mask = self._attention_mask(predictions[-1].masks, levels.sizes[level])
            else:
                level_features = cache.level_mask_features[level] if cache is not None else F.interpolate(
                    mask_features, size=levels.sizes[level], mode="bilinear", align_corners=False)
                attn_mask = self._level_attention_mask(mask_embed, level_features)
            if memory_mask is not None:
                memory_objects = sampler.sample_memory_objects(k, c.spatial_memories).to(attn_mask.device)
                mem = self._attention_mask(memory_mask, levels.sizes[level])
                s, e = ranges["memories_spatial"]
                attn_mask[:, s:e] = mem[:, memory_objects]
            attn_mask[attn_mask.all(dim=-1)] = False
            kv = (cache.keys[i], cache.values[i]) if cache is not None else None
            output = self.transformer_cross_attention_layers[i](
                output, levels.src[level], attn_mask, levels.pos[level], query_pos, kv=kv
            )
            split(cross_groups, output)

            if visual is not None:
                content["tokens_spatial"] = visual.tokens[level]
                position["tokens_spatial"] = visual.tokens[level].detach()  # as official: no gradient via the position
                sizes["tokens_spatial"] = layout_sizes["tokens_spatial"] = visual.tokens[level].shape[0]
                layout_extra["tokens_spatial"] = visual.padding[level]
            layout = QueryLayout(
                sizes=layout_sizes,
                spatial_query_object=spatial_object,
                spatial_token_object=visual.objects[level] if visual is not None else None,
                memory_object=memory_objects,
                padding=layout_extra,
            )
            self_mask = build_self_attention_mask(
                layout, batch, per_object_blocks=c.version == "v1", joint_prompts=joint_prompts
            )
            self_mask = self_mask.to(output.device).repeat_interleave(self.num_heads, dim=0)
            rows = None
            if len(kept_groups) < len(self_groups):
                rows = torch.cat([torch.arange(s, e) for g, (s, e) in layout.ranges().items() if g in kept_groups])
                rows = rows.to(output.device)
            output = cat(self_groups, content)
            output = self.transformer_self_attention_layers[i](output, self_mask, cat(self_groups, position), rows=rows)
            output = self.transformer_ffn_layers[i](output)
            split(kept_groups, output)

            output = cat(cross_groups, content)
            if intermediate or i == c.num_layers - 1:
                head = self.prediction_heads(output, mask_features)
                predictions.append(head)
                mask_embed = head.mask_embed
            else:
                mask_embed = self.mask_embed(self.decoder_norm(output).transpose(0, 1))
        return DecoderOutput(predictions, ranges, visual, memory_objects)
