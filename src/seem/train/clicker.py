"""Simulated clicks: the next click goes to the centre of the larger error region.

The RITM / SimpleClick protocol that SEEM uses for training and evaluation (official
``seem_model_v1.py::prepare_next_spaital_mask``, SEEM-REFERENCE.md §2.4 / §4.1): false negatives
(GT and not predicted) give a positive click, false positives a negative one, whichever region is larger;
the click is the pixel farthest from the region's border (distance-transform maximum, image borders count
as border), excluding pixels already clicked. An optional ``ignore`` mask (e.g. GrabCut's boundary band)
is excluded from both regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Click:
    """``(y, x)`` pixel of the click; ``positive`` = inside the object."""

    y: int
    x: int
    positive: bool


def next_click(gt: np.ndarray, pred: np.ndarray, clicked: np.ndarray | None = None,
               ignore: np.ndarray | None = None) -> Click | None:
    """The next simulated click, or ``None`` when prediction and GT agree everywhere that counts.

    Args:
        gt, pred: ``(H, W)`` bool ground truth and current prediction.
        clicked: ``(H, W)`` bool pixels already covered by earlier clicks (never clicked again).
        ignore: ``(H, W)`` bool pixels that do not count (excluded from the error regions).
    """
    from scipy.ndimage import distance_transform_edt

    gt, pred = gt.astype(bool), pred.astype(bool)
    free = np.ones_like(gt) if clicked is None else ~clicked.astype(bool)
    if ignore is not None:
        free &= ~ignore.astype(bool)
    fn = gt & ~pred & free
    fp = ~gt & pred & free
    positive = int(fn.sum()) > int(fp.sum())
    region = fn if positive else fp
    if not region.any():
        return None
    dist = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(int(y), int(x), bool(positive))


def click_square(shape: tuple[int, int], click: Click, radius: int = 1) -> np.ndarray:
    """``(H, W)`` bool: the official 3x3 click dilation around ``click`` (clipped at the borders)."""
    out = np.zeros(shape, dtype=bool)
    out[max(click.y - radius, 0) : click.y + radius + 1, max(click.x - radius, 0) : click.x + radius + 1] = True
    return out


def iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two ``(H, W)`` bool masks (1.0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    if ignore is not None:
        keep = ~ignore.astype(bool)
        a, b = a & keep, b & keep
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def simulate_clicks(predictor, gt: np.ndarray, rounds: int) -> list[float]:
    """IoU with ``gt`` after each of ``rounds`` simulated clicks on one object of the predictor's current image.

    Each round adds :func:`next_click` on the current error and sends every click so far plus the previous
    round's result as the memory prompt (``SeemPredictor.predict(Prompts(points, point_labels), memory)``).
    Once prediction and ground truth agree, later rounds repeat the last IoU. ``gt``: ``(H, W)`` bool in the
    image's pixel frame.
    """
    from seem.prompts import Prompts  # the clicker itself stays numpy-only (data generation imports it)

    points: list[list[float]] = []
    labels: list[int] = []
    pred, memory = np.zeros_like(gt, dtype=bool), None
    out: list[float] = []
    for _ in range(rounds):
        c = next_click(gt, pred)
        if c is None:
            out.append(out[-1] if out else 1.0)
            continue
        points.append([c.x + 0.5, c.y + 0.5])
        labels.append(int(c.positive))
        memory = predictor.predict(Prompts(points=points, point_labels=labels), memory=memory)
        pred = memory.masks[0]
        out.append(iou(pred, gt))
    return out
