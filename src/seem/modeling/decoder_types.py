"""Values passed between the SEEM decoder and its callers: image-side features, prompt tokens, outputs.

Follows the data of ``modeling/interface/seem_v1.py::SEEMDecoder`` (SEEM-REFERENCE.md §1.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from seem.modeling.attention_mask import QueryGroup
from seem.modeling.layout import row_major


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
    """One prediction set: ``class_embed (B, Q, Dp)``, ``mask_embed (B, Q, Dm)``, ``masks (B, Q, H/4, W/4)``
    (empty, ``(B, Q, 0, 0)``, in the last set of a pass decoded with ``final_masks=False``)."""

    class_embed: Tensor
    mask_embed: Tensor
    masks: Tensor


@dataclass(frozen=True)
class DecoderImageCache:
    """Prompt-independent decoder state of one image, computed once by
    :meth:`seem.modeling.decoder.SeemDecoder.build_cache`.

    Queries never change the image features, so each layer's cross-attention keys and values can be
    projected once per image; and as bilinear resizing is linear, the attention masks of intermediate
    layers can be computed from mask features resized to each level (``mask_embed @ resize(F)`` equals
    ``resize(mask_embed @ F)``) instead of full-resolution masks.

    Attributes:
        keys, values: per decoder layer, the projections of that layer's level, ``(B * heads, h*w, D / heads)``
            each (any float dtype: the decoder casts its queries to it).
        level_mask_features: per feature level ``(B, Dm, h, w)`` mask features bilinearly resized to it.
        packs: per level, the packed copy a prompt round multiplies (:mod:`seem.modeling.feature_products`).
    """

    keys: list[Tensor]
    values: list[Tensor]
    level_mask_features: list[Tensor]
    # packed copies of the level mask features, made by the first prompt round that reads them
    # (seem.modeling.feature_products); never compared or printed
    packs: dict = field(default_factory=dict, compare=False, repr=False)

    def to(self, dtype: torch.dtype) -> DecoderImageCache:
        """Keys, values and level mask features in ``dtype``, the level features row-major (prompt rounds read
        them as ``(B, Dm, h*w)`` views); a new cache, with no packed copies yet."""
        return DecoderImageCache([k.to(dtype) for k in self.keys], [v.to(dtype) for v in self.values],
                                 [row_major(f, dtype) for f in self.level_mask_features])

    def select(self, index: int, num_heads: int) -> DecoderImageCache:
        """The cache of image ``index`` of the batch (views)."""
        rows = slice(index * num_heads, (index + 1) * num_heads)
        return DecoderImageCache([k[rows] for k in self.keys], [v[rows] for v in self.values],
                                 [f[index : index + 1] for f in self.level_mask_features])


@dataclass(frozen=True)
class DecoderOutput:
    """What one :meth:`~seem.modeling.decoder.SeemDecoder.forward` pass returns.

    Attributes:
        predictions: ``num_layers + 1`` prediction sets (one before the first layer, one per layer; only the
            last when decoded with ``intermediate=False``), their query axis in cross-attention order.
        ranges: ``[start, end)`` of each present query group on that axis (prompt tokens are not on it).
        visual: the visual prompt the pass read, if any.
        memory_objects: ``(M,)`` int64, the object each memory prompt was assigned to in the last layer.
    """

    predictions: list[HeadOutput]
    ranges: dict[QueryGroup, tuple[int, int]]
    visual: VisualPromptTokens | None = None
    memory_objects: Tensor | None = None

    @property
    def last(self) -> HeadOutput:
        return self.predictions[-1]

    def group(self, group: QueryGroup, tensor: Tensor) -> Tensor:
        """The entries of ``group`` in ``tensor`` ``(B, Q, ...)``, a per-query output of this pass (a view)."""
        start, end = self.ranges[group]
        return tensor[:, start:end]
