"""seem.click_geometry: where a round's clicks sit in each candidate mask (the candidate scorer's last 5 features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seem.click_geometry import click_geometry, clicks_to_cells
from seem.transforms import ImageFrame


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.where((xs - cx) ** 2 + (ys - cy) ** 2 <= r * r, 5.0, -5.0)


def test_a_click_at_a_discs_centre_is_deep_central_and_on_the_mask():
    logits = torch.stack([_disc(40, 40, 20, 20, 8), _disc(40, 40, 30, 30, 4)])  # the clicked disc, another one
    f = click_geometry(logits, (40, 40), torch.tensor([[[20.0, 20.0]]]), torch.tensor([[1]]), torch.zeros(2, dtype=torch.long))
    assert f.shape == (2, 5) and f.dtype == torch.float32
    r = np.sqrt(float((logits[0] > 0).sum()) / np.pi)
    d = np.hypot(*np.meshgrid(np.arange(40) - 20.0, np.arange(40) - 20.0))
    assert f[0, 0] == pytest.approx(d[d > 8].min() / r, abs=1e-4)  # the nearest outside cell (8, 1) away
    assert f[0, 1] == pytest.approx(0, abs=1e-5) and f[0, 4] == 1 and f[0, 2] == 0  # centred, on it, no negative
    assert f[0, 3] == pytest.approx(d[d <= 8].max() / r, abs=1e-4)  # the farthest inside cell
    # the other disc: the click is off it (negative depth: distance to its nearest cell), far from its centre
    r1 = np.sqrt(float((logits[1] > 0).sum()) / np.pi)
    d1 = np.hypot(*np.meshgrid(np.arange(40) - 30.0, np.arange(40) - 30.0))
    nearest = d[d1 <= 4].min()  # the click's distance to the other disc's nearest cell
    assert f[1, 0] == pytest.approx(-min(nearest / r1, 3), abs=1e-4) and f[1, 4] == 0 and f[1, 1] == 3  # capped


def test_negative_clicks_far_from_a_mask_score_high_and_inside_it_zero():
    logits = _disc(30, 30, 10, 10, 5)[None].repeat(2, 1, 1)
    clicks = torch.tensor([[[10.0, 10.0], [25.0, 10.0]], [[10.0, 10.0], [12.0, 10.0]]])  # 2 objects: 1 +, 1 -
    labels = torch.tensor([[1, 0], [1, 0]])
    f = click_geometry(logits, (30, 30), clicks, labels, torch.tensor([0, 1]))
    r = np.sqrt(float((logits[0] > 0).sum()) / np.pi)
    assert f[0, 2] == pytest.approx(10 / r, abs=0.05)  # nearest inside cell (15, 10): 10 cells from the negative click
    assert f[1, 2] == 0  # the negative click is on the mask


def test_no_clicks_empty_and_full_masks_give_finite_values():
    logits = torch.stack([torch.full((8, 8), -1.0), torch.full((8, 8), 1.0)])
    assert torch.equal(click_geometry(logits, (8, 8), None, None, torch.zeros(2, dtype=torch.long)), torch.zeros(2, 5))
    f = click_geometry(logits, (8, 8), torch.tensor([[[3.0, 3.0]]]), torch.tensor([[1]]), torch.zeros(2, dtype=torch.long))
    assert bool(torch.isfinite(f).all())
    assert f[0, 0] == 0 and f[0, 4] == 0 and f[1, 0] == 0 and f[1, 4] == 1  # nothing inside / nothing outside: 0


def test_padding_cells_are_not_read_and_objects_without_clicks_get_zeros():
    logits = _disc(20, 20, 5, 5, 3)[None].repeat(2, 1, 1)
    logits[:, :, 12:] = 9.0  # padding columns: ignored
    f = click_geometry(logits, (20, 12), torch.tensor([[[5.0, 5.0]]]), torch.tensor([[1]]), torch.tensor([0, 1]))
    g = click_geometry(logits[:1, :, :12], (20, 12), torch.tensor([[[5.0, 5.0]]]), torch.tensor([[1]]), torch.tensor([0]))
    assert torch.equal(f[0], g[0]) and torch.equal(f[1], torch.zeros(5))  # object 1 (a reference's) has no clicks


def test_clicks_to_cells_maps_original_pixels_to_cell_centres():
    frame = ImageFrame((100, 200), (160, 320), (160, 320))  # resized 1.6x
    cells = clicks_to_cells(np.array([[[2.5, 2.5], [100.0, 50.0]]]), frame)
    assert cells.shape == (1, 2, 2) and cells.dtype == torch.float32
    assert torch.allclose(cells[0, 0], torch.tensor([0.5, 0.5])) and torch.allclose(cells[0, 1], torch.tensor([39.5, 19.5]))


def test_many_clicks_are_read_in_chunks_with_the_same_means_and_no_positive_click_gives_zeros():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 12, 14, generator=g)
    clicks = torch.rand(1, 40, 2, generator=g) * torch.tensor([13.0, 11.0])
    labels = (torch.rand(1, 40, generator=g) > 0.3).long()
    obj = torch.zeros(3, dtype=torch.long)
    f = click_geometry(logits, (12, 14), clicks, labels, obj)
    one = torch.stack([click_geometry(logits, (12, 14), clicks[:, i: i + 1], labels[:, i: i + 1], obj) for i in range(40)])
    pos, neg = labels[0] == 1, labels[0] == 0
    torch.testing.assert_close(f[:, [0, 1, 3, 4]], one[pos][:, :, [0, 1, 3, 4]].mean(0))
    torch.testing.assert_close(f[:, 2], one[neg][:, :, 2].mean(0))
    only_negative = click_geometry(logits, (12, 14), clicks[:, :3], torch.zeros(1, 3, dtype=torch.long), obj)
    assert bool(torch.isfinite(only_negative).all()) and bool((only_negative[:, [0, 1, 3, 4]] == 0).all())


def test_the_callers_inside_map_gives_the_same_features():
    """candidate_features hands over mask_statistics' inside map instead of a second comparison of the logits."""
    from seem.candidates import mask_statistics

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 10, 16, generator=g)
    clicks = torch.tensor([[[3.0, 4.0], [12.0, 2.0]], [[8.0, 6.0], [1.0, 7.0]]])
    labels, obj = torch.tensor([[1, 0], [1, 1]]), torch.tensor([0, 0, 1, 1])
    inside = mask_statistics(logits, (9, 13))[1]
    assert torch.equal(click_geometry(logits, (9, 13), clicks, labels, obj, inside),
                       click_geometry(logits, (9, 13), clicks, labels, obj))
