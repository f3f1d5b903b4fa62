"""The self-attention group mask (pure function) on hand-built layouts: the v1 table, padding, per-object blocks."""

from __future__ import annotations

import torch

from seem.modeling.attention_mask import QueryGroup, QueryLayout, build_self_attention_mask


def _layout(**kw):
    sizes = {QueryGroup.OBJECT: 2, QueryGroup.GROUNDING: 2, QueryGroup.SPATIAL: 4, QueryGroup.GROUNDING_TOKENS: 2,
             QueryGroup.SPATIAL_TOKENS: 4, QueryGroup.SPATIAL_MEMORY: 2}
    return QueryLayout(
        sizes=sizes,
        spatial_query_object=torch.tensor([0, 0, 1, 1]),
        spatial_token_object=torch.tensor([[0, 1, 1, -2]]),
        memory_object=torch.tensor([1, 0]),
        padding={QueryGroup.GROUNDING_TOKENS: torch.tensor([[False, True]]), QueryGroup.SPATIAL_TOKENS: torch.tensor([[False, False, False, True]])},
        **kw,
    )


def test_group_table_padding_and_per_object_blocks():
    layout = _layout()
    r = layout.ranges()
    assert r == {QueryGroup.OBJECT: (0, 2), QueryGroup.GROUNDING: (2, 4), QueryGroup.SPATIAL: (4, 8),
                 QueryGroup.GROUNDING_TOKENS: (8, 10), QueryGroup.SPATIAL_TOKENS: (10, 14), QueryGroup.SPATIAL_MEMORY: (14, 16)}
    m = build_self_attention_mask(layout, batch_size=1)[0]
    allowed = ~m
    # object queries see only object queries
    assert allowed[0:2, 0:2].all() and not allowed[0:2, 2:].any()
    # grounding queries see grounding queries and the non-padded text token only
    assert allowed[2, 2:4].all() and allowed[2, 8] and not allowed[2, 9]
    assert not allowed[2, 0:2].any() and not allowed[2, 4:8].any() and not allowed[2, 10:].any()
    # the padded text token sees nothing; the real one sees grounding queries + itself
    assert not allowed[9].any()
    assert allowed[8, 2:4].all() and allowed[8, 8] and not allowed[8, 9]
    # spatial queries of object 0 (rows 4, 5) see object 0's queries, tokens and memory prompts only
    assert allowed[4, 4:6].all() and not allowed[4, 6:8].any()
    assert allowed[4, 10] and not allowed[4, 11:14].any()
    assert allowed[4, 15] and not allowed[4, 14]
    # object 1's spatial queries (rows 6, 7)
    assert allowed[6, 6:8].all() and allowed[6, 11:13].all() and not allowed[6, 10] and allowed[6, 14]
    # visual tokens see tokens of their object only; memory prompts their object's memory only
    assert allowed[11, 11:13].all() and not allowed[11, 10] and not allowed[11, 4:8].any()
    assert allowed[14, 14] and not allowed[14, 15] and not allowed[14, 4:8].any()


def test_without_per_object_blocks_v0():
    m = build_self_attention_mask(_layout(), batch_size=2, per_object_blocks=False)
    assert m.shape == (2, 16, 16)
    allowed = ~m[0]
    assert allowed[4, 4:8].all() and allowed[4, 10:13].all() and not allowed[4, 13]  # padding still blocked
    assert allowed[4, 14:16].all()


def test_absent_groups_shrink_the_mask():
    layout = QueryLayout(sizes={QueryGroup.OBJECT: 3})
    m = build_self_attention_mask(layout, batch_size=1)
    assert m.shape == (1, 3, 3) and not m.any()


def test_joint_prompts_let_each_query_group_read_the_other_prompt_type():
    official = ~build_self_attention_mask(_layout(), batch_size=1)[0]
    joint = ~build_self_attention_mask(_layout(), batch_size=1, joint_prompts=True)[0]
    assert not official[4, 8] and joint[4, 8] and not joint[4, 9]  # spatial query -> real text token, not padding
    assert not official[2, 10] and joint[2, 10:13].all() and not joint[2, 13]  # grounding query -> visual tokens
    assert torch.equal(official[0:2], joint[0:2])  # object queries unchanged
