"""The visual sampler's draws: balanced, sorted, bounded; recorded draws replay exactly."""

from __future__ import annotations

import pytest
import torch

from seem.modeling.visual_sampler import RandomSampler, RecordedSampler, mean_prompt_features, point_sample


def test_all_pixels_kept_below_max_len_in_row_major_order():
    masks = torch.zeros(2, 8, 10, dtype=torch.bool)
    masks[0, 1, 2] = masks[1, 3, 4] = masks[0, 5, 6] = True
    pts = RandomSampler(0).sample_points(masks, 512)
    expected = torch.tensor([[0, 0, 1], [1 / 8, 5 / 8, 3 / 8], [2 / 10, 6 / 10, 4 / 10]])
    assert torch.allclose(pts, expected)


def test_subsampling_is_balanced_between_objects_sorted_and_seeded():
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, :60, :60] = True  # 3600 pixels
    masks[1, 62:, 62:] = True  # 4 pixels
    pts = RandomSampler(0).sample_points(masks, 100)
    assert pts.shape == (3, 100)
    obj = pts[0].long()
    assert int((obj == 1).sum()) == 4  # the small object keeps (almost surely) all of its pixels
    flat = obj * 64 * 64 + (pts[1] * 64).round().long() * 64 + (pts[2] * 64).round().long()
    assert torch.equal(flat, flat.sort().values)
    assert torch.equal(pts, RandomSampler(0).sample_points(masks, 100))
    assert not torch.equal(pts, RandomSampler(1).sample_points(masks, 100))


@pytest.mark.parametrize("sizes", [(900, 900), (900, 100), (2500, 400, 36)])
def test_subsampling_gives_each_object_the_share_of_successive_balanced_draws(sizes):
    """The law of torch.multinomial without replacement with every object's pixels weighted 1 / its count (the
    reference draws below): each object's mean share of the samples, and no pixel twice."""
    masks = torch.zeros(len(sizes), 60, 60, dtype=torch.bool)
    for k, n in enumerate(sizes):
        masks[k].view(-1)[torch.randperm(3600, generator=torch.Generator().manual_seed(k))[:n]] = True
    sampler, gen = RandomSampler(0), torch.Generator().manual_seed(0)
    probs = torch.cat([torch.full((n,), 1.0 / n) for n in sizes])
    ours, reference = torch.zeros(len(sizes)), torch.zeros(len(sizes))
    for _ in range(300):
        pts = sampler.sample_points(masks, 200)
        assert pts.shape == (3, 200) and len(set(map(tuple, pts.t().tolist()))) == 200
        ours += torch.bincount(pts[0].long(), minlength=len(sizes)) / 300
        owner = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        reference += torch.bincount(owner[torch.multinomial(probs, 200, generator=gen)], minlength=len(sizes)) / 300
    assert torch.allclose(ours, reference, atol=1.5), (ours, reference)


def test_recorded_sampler_replays_and_complains_when_exhausted():
    rec = RecordedSampler(points=[torch.zeros(3, 2)], query_indices=[torch.tensor([4, 1, 1])])
    assert rec.sample_points(torch.zeros(1, 4, 4, dtype=torch.bool), 512).shape == (3, 2)
    assert rec.sample_query_indices(10, 3).tolist() == [4, 1, 1]
    with pytest.raises(RuntimeError, match="no recorded draw"):
        rec.sample_points(torch.zeros(1, 4, 4, dtype=torch.bool), 512)


def test_point_sample_align_corners_and_mean_features():
    feats = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)
    # (y, x) = (0, 0) -> top-left value; (1, 1) -> bottom-right value (align_corners=True)
    out = point_sample(feats, torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.5, 0.0]]]))
    assert out.flatten().tolist() == [0.0, 11.0, 4.0]
    pts = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])  # obj 0: (0,0),(1,1); obj 1: (0,0)
    mean = mean_prompt_features(feats, pts, 3)
    assert mean[:, 0].tolist() == [5.5, 0.0, -1.0]  # object 2 has no pixel -> -1
