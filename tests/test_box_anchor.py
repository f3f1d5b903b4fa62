"""seem.box_anchor: clicks after a box (InferenceConfig.box_anchor): the box becomes a bound and an anchor click."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from seem.box_anchor import anchored_prompts, applies
from seem.errors import PromptError
from seem.prompts import Prompts
from seem.transforms import ImageFrame

FRAME = ImageFrame((200, 300), (200, 300), (224, 320))  # no resize: cells of 4 x 4 pixels, 50 x 75 valid


def _memory(*rects: tuple[int, int, int, int]) -> torch.Tensor:
    """``(K, 56, 80)`` logits, +3 on each object's cell rectangle (r0, r1, c0, c1), -3 elsewhere."""
    m = torch.full((len(rects), 56, 80), -3.0)
    for k, (r0, r1, c0, c1) in enumerate(rects):
        m[k, r0:r1, c0:c1] = 3.0
    return m


def test_the_anchor_is_the_memory_masks_deepest_cell_inside_the_box_and_comes_first():
    prompts = Prompts(boxes=[[40, 40, 200, 160]], points=[[60, 50]], point_labels=[0])
    out = anchored_prompts(prompts, _memory((12, 31, 17, 36)), FRAME)  # rows 12..30, cols 17..35
    assert out.boxes is None and out.points.shape == (1, 2, 2) and out.point_labels.tolist() == [[1, 0]]
    x, y = out.points[0, 0]
    assert (x, y) == (4 * 26 + 2.5, 4 * 21 + 2.5)  # the square's centre cell (21, 26): the centre of its pixel 4 j + 2
    assert np.array_equal(out.points[0, 1], [60, 50])


