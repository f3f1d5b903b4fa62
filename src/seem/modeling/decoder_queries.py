"""The query axis of one SEEM decoder pass: which groups are present, their contents, positions and padding.

Follows ``modeling/interface/prototype/attention_data_struct_seemv1.py::AttentionDataStruct`` (its
``set``, ``cross_attn_variables``, ``self_attn`` and ``update_variables``; SEEM-REFERENCE.md §1.5): each
group keeps its own content and positional embedding; cross-attention reads the concatenation of the groups
in :data:`~seem.modeling.attention_mask.CROSS_ATTENTION_GROUPS`, self-attention that of all present groups
in :class:`~seem.modeling.attention_mask.QueryGroup` order, and each result is split back into the groups.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seem.modeling.attention_mask import (
    CROSS_ATTENTION_GROUPS,
    GROUPS,
    QueryGroup,
    QueryLayout,
    build_self_attention_mask,
)
from seem.modeling.cross_attention_mask import plain_cpu
from seem.modeling.decoder_types import VisualPromptTokens


class DecoderQueries:
    """Mutable per-pass state of the query groups of one decoder pass (built by ``SeemDecoder.assemble_queries``).

    Contents and positions are ``(N_g, B, D)`` per group; ``padding`` ``(1, N_g)`` bool (True = ignored) for
    token groups. ``spatial_object`` ``(N_s,)`` int64 is the prompted object of each spatial query;
    ``memory_object`` ``(M,)`` int64 the object of each memory prompt, re-drawn every layer.
    """

    def __init__(self) -> None:
        self.content: dict[QueryGroup, Tensor] = {}
        self.position: dict[QueryGroup, Tensor] = {}
        self.sizes: dict[QueryGroup, int] = {}
        self.padding: dict[QueryGroup, Tensor] = {}
        self.spatial_object: Tensor | None = None
        self.memory_object: Tensor | None = None
        # self-attention masks of this pass by layout and object assignments (mostly the same for every layer)
        self._masks: dict[tuple, tuple[Tensor | None, Tensor | None]] = {}

    def add(self, group: QueryGroup, content: Tensor, position: Tensor, padding: Tensor | None = None) -> None:
        """Put ``group`` on the query axis (or replace it): ``content`` / ``position`` ``(N, B, D)``."""
        self.content[group] = content
        self.position[group] = position
        self.sizes[group] = int(content.shape[0])
        if padding is not None:
            self.padding[group] = padding

    def __contains__(self, group: QueryGroup) -> bool:
        return group in self.sizes

    # ---------------------------------------------------------------- which groups take part where
    @property
    def cross_groups(self) -> tuple[QueryGroup, ...]:
        """Present groups that cross-attend to the image (the groups of the prediction heads' query axis)."""
        return tuple(g for g in CROSS_ATTENTION_GROUPS if g in self.sizes)

    @property
    def self_groups(self) -> tuple[QueryGroup, ...]:
        """Present groups of the self-attention, in concatenation order."""
        return tuple(g for g in GROUPS if g in self.sizes)

    @property
    def kept_groups(self) -> tuple[QueryGroup, ...]:
        """Self-attention groups whose outputs are read: visual tokens are re-sampled from the image features
        every layer, so their self-attention and FFN outputs are never used (and not computed)."""
        return tuple(g for g in self.self_groups if g != QueryGroup.SPATIAL_TOKENS)

    def ranges(self) -> dict[QueryGroup, tuple[int, int]]:
        """``[start, end)`` of each cross-attention group on the prediction heads' query axis."""
        return QueryLayout(sizes={g: self.sizes[g] for g in self.cross_groups}).ranges(CROSS_ATTENTION_GROUPS)

    # ---------------------------------------------------------------- concatenation
    def cat(self, groups: tuple[QueryGroup, ...]) -> Tensor:
        """``(sum N_g, B, D)`` contents of ``groups`` in the given order."""
        return torch.cat([self.content[g] for g in groups])

    def cat_position(self, groups: tuple[QueryGroup, ...]) -> Tensor:
        """``(sum N_g, B, D)`` positional embeddings of ``groups`` in the given order."""
        return torch.cat([self.position[g] for g in groups])

    def split(self, groups: tuple[QueryGroup, ...], tensor: Tensor) -> None:
        """Store the consecutive slices of ``tensor`` ``(sum N_g, B, D)`` as the new contents of ``groups``."""
        start = 0
        for g in groups:
            self.content[g] = tensor[start : start + self.sizes[g]]
            start += self.sizes[g]

    # ---------------------------------------------------------------- self-attention
    def set_visual_level(self, visual: VisualPromptTokens, level: int) -> None:
        """Visual tokens of feature level ``level``; as official, their position is a detached copy (no
        gradient flows through it)."""
        tokens = visual.tokens[level]
        self.add(QueryGroup.SPATIAL_TOKENS, tokens, tokens.detach(), visual.padding[level])

    def self_attention_mask(
        self, batch: int, spatial_token_object: Tensor | None, per_object_blocks: bool,
        joint_prompts: bool, device: torch.device,
    ) -> tuple[Tensor | None, Tensor | None]:
        """The self-attention mask ``(B, 1, N, N)`` bool, the same for every head (True = blocked, see
        :func:`~seem.modeling.attention_mask.build_self_attention_mask`) over :attr:`self_groups`, and the
        int64 rows of :attr:`kept_groups` in it (None = every row). The mask is None when it blocks nothing
        in the kept rows (one object without padding: the fused attention then runs unmasked)."""
        # by content: levels' visual tokens and each layer's memory draw are new tensors, mostly of equal values
        groups = self.self_groups
        key = (tuple(self.sizes[g] for g in groups), _content(spatial_token_object), _content(self.memory_object),
               tuple(_content(self.padding.get(g)) for g in groups), batch, per_object_blocks, joint_prompts)
        if key not in self._masks:
            self._masks[key] = self._self_attention_mask(batch, spatial_token_object, per_object_blocks, joint_prompts,
                                                         device)
        return self._masks[key]

    def _self_attention_mask(
        self, batch: int, spatial_token_object: Tensor | None, per_object_blocks: bool,
        joint_prompts: bool, device: torch.device,
    ) -> tuple[Tensor | None, Tensor | None]:
        layout = QueryLayout(
            sizes={g: self.sizes[g] for g in self.self_groups},
            spatial_query_object=self.spatial_object,
            spatial_token_object=spatial_token_object,
            memory_object=self.memory_object,
            padding=self.padding,
        )
        mask = build_self_attention_mask(layout, batch, per_object_blocks=per_object_blocks, joint_prompts=joint_prompts)
        kept = self.kept_groups
        rows = None
        if len(kept) != len(self.self_groups):
            rows = torch.cat([torch.arange(s, e) for g, (s, e) in layout.ranges().items() if g in kept])
        blocks = mask if rows is None else mask[:, rows]
        out = mask.to(device)[:, None] if bool(blocks.any()) else None
        return out, None if rows is None else rows.to(device)


def _content(t: Tensor | None) -> tuple | None:
    """A hashable copy of a small index / padding tensor's shape, dtype and values (``None`` for ``None``); a
    tensor NumPy cannot read (under ``torch.func`` or tracing, off the CPU) is keyed by identity, held in the key
    so that its id is not reused meanwhile."""
    if t is None:
        return None
    if not plain_cpu(t):
        return ("tensor", id(t), t)
    return (tuple(t.shape), str(t.dtype), t.detach().numpy().tobytes())
