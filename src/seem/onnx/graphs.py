"""The two graphs exported to ONNX: the image encoder (image -> features and the decoder's per-image cache)
and the click decoder (cache + clicks -> mask logits, label, score), written with tensor operations only so
that one trace serves any image size and any number of clicks.

:class:`ClickDecoderGraph` computes what :meth:`seem.SeemPredictor.predict` computes for the clicks of **one
object** (``points`` + ``point_labels``, no memory, no text) with the default seed: the same 3x3 click
squares (:func:`seem.prompts.regions.click_regions`), prompt tokens (:meth:`SeemDecoder.encode_visual_prompt`),
spatial queries (the object queries drawn by ``RandomSampler(seed)``, baked in at export), decoder layers
(:meth:`SeemDecoder.layer_step` with ``intermediate=False``) and query choice (:func:`seem.postprocess.select_spatial`).
With one object and no padding the self-attention blocks nothing, so it runs unmasked. Differences: more than
512 click pixels (57+ clicks) keep the first 512 in row-major order where PyTorch draws 512 at random; the score
is computed on the 1/4-resolution logits (PyTorch: at the original size).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from seem.modeling.decoder import SeemDecoder
from seem.modeling.layers import CrossAttentionLayer
from seem.modeling.seem import Seem
from seem.modeling.visual_sampler import point_sample


def cache_output_names(num_layers: int, num_levels: int = 3) -> list[str]:
    """Names of the encoder outputs / decoder cache inputs, in order."""
    return (["mask_features"] + [f"level_{i}" for i in range(num_levels)]
            + [f"level_mask_features_{i}" for i in range(num_levels)]
            + [f"keys_{i}" for i in range(num_layers)] + [f"values_{i}" for i in range(num_layers)])


class ImageEncoderGraph(nn.Module):
    """``image`` ``(1, 3, H_pad, W_pad)`` float32, normalised and zero-padded to a multiple of 32 (see
    :mod:`seem.transforms`) -> the tensors of :func:`cache_output_names`: ``mask_features`` ``(1, Dm, H_pad/4,
    W_pad/4)``; ``level_i`` ``(1, D, h_i, w_i)`` the decoder's projected features at strides 32, 16, 8;
    ``level_mask_features_i`` ``(1, Dm, h_i, w_i)``; ``keys_j`` / ``values_j`` ``(heads, h*w, D/heads)`` of decoder
    layer ``j`` (:meth:`Seem.cache_features`)."""

    def __init__(self, model: Seem) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        out = m.pixel_decoder(m.backbone(image))
        dec: SeemDecoder = m.decoder
        levels, level_masks, pos = [], [], []
        for i, x in enumerate(list(out.multi_scale_features)[: dec.config.num_feature_levels]):
            levels.append(dec.input_proj[i](x) + dec.level_embed.weight[i][None, :, None, None])
            pos.append(dec.pe_layer(x))
            level_masks.append(nn.functional.interpolate(out.mask_features, size=x.shape[-2:], mode="bilinear",
                                                         align_corners=False))
        keys, values = [], []
        for j, layer in enumerate(dec.transformer_cross_attention_layers):
            lv = j % len(levels)
            src = levels[lv].flatten(2).permute(2, 0, 1)
            attn = cast(CrossAttentionLayer, layer).multihead_attn
            k, v = attn.project_kv(src + pos[lv].flatten(2).permute(2, 0, 1), src)
            keys.append(k)
            values.append(v)
        return (out.mask_features, *levels, *level_masks, *keys, *values)


class ClickDecoderGraph(nn.Module):
    """Clicks of one object -> mask logits, label and score (see the module docstring).

    Inputs: ``point_coords`` ``(N, 2)`` float32 (x, y) pixels of the **resized** image (before padding);
    ``point_labels`` ``(N,)`` float32, 1 = positive, 0 = negative; ``image_size`` ``(2,)`` int64 the resized
    image's (h, w); then the encoder's outputs (:func:`cache_output_names`).

    Outputs: ``mask_logits`` ``(1, H_pad/4, W_pad/4)`` float32 (> 0 = inside, padded model frame at 1/4);
    ``label_ids`` ``(1,)`` int64 into the vocabulary baked in at export; ``scores`` ``(1,)`` float32;
    ``mask_embed`` ``(1, Dm)`` float32, the chosen query's mask embedding (``mask_logits`` = it times the encoder's
    ``mask_features``), for the click fit of :mod:`seem.click_fit` (metadata ``seem.click_fit``).

    Args:
        model: the built :class:`Seem`.
        query_indices: ``(Ns,)`` int64 object queries copied into the spatial queries (``query_number`` random
            ones, or all of them with ``InferenceConfig.spatial_queries == "all"``).
        vocabulary_embeddings: ``(C + 1, Dp)`` label embeddings, the last one "background".
    """

    query_indices: Tensor  # registered buffers (see __init__)
    vocabulary_embeddings: Tensor

    def __init__(self, model: Seem, query_indices: Tensor, vocabulary_embeddings: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("query_indices", query_indices.long().clone(), persistent=False)
        self.register_buffer("vocabulary_embeddings", vocabulary_embeddings.float().clone(), persistent=False)

    def _click_points(self, coords: Tensor, labels: Tensor, image_size: Tensor, padded: tuple) -> Tensor:
        """``(3, n)`` (positive flag, y / H_pad, x / W_pad) of the 3x3 click squares' pixels, positives first."""
        hp, wp = padded
        cx = torch.minimum(coords[:, 0].floor(), (image_size[1] - 1).to(coords.dtype))
        cy = torch.minimum(coords[:, 1].floor(), (image_size[0] - 1).to(coords.dtype))
        yy = torch.arange(hp, dtype=coords.dtype)[None, :, None]
        xx = torch.arange(wp, dtype=coords.dtype)[None, None, :]
        inside = (yy < image_size[0].to(coords.dtype)) & (xx < image_size[1].to(coords.dtype))
        square = ((yy - cy[:, None, None]).abs() <= 1) & ((xx - cx[:, None, None]).abs() <= 1) & inside
        positive = labels[:, None, None] > 0.5
        parts = []
        for flag, region in ((1.0, (square & positive).any(0)), (0.0, (square & ~positive).any(0))):
            yx = region.nonzero().to(coords.dtype)
            pts = torch.stack([torch.full_like(yx[:, 0], flag), yx[:, 0] / hp, yx[:, 1] / wp])
            parts.append(pts[:, :512])
        return torch.cat(parts, dim=1)

    def forward(self, point_coords: Tensor, point_labels: Tensor, image_size: Tensor, mask_features: Tensor,
                *cache: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dec: SeemDecoder = self.model.decoder
        n_levels = dec.config.num_feature_levels
        n_layers = dec.config.num_layers
        levels = cache[:n_levels]
        level_masks = cache[n_levels : 2 * n_levels]
        keys = cache[2 * n_levels : 2 * n_levels + n_layers]
        values = cache[2 * n_levels + n_layers :]
        hp, wp = mask_features.shape[-2] * 4, mask_features.shape[-1] * 4
        points = self._click_points(point_coords, point_labels, image_size, (hp, wp))
        is_pos = points[0] > 0.5
        yx = points[1:].t()[None]  # (1, n, 2)
        positive_mean = (point_sample(mask_features, yx)[0] * is_pos).sum(-1) / is_pos.sum().clamp_min(1)
        indicator = torch.where(is_pos[:, None], dec.pn_indicator.weight[0], dec.pn_indicator.weight[1])
        tokens = [(point_sample(levels[i], yx).permute(2, 0, 1) @ dec.spatial_token_proj[i]) + indicator[:, None]
                  for i in range(n_levels)]
        output = dec.query_feat.weight[self.query_indices][:, None]
        query_pos = dec.query_embed.weight[self.query_indices][:, None]
        q = output.shape[0]
        rows = torch.arange(q)
        mask_embed = dec.mask_embed(dec.decoder_norm(output).transpose(0, 1))
        for j in range(n_layers):
            lv = j % n_levels
            lm = level_masks[lv]
            blocked = torch.bmm(mask_embed, lm.flatten(2)).sigmoid() < 0.5
            blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
            output = dec.transformer_cross_attention_layers[j](output, None, blocked[:, None], None, query_pos,
                                                               kv=(keys[j], values[j]))
            tok = tokens[lv]
            output = dec.transformer_self_attention_layers[j](torch.cat([output, tok]), None,
                                                              torch.cat([query_pos, tok]), rows=rows)
            output = dec.transformer_ffn_layers[j](output)
            mask_embed = dec.mask_embed(dec.decoder_norm(output).transpose(0, 1))
        class_embed = dec.decoder_norm(output).transpose(0, 1)[0] @ dec.class_embed  # (Q, Dp)
        chosen = (mask_embed[0] @ positive_mean).argmax()
        logits = (mask_embed[0, chosen] @ mask_features[0].flatten(1)).view(1, *mask_features.shape[-2:])
        probs = self.model.class_logits(class_embed[chosen][None], self.vocabulary_embeddings).softmax(-1)[:, :-1]
        p, label = probs.max(dim=-1)
        inside = (logits > 0).float()
        mask_score = (logits.sigmoid() * inside).sum() / (inside.sum() + 1e-6)
        return logits, label, p * mask_score, mask_embed[0, chosen][None]
