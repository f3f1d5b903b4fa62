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

import torch
from torch import Tensor

# Self-attention groups in the official concatenation order.
GROUPS = ("queries_object", "queries_grounding", "queries_spatial", "tokens_grounding", "tokens_spatial", "memories_spatial")
# Cross-attention groups (prompt tokens never cross-attend to the image).
CROSS_ATTENTION_GROUPS = ("queries_object", "queries_grounding", "queries_spatial", "memories_spatial")
_ALLOWED = {
    "queries_object": ("queries_object",),
    "queries_grounding": ("queries_grounding", "tokens_grounding"),
    "queries_spatial": ("queries_spatial", "tokens_spatial", "memories_spatial"),
    "tokens_grounding": ("queries_grounding", "tokens_grounding"),
    "tokens_spatial": ("tokens_spatial",),
    "memories_spatial": ("memories_spatial",),
}
_MASKED_GROUPS = ("tokens_spatial", "tokens_grounding")  # groups that may contain padding
# Paper §3.1: "the learnable queries can freely interact with all prompts at inference time". The official v1
# table keeps text and visual prompts apart; ``joint_prompts`` lets each prompted query group also read the
# other prompt type (an inference-time option, never trained).
_JOINT_EXTRA = {"queries_spatial": ("tokens_grounding",), "queries_grounding": ("tokens_spatial",)}


@dataclass(frozen=True)
class QueryLayout:
    """Sizes of each group (0 = absent) and, for the prompt groups, which object each entry belongs to.

    Attributes:
        sizes: group name -> number of entries, for every name in :data:`GROUPS`.
        spatial_query_object: ``(Ns,)`` int64, the prompted object of each spatial query.
        spatial_token_object: ``(B, Ts)`` int64, the object of each visual token; padding = -2.
        memory_object: ``(M,)`` int64, the object each memory prompt is assigned to.
        padding: group name -> ``(B, T)`` bool, True = padding token (for ``tokens_*`` groups).
    """

    sizes: dict[str, int]
    spatial_query_object: Tensor | None = None
    spatial_token_object: Tensor | None = None
    memory_object: Tensor | None = None
    padding: dict[str, Tensor] | None = None

    def ranges(self, groups: tuple[str, ...] = GROUPS) -> dict[str, tuple[int, int]]:
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

    def block(a: str, b: str) -> Tensor:
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

    if per_object_blocks and "queries_spatial" in ranges and "tokens_spatial" in ranges:
        q_obj = layout.spatial_query_object.cpu()
        t_obj = layout.spatial_token_object.cpu()
        block("queries_spatial", "queries_spatial")[:] = q_obj[:, None] != q_obj[None, :]
        block("queries_spatial", "tokens_spatial")[:] = q_obj[None, :, None] != t_obj[:, None, :]
        block("tokens_spatial", "tokens_spatial")[:] = t_obj[:, :, None] != t_obj[:, None, :]
    if per_object_blocks and "memories_spatial" in ranges and "queries_spatial" in ranges:
        q_obj = layout.spatial_query_object.cpu()
        m_obj = layout.memory_object.cpu()
        block("queries_spatial", "memories_spatial")[:] = q_obj[:, None] != m_obj[None, :]
        block("memories_spatial", "memories_spatial")[:] = m_obj[:, None] != m_obj[None, :]
    return mask
