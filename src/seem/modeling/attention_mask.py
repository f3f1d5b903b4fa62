"""Who may attend to whom in the SEEM decoder's self-attention: a pure function of the query layout.

Follows ``modeling/interface/prototype/attention_data_struct_seemv1.py::AttentionDataStruct.self_attn``
with the v1 ``ATTENTION_ARCH`` (SEEM-REFERENCE.md §1.5, table in item 7):

=====================  =========================================================
row (who)              may attend to
=====================  =========================================================
object queries         object queries
grounding queries      grounding queries, text tokens
spatial queries        spatial queries, visual tokens, memory prompts
text tokens            grounding queries, text tokens
visual tokens          visual tokens
memory prompts         memory prompts
=====================  =========================================================

Padding tokens are blocked in both directions. v1 adds per-object blocks: spatial queries of object k
see only object k's queries, visual tokens and memory prompts; visual tokens and memory prompts see only
their own object's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor


class QueryGroup(Enum):
    """The groups of entries on the decoder's query axis (official ``AttentionDataStruct`` variable names).

    Definition order is the self-attention concatenation order (SEEM-REFERENCE.md §1.5, item 6). To add a
    group: a member here, its rows in :data:`_ALLOWED` (and :data:`CROSS_ATTENTION_GROUPS` if it reads the
    image, :data:`_MASKED_GROUPS` if it can hold padding), and one ``DecoderQueries.add`` call in
    :meth:`seem.modeling.decoder.SeemDecoder.assemble_queries`.
    """

    OBJECT = "queries_object"  # generic object queries (panoptic / instance / semantic)
    GROUNDING = "queries_grounding"  # copies of the object queries that answer the text prompt
    SPATIAL = "queries_spatial"  # copies of the object queries that answer the visual prompt
    GROUNDING_TOKENS = "tokens_grounding"  # text prompt tokens
    SPATIAL_TOKENS = "tokens_spatial"  # visual prompt tokens (re-sampled from each layer's feature level)
    SPATIAL_MEMORY = "memories_spatial"  # memory prompts: read the previous round's mask

    # members are singletons: hash by identity, in C (Enum's own __hash__ is a Python call per dict lookup,
    # thousands per prompt round)
    __hash__ = object.__hash__


# Self-attention groups in the official concatenation order.
GROUPS: tuple[QueryGroup, ...] = tuple(QueryGroup)
# Cross-attention groups (prompt tokens never cross-attend to the image), in the official order.
CROSS_ATTENTION_GROUPS = (QueryGroup.OBJECT, QueryGroup.GROUNDING, QueryGroup.SPATIAL, QueryGroup.SPATIAL_MEMORY)
_ALLOWED = {
    QueryGroup.OBJECT: (QueryGroup.OBJECT,),
    QueryGroup.GROUNDING: (QueryGroup.GROUNDING, QueryGroup.GROUNDING_TOKENS),
    QueryGroup.SPATIAL: (QueryGroup.SPATIAL, QueryGroup.SPATIAL_TOKENS, QueryGroup.SPATIAL_MEMORY),
    QueryGroup.GROUNDING_TOKENS: (QueryGroup.GROUNDING, QueryGroup.GROUNDING_TOKENS),
    QueryGroup.SPATIAL_TOKENS: (QueryGroup.SPATIAL_TOKENS,),
    QueryGroup.SPATIAL_MEMORY: (QueryGroup.SPATIAL_MEMORY,),
}
_MASKED_GROUPS = (QueryGroup.SPATIAL_TOKENS, QueryGroup.GROUNDING_TOKENS)  # groups that may contain padding
# Paper §3.1: "the learnable queries can freely interact with all prompts at inference time". The official v1
# table keeps text and visual prompts apart; ``joint_prompts`` lets each prompted query group also read the
# other prompt type (an inference-time option, never trained).
_JOINT_EXTRA = {QueryGroup.SPATIAL: (QueryGroup.GROUNDING_TOKENS,), QueryGroup.GROUNDING: (QueryGroup.SPATIAL_TOKENS,)}


@dataclass(frozen=True)
class QueryLayout:
    """Sizes of each group (0 = absent) and, for the prompt groups, which object each entry belongs to.

    Attributes:
        sizes: group -> number of entries (absent or 0 = the group is not in the pass).
        spatial_query_object: ``(Ns,)`` int64, the prompted object of each spatial query.
        spatial_token_object: ``(B, Ts)`` int64, the object of each visual token; padding = -2.
        memory_object: ``(M,)`` int64, the object each memory prompt is assigned to.
        padding: group -> ``(B, T)`` bool, True = padding token (for the groups in ``_MASKED_GROUPS``).
    """

    sizes: dict[QueryGroup, int]
    spatial_query_object: Tensor | None = None
    spatial_token_object: Tensor | None = None
    memory_object: Tensor | None = None
    padding: dict[QueryGroup, Tensor] | None = None

    def ranges(self, groups: tuple[QueryGroup, ...] = GROUPS) -> dict[QueryGroup, tuple[int, int]]:
        """Start/end index of each present group when ``groups`` are concatenated in order."""
        out, start = {}, 0
        for name in groups:
            n = self.sizes.get(name, 0)
            if n:
                out[name] = (start, start + n)
                start += n
        return out


def build_self_attention_mask(
    layout: QueryLayout, batch_size: int, per_object_blocks: bool = True, joint_prompts: bool = False
) -> Tensor:
    """Self-attention mask over the concatenation of the present groups, in :data:`GROUPS` order.

    Args:
        layout: group sizes and object assignments.
        batch_size: B.
        per_object_blocks: v1's per-object constraints (False reproduces v0).
        joint_prompts: spatial queries also attend to text tokens and grounding queries to visual tokens
            (text + visual composition in one query; off = the official v1 table).

    Returns:
        ``(B, N, N)`` bool, ``True`` = row may NOT attend to column. Repeat per head before use.
    """
    ranges = layout.ranges()
    total = max((end for _, end in ranges.values()), default=0)
    mask = torch.ones(batch_size, total, total, dtype=torch.bool)
    padding = layout.padding or {}

    def block(a: QueryGroup, b: QueryGroup) -> Tensor:
        (a0, a1), (b0, b1) = ranges[a], ranges[b]
        return mask[:, a0:a1, b0:b1]

    table = {g: _ALLOWED[g] + (_JOINT_EXTRA.get(g, ()) if joint_prompts else ()) for g in GROUPS}
    for row, cols in table.items():
        for col in cols:
            if row in ranges and col in ranges:
                block(row, col).fill_(False)

    # padding: blocked as a row and as a column, within the group and towards its partners
    for name in _MASKED_GROUPS:
        pad = padding.get(name)
        if name not in ranges or pad is None:
            continue
        pad = pad.to(torch.bool).expand(batch_size, -1).cpu()
        for other in GROUPS:
            if other not in ranges:
                continue
            if other in table[name]:
                block(name, other)[pad] = True  # padded rows
            if name in table[other]:
                block(other, name).transpose(1, 2)[pad] = True  # padded columns

    if per_object_blocks and QueryGroup.SPATIAL in ranges and QueryGroup.SPATIAL_TOKENS in ranges:
        # a layout with spatial queries and visual tokens carries their objects (DecoderQueries.self_attention_mask)
        assert layout.spatial_query_object is not None and layout.spatial_token_object is not None
        q_obj = layout.spatial_query_object.cpu()
        t_obj = layout.spatial_token_object.cpu()
        block(QueryGroup.SPATIAL, QueryGroup.SPATIAL)[:] = q_obj[:, None] != q_obj[None, :]
        block(QueryGroup.SPATIAL, QueryGroup.SPATIAL_TOKENS)[:] = q_obj[None, :, None] != t_obj[:, None, :]
        block(QueryGroup.SPATIAL_TOKENS, QueryGroup.SPATIAL_TOKENS)[:] = t_obj[:, :, None] != t_obj[:, None, :]
    if per_object_blocks and QueryGroup.SPATIAL_MEMORY in ranges and QueryGroup.SPATIAL in ranges:
        # as above: the layout of a pass with memory prompts carries their objects
        assert layout.spatial_query_object is not None and layout.memory_object is not None
        q_obj = layout.spatial_query_object.cpu()
        m_obj = layout.memory_object.cpu()
        block(QueryGroup.SPATIAL, QueryGroup.SPATIAL_MEMORY)[:] = q_obj[:, None] != m_obj[None, :]
        block(QueryGroup.SPATIAL_MEMORY, QueryGroup.SPATIAL_MEMORY)[:] = m_obj[:, None] != m_obj[None, :]
    return mask
