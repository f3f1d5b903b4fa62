"""Crop layers of everything mode (``EverythingConfig.crop_n_layers``, :mod:`seem.crops`): the crop geometry,
the edge filter, masks mapped back into the whole image, ``crop_n_layers=0`` as before, field checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from seem import SeemPredictor, from_pretrained
from seem.automatic import EverythingConfig, everything_masks
from seem.crops import crop_boxes, near_crop_edge, uncrop_masks, uncrop_points
from seem.errors import ImageError, PromptError

SIZE = (240, 320)  # (H, W) of the synthetic image
DISCS = [(60, 55), (255, 60), (70, 185), (250, 180), (160, 120)]  # (x, y) centres, radius 18


# ---------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("size", [(375, 500), (500, 375), (240, 320), (101, 99)])
@pytest.mark.parametrize("ratio", [512 / 1500, 0.0, 0.5])
def test_crop_boxes_cover_the_image_with_the_stated_overlap(size, ratio):
    h, w = size
    boxes, layers = crop_boxes(size, 2, ratio)
    assert boxes.dtype == np.int64 and layers.tolist() == [0] + [1] * 4 + [2] * 16
    assert boxes[0].tolist() == [0, 0, w, h]
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
    assert np.all(boxes[:, 2:] > boxes[:, :2])
    for layer in (1, 2):
        n = 2 ** layer
        overlap = int(ratio * min(h, w) * 2 / n)
        of_layer = boxes[layers == layer]
        covered = np.zeros(size, dtype=np.int64)
        for x0, y0, x1, y1 in of_layer:
            covered[y0:y1, x0:x1] += 1
        assert covered.min() >= 1  # the crops of each layer cover the image
        xs, ys = sorted(set(of_layer[:, 0].tolist())), sorted(set(of_layer[:, 1].tolist()))
        assert len(xs) == len(ys) == n and xs[0] == ys[0] == 0
        widths = {int(b[2] - b[0]) for b in of_layer if b[2] < w}
        assert len(widths) <= 1  # one crop size per layer (the last column may be clipped)
        for axis, starts in ((0, xs), (1, ys)):
            ends = sorted({int(b[2 + axis]) for b in of_layer})
            for end, nxt in zip(ends[:-1], starts[1:]):
                assert end - nxt == overlap  # neighbours overlap by the stated number of pixels


def test_crop_boxes_without_layers_and_bad_arguments():
    boxes, layers = crop_boxes((7, 9), 0, 0.3)
    assert boxes.tolist() == [[0, 0, 9, 7]] and layers.tolist() == [0]
    for bad in (((0, 9), 1, 0.3), ((7, 9), -1, 0.3), ((7, 9), 1, 1.0), ((7, 9), 1, -0.1)):
        with pytest.raises(ValueError):
            crop_boxes(*bad)


def test_near_crop_edge_drops_only_masks_cut_by_an_inner_crop_edge():
    crop = np.array([100, 0, 300, 150])  # the image is 200 x 300: right and top edges are image edges
    boxes = torch.tensor([[0.0, 0, 10, 10],      # at the crop's left edge (x = 100 in the image): inner
                          [50.0, 50, 80, 80],    # inside
                          [150.0, 0, 200, 40],   # at the crop's top and right edges, both image edges
                          [60.0, 100, 90, 145]])  # near the crop's bottom edge (y = 150 in the image): inner
    assert near_crop_edge(boxes, crop, (200, 300)).tolist() == [True, False, False, True]
    assert near_crop_edge(boxes, crop, (200, 300), tolerance=4).tolist() == [True, False, False, False]


def test_uncrop_masks_and_points():
    masks = torch.zeros(2, 3, 4, dtype=torch.bool)
    masks[0, 1, 2] = True
    masks[1] = True
    full = uncrop_masks(masks, np.array([5, 2, 9, 5]), (8, 10))
    assert full.shape == (2, 8, 10)
    assert torch.nonzero(full[0]).tolist() == [[3, 7]]  # (row 1 + 2, column 2 + 5)
    assert int(full[1].sum()) == 12 and bool(full[1, 2:5, 5:9].all())
    with pytest.raises(ValueError):
        uncrop_masks(masks, np.array([5, 2, 10, 5]), (8, 10))
    with pytest.raises(ValueError):
        uncrop_masks(masks, np.array([7, 2, 11, 5]), (8, 10))
    pts = uncrop_points(np.array([[1.5, 2.0], [np.nan, np.nan]]), np.array([5, 2, 9, 5]))
    assert pts[0].tolist() == [6.5, 4.0] and np.isnan(pts[1]).all()


# ---------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("field, value", [("crop_n_layers", -1), ("crop_n_layers", 4), ("crop_overlap_ratio", 1.0),
                                          ("crop_overlap_ratio", -0.01), ("crop_n_points_downscale_factor", 0)])
def test_crop_fields_out_of_range_are_named(field, value):
    with pytest.raises(PromptError, match=field):
        EverythingConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("crop_n_layers", 1.0), ("crop_n_layers", True),
                                          ("crop_overlap_ratio", "0.3"), ("crop_n_points_downscale_factor", 2.5)])
def test_crop_fields_of_the_wrong_type_are_named(field, value):
    with pytest.raises(TypeError, match=field):
        EverythingConfig(**{field: value})


def test_crop_defaults_are_sams():
    c = EverythingConfig()
    assert (c.crop_n_layers, c.crop_overlap_ratio, c.crop_n_points_downscale_factor) == (0, 512 / 1500, 1)
    assert EverythingConfig(crop_n_layers=np.int64(2)).crop_n_layers == 2


# ---------------------------------------------------------------------------------------------- on the model
def _discs() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE[0], :SIZE[1]]
    img = np.full((*SIZE, 3), 200, dtype=np.uint8)
    colors = [(220, 30, 30), (30, 160, 40), (30, 60, 220), (230, 200, 20), (150, 40, 170)]
    for (x, y), c in zip(DISCS, colors):
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 18 ** 2] = c
    return img


@pytest.fixture(scope="module")
def predictor():
    p = SeemPredictor(from_pretrained(), shorter_side=128, max_size=None, vocabulary_cache_dir=None)
    p.set_image(_discs())
    return p


LOOSE = EverythingConfig(points_per_side=4, points_per_batch=1, score_threshold=0.0, stability_threshold=0.0,
                         min_area=1, crop_n_layers=1)


@pytest.fixture(scope="module")
def cropped(predictor):
    return predictor.segment_everything(kind="everything", config=LOOSE)


def test_no_crop_layers_is_the_whole_image_only(predictor):
    """The crop fields do nothing at ``crop_n_layers=0``: the result of the defaults, every mask from the whole
    image (bit-identity with the code before crop layers was checked against main on the VOC photo)."""
    config = EverythingConfig(points_per_side=4)
    plain = predictor.segment_everything(kind="everything", config=config)
    other = dataclasses.replace(config, crop_overlap_ratio=0.6, crop_n_points_downscale_factor=3)
    again = predictor.segment_everything(kind="everything", config=other)
    assert len(plain) >= 1 and len(plain) == len(again)
    for name in ("masks", "scores", "stability_scores", "boxes", "label_ids", "points", "crop_boxes"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(again, name))
    assert plain.crop_boxes.tolist() == [[0, 0, SIZE[1], SIZE[0]]] * len(plain)


def test_crop_masks_land_at_their_place_in_the_whole_image(predictor, cropped):
    """A mask found in a crop is the crop's own prediction (the crop encoded as an image, the same click in the
    crop's frame) placed at the crop's offset, False outside it."""
    crops = crop_boxes(SIZE, 1, LOOSE.crop_overlap_ratio)[0].tolist()
    assert cropped.crop_boxes.shape == (len(cropped), 4)
    assert {tuple(b) for b in cropped.crop_boxes.tolist()} <= {tuple(b) for b in crops}
    from_crops = [i for i, b in enumerate(cropped.crop_boxes.tolist()) if b != crops[0]]
    assert from_crops
    for i in from_crops:
        x0, y0, x1, y1 = cropped.crop_boxes[i]
        outside = cropped.masks[i].copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any() and cropped.masks[i].any()
    points = [i for i in from_crops if cropped.sources[i] == "point"]
    assert points
    crop_predictor = SeemPredictor(predictor.model, shorter_side=128, max_size=None, vocabulary_cache_dir=None)
    for i in points[:2]:
        x0, y0, x1, y1 = cropped.crop_boxes[i]
        x, y = cropped.points[i]
        assert x0 <= x < x1 and y0 <= y < y1
        crop_predictor.set_image(np.ascontiguousarray(_discs()[y0:y1, x0:x1]))
        click = np.array([[x - x0, y - y0]])
        eq5 = crop_predictor.predict(points=click, click_fit=False, candidate_scorer=False, spatial_queries="sampled")
        held = eq5.masks[0][min(int(y - y0), y1 - y0 - 1), min(int(x - x0), x1 - x0 - 1)]
        alone = crop_predictor.predict(points=click) if held else eq5  # as the grid decodes it (point_decoding)
        np.testing.assert_array_equal(cropped.masks[i][y0:y1, x0:x1], alone.masks[0])


def test_crops_prompt_their_downscaled_grid_and_drop_inner_edge_masks(predictor, cropped):
    from seem.mask_ops import point_grid

    config = dataclasses.replace(LOOSE, crop_n_points_downscale_factor=2)
    r = predictor.segment_everything(kind="everything", config=config)
    crops = crop_boxes(SIZE, 1, LOOSE.crop_overlap_ratio)[0]
    for i in range(len(r)):
        box = r.crop_boxes[i]
        if r.sources[i] == "point" and box.tolist() != crops[0].tolist():
            grid = point_grid(2, (int(box[3] - box[1]), int(box[2] - box[0]))) + box[:2]  # 2 x 2 in a crop
            assert np.any(np.all(np.isclose(grid, r.points[i]), axis=1))
    for res in (r, cropped):
        for m, box in zip(res.masks, res.crop_boxes):
            ys, xs = np.nonzero(m)
            mask_box = torch.tensor([[xs.min() - box[0], ys.min() - box[1], xs.max() + 1 - box[0],
                                      ys.max() + 1 - box[1]]], dtype=torch.float32)
            assert not near_crop_edge(mask_box, box, SIZE).item()


def test_crop_candidates_share_the_byte_budget(predictor, cropped):
    per_mask = SIZE[0] * SIZE[1]
    small = dataclasses.replace(LOOSE, max_candidate_bytes=2 * per_mask)
    r = predictor.segment_everything(kind="everything", config=small)
    assert len(cropped) > 2 and 1 <= len(r) <= 2 and np.all(np.diff(r.scores) <= 0)


def test_crops_run_through_the_callback_and_need_the_pixels(predictor, cropped):
    steps = []

    def run(fn):
        steps.append(fn)
        with torch.inference_mode():
            fn()

    again = everything_masks(predictor, None, LOOSE, run=run)
    np.testing.assert_array_equal(again.masks, cropped.masks)
    assert len(steps) >= 1 + 4 * 2  # the whole image's queries, then each crop's encoding and queries at least
    view = predictor.with_image(predictor.frame, predictor.features)  # no pixels
    with pytest.raises(ImageError, match="pixels"):
        everything_masks(view, None, LOOSE)
    assert len(everything_masks(view, None, dataclasses.replace(LOOSE, crop_n_layers=0))) >= 1