def test_the_anchor_avoids_negative_clicks_and_stays_in_the_box():
    # a negative click on the centre cell moves the anchor off it and its 8 neighbours
    prompts = Prompts(boxes=[[40, 40, 200, 160]], points=[[4 * 26 + 2, 4 * 21 + 2]], point_labels=[0])
    x, y = anchored_prompts(prompts, _memory((12, 31, 17, 36)), FRAME).points[0, 0]
    assert max(abs(x // 4 - 26), abs(y // 4 - 21)) >= 2
    # the memory mask lies outside the box: the anchor is the box's own centre
    prompts = Prompts(boxes=[[200, 100, 280, 180]], points=[[10, 10]], point_labels=[0])
    x, y = anchored_prompts(prompts, _memory((2, 10, 2, 10)), FRAME).points[0, 0]
    assert 200 <= x <= 280 and 100 <= y <= 180 and abs(x - 240) <= 4 and abs(y - 140) <= 4


def test_every_object_gets_its_own_anchor_and_points_stay_inside_the_image():
    frame = ImageFrame((101, 151), (161, 241), (192, 256))  # 1.6x, the last cell half outside the image
    prompts = Prompts(boxes=[[0, 0, 151, 101], [10, 10, 40, 40]], points=[[[5, 5]], [[20, 20]]], point_labels=[[0], [1]])
    memory = torch.full((2, 48, 64), -1.0)
    memory[0, 30:41, 50:61] = 2.0  # reaches the last valid row / column (40, 60)
    memory[1, 4:9, 4:9] = 2.0
    out = anchored_prompts(prompts, memory, frame)
    assert out.points.shape == (2, 2, 2) and out.point_labels[:, 0].tolist() == [1, 1]
    assert bool((out.points[..., 0] <= 151).all() and (out.points[..., 1] <= 101).all())
    sx, sy = frame.scale_xy  # about 1.6
    assert np.allclose(out.points[1, 0], [(4 * 6 + 2.5) / sx, (4 * 6 + 2.5) / sy])


def test_negative_clicks_filling_a_small_box_keep_the_anchor_off_them_or_leave_the_round_as_given():
    # a 3 x 3-cell box with a negative click on its centre cell: the anchor goes to another box cell, and its
    # 3 x 3 square keeps positive pixels (the region masks of the anchored round are valid)
    prompts = Prompts(boxes=[[100, 100, 112, 112]], points=[[106, 106]], point_labels=[0])
    out = anchored_prompts(prompts, _memory((25, 28, 25, 28)), FRAME)
    (x, y), (nx, ny) = out.points[0]
    assert (int(x) // 4, int(y) // 4) != (int(nx) // 4, int(ny) // 4) and 100 <= x <= 112 and 100 <= y <= 112
    assert bool(out.to_regions(FRAME).positive.any())
    # every cell of a one-cell box holds a negative click: no anchor, the round is decoded as given
    one = Prompts(boxes=[[101, 101, 103, 103]], points=[[102, 102]], point_labels=[0])
    assert anchored_prompts(one, _memory((25, 26, 25, 26)), FRAME) is None


def test_applies_only_to_refinement_rounds_of_boxes_and_clicks():
    box, clicks = dict(boxes=[[0, 0, 10, 10]]), dict(points=[[5, 5]], point_labels=[0])
    memory = torch.zeros(1, 56, 80)
    assert applies(Prompts(**box, **clicks), memory)
    assert not applies(Prompts(**box, **clicks), None)  # first round: the box is sampled
    assert not applies(Prompts(**box), memory) and not applies(Prompts(**clicks | {"point_labels": [1]}), memory)
    assert not applies(Prompts(**box, **clicks, text="a cat"), memory)
    assert not applies(Prompts(**box, **clicks, scribbles=[np.ones((20, 20), bool)]), memory)


def test_a_memory_of_the_wrong_size_is_a_prompt_error():
    prompts = Prompts(boxes=[[0, 0, 10, 10]], points=[[5, 5]], point_labels=[0])
    with pytest.raises(PromptError, match="memory"):
        anchored_prompts(prompts, torch.zeros(1, 20, 20), FRAME)
    flipped = _memory((12, 31, 17, 36)).numpy()[:, ::-1]  # numpy views with negative strides are copied
    assert anchored_prompts(Prompts(boxes=[[40, 40, 200, 160]], points=[[60, 50]], point_labels=[0]), flipped, FRAME)
    with pytest.raises(ValueError, match="boxes and clicks"):
        anchored_prompts(Prompts(points=[[5, 5]]), torch.zeros(1, 56, 80), FRAME)


def test_bundled_box_then_clicks_decodes_the_anchored_clicks_and_stays_in_the_box():
    from test_candidates import _bundled

    p = _bundled()
    keep = p.model.config
    assert keep.inference.box_anchor
    box = [377, 64, 500, 239]  # the man on the right
    first = p.predict(boxes=[box])
    prompts = Prompts(boxes=[box], points=[[440, 120], [390, 200]], point_labels=[1, 0])
    anchored = anchored_prompts(prompts, first, p.frame)
    got = p.predict(prompts, memory=first)
    try:  # the same round sent as the anchored clicks alone, without the box's bound
        p.model.config = dataclasses.replace(keep, inference=dataclasses.replace(keep.inference, box_anchor=False))
        clicks = p.predict(anchored, memory=first, candidate_scorer=False)  # Eq. 5, as the anchored round picks
        sampled = p.predict(prompts, memory=first)  # the box sampled with the clicks (official)
    finally:
        p.model.config = keep
    scale = 4 * p.frame.original_size[1] / p.frame.resized_size[1]
    c = int(np.ceil(scale))
    grown = np.zeros_like(got.masks[0])
    grown[max(box[1] - c, 0): box[3] + c, box[0] - c: box[2] + c] = True
    assert got.masks[0].any() and not (got.masks[0] & ~grown).any()
    assert np.array_equal(got.masks[0], clicks.masks[0] & grown) or (got.masks[0] ^ (clicks.masks[0] & grown)).sum() < 50
    assert not np.array_equal(got.masks[0], sampled.masks[0])
