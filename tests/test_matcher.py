"""Matching: Mask2Former Hungarian matching and SEEM's separate visual / text matching (hand-made cases)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("scipy")

from seem.train.matcher import match_generic, match_grounding, match_spatial, point_mask_costs

H = W = 16  # ground truth at 4x the 4x4 mask logits


def _gt(region: str) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    if region == "left":
        m[:, : W // 2] = True
    elif region == "right":
        m[:, W // 2 :] = True
    return m


def _logits(region: str) -> torch.Tensor:
    """4x4 logits: +10 inside ``region``, -10 elsewhere (``empty`` = nothing)."""
    return torch.where(_gt(region)[::4, ::4], 10.0, -10.0)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_point_mask_costs_match_hand_values():
    # perfect mask -> dice ~0; inverse mask -> dice ~1; BCE up to 10 for the inverse
    pred = torch.stack([_logits("left"), _logits("right")])
    bce, dice = point_mask_costs(pred, _gt("left")[None], 400, _gen())
    assert bce.shape == dice.shape == (2, 1)
    assert dice[0, 0] < 0.05 and dice[1, 0] > 0.9
    assert bce[0, 0] < 0.5 and 6.0 < bce[1, 0] < 10.5  # boundary band + zero padding soften it


def test_match_generic_obvious_masks():
    masks = torch.stack([_logits("right"), _logits("empty"), _logits("left")])  # q0 right, q1 nothing, q2 left
    class_logits = torch.zeros(3, 3)  # 2 classes + no-object, uninformative
    gt_masks = torch.stack([_gt("left"), _gt("right")])
    q, g = match_generic(class_logits, masks, torch.tensor([0, 1]), gt_masks, num_points=256, generator=_gen())
    assert g.tolist() == [0, 1]
    assert q.tolist() == [2, 0]


def test_match_generic_class_cost_decides_when_masks_tie():
    masks = torch.stack([_logits("left"), _logits("left"), _logits("empty")])
    # q0 says class 1, q1 says class 0, q2 says no-object; both GTs cover the same region
    class_logits = torch.tensor([[0.0, 8.0, 0.0], [8.0, 0.0, 0.0], [0.0, 0.0, 8.0]])
    gt_masks = torch.stack([_gt("left"), _gt("left")])
    q, g = match_generic(class_logits, masks, torch.tensor([0, 1]), gt_masks, num_points=256, generator=_gen())
    assert g.tolist() == [0, 1]
    assert q.tolist() == [1, 0]


def test_match_generic_without_ground_truth_and_determinism():
    masks = torch.randn(3, 4, 4, generator=_gen(1))
    q, g = match_generic(torch.zeros(3, 3), masks, torch.zeros(0, dtype=torch.long), torch.zeros(0, H, W, dtype=torch.bool))
    assert q.numel() == 0 and g.numel() == 0
    gt = torch.rand(2, H, W, generator=_gen(2)) > 0.5
    a = match_generic(torch.zeros(3, 3), masks, torch.tensor([0, 1]), gt, num_points=64, generator=_gen(5))
    b = match_generic(torch.zeros(3, 3), masks, torch.tensor([0, 1]), gt, num_points=64, generator=_gen(5))
    assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()


def test_match_spatial_respects_object_groups():
    # 2 objects, 2 spatial queries each: queries 0,1 -> object 0; queries 2,3 -> object 1
    query_object = torch.tensor([0, 0, 1, 1])
    positive_mean = torch.eye(2, 4)  # object 0 = e0, object 1 = e1
    # query 2 (object 1) has object 0's perfect mask AND the strongest embedding match to object 0
    mask_embed = torch.tensor([[1.0, 0, 0, 0], [2.0, 0, 0, 0], [9.0, 0, 0, 0], [0, 3.0, 0, 0]])
    masks = torch.stack([_logits("empty"), _logits("empty"), _logits("left"), _logits("right")])
    gt = torch.stack([_gt("left"), _gt("right")])
    idx = match_spatial(mask_embed, positive_mean, query_object, masks, gt, num_points=256, generator=_gen())
    assert idx.tolist() == [1, 3]  # object 0 takes its own best-embedding query, never query 2


def test_match_spatial_embedding_decides_within_group_and_validates():
    query_object = torch.tensor([0, 0])
    positive_mean = torch.tensor([[1.0, 0.0]])
    mask_embed = torch.tensor([[3.0, 0.0], [1.0, 0.0]])  # softmax 0.88 vs 0.12 for query 0
    masks = torch.stack([_logits("left"), _logits("left")])
    idx = match_spatial(mask_embed, positive_mean, query_object, masks, _gt("left")[None], num_points=64, generator=_gen())
    assert idx.tolist() == [0]
    with pytest.raises(ValueError, match="at least one spatial query"):
        match_spatial(mask_embed, torch.eye(2), query_object, masks, torch.stack([_gt("left")] * 2), num_points=8)


def test_match_grounding_uses_class_embedding_similarity_when_masks_tie():
    masks = torch.stack([_logits("left")] * 3)
    class_embed = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    sentences = torch.tensor([[2.0, 0.1, 0.0], [0.0, 3.0, 0.0]])  # s0 ~ q2, s1 ~ q0 (norms do not matter)
    gt = torch.stack([_gt("left"), _gt("left")])
    q, s = match_grounding(class_embed, sentences, torch.tensor(10.0), masks, gt, num_points=64, generator=_gen())
    assert s.tolist() == [0, 1]
    assert q.tolist() == [2, 0]


def test_match_grounding_masks_decide_when_embeddings_tie():
    masks = torch.stack([_logits("right"), _logits("left")])
    class_embed = torch.ones(2, 3)
    q, s = match_grounding(class_embed, torch.ones(1, 3), torch.tensor(1.0), masks, _gt("left")[None],
                           num_points=128, generator=_gen())
    assert q.tolist() == [1] and s.tolist() == [0]
