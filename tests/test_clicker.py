"""Simulated clicks (RITM / SimpleClick protocol) on hand-computed cases, and the LR schedule."""

from __future__ import annotations

import numpy as np

from seem.train.clicker import Click, click_square, iou, next_click
from seem.train.config import TrainConfig


def test_first_click_is_the_centre_of_the_object():
    gt = np.zeros((9, 11), bool)
    gt[2:7, 3:8] = True  # 5x5 square centred at (4, 5)
    assert next_click(gt, np.zeros_like(gt)) == Click(4, 5, True)


def test_larger_error_region_decides_the_sign():
    gt = np.zeros((10, 10), bool)
    gt[0:4, 0:4] = True
    pred = np.zeros_like(gt)
    pred[0:4, 0:3] = True  # 4 false-negative pixels
    pred[6:10, 6:10] = True  # 16 false-positive pixels -> negative click in their middle
    click = next_click(gt, pred)
    assert not click.positive and 6 <= click.y <= 9 and 6 <= click.x <= 9


def test_image_border_counts_as_region_border_and_clicked_pixels_are_skipped():
    gt = np.zeros((5, 20), bool)
    gt[:, :] = True
    click = next_click(gt, np.zeros_like(gt))
    assert click.y == 2  # padded border: the middle row is farthest from the image border
    clicked = click_square(gt.shape, click)
    again = next_click(gt, np.zeros_like(gt), clicked)
    assert not clicked[again.y, again.x]


def test_no_click_when_everything_agrees_and_ignore_band():
    gt = np.zeros((6, 6), bool)
    gt[1:5, 1:5] = True
    assert next_click(gt, gt.copy()) is None
    ignore = np.zeros_like(gt)
    ignore[0, :] = True
    pred = gt.copy()
    pred[0, 2] = True  # error only inside the ignore band
    assert next_click(gt, pred, ignore=ignore) is None
    assert iou(gt, pred, ignore) == 1.0 and iou(gt, pred) == 16 / 17


def test_click_square_is_clipped_3x3():
    sq = click_square((4, 4), Click(0, 0, True))
    assert sq.sum() == 4 and sq[:2, :2].all()


def test_warmup_and_step_schedule():
    c = TrainConfig(steps=100, warmup_steps=10, milestones=(0.5, 0.9), gamma=0.1)
    assert abs(c.lr_factor(0) - 0.001) < 1e-12 and abs(c.lr_factor(5) - (0.001 * 0.5 + 0.5)) < 1e-12
    assert c.lr_factor(10) == 1.0 and c.lr_factor(49) == 1.0
    assert abs(c.lr_factor(50) - 0.1) < 1e-12 and abs(c.lr_factor(95) - 0.01) < 1e-12
