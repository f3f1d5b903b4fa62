"""Interactive segmentation: the RITM / SimpleClick click protocol and its metrics (PEERS.md §5).

``interactive_curve`` simulates one user on one object:

1. **Round 1.** A positive click at the distance-transform maximum of the GT (ignored pixels excluded,
   image border counts as border), or another first prompt (scribble / polygon / box) sampled from the
   GT with :mod:`seem.data.prompts_sim`.
2. **Later rounds.** The next click goes to the centre of the larger error region
   (:func:`seem.train.clicker.next_click`: false negatives -> positive click, false positives ->
   negative), never on a pixel already covered by an earlier click (3x3 squares) nor on ``ignore``.
   Every round sends *all* prompts so far plus the previous :class:`~seem.structures.Prediction` as
   ``memory=`` (the official multi-round interaction).
3. The mask is ``Prediction.masks[0]`` (logits > 0, i.e. probability > 0.5); IoU excludes ``ignore``.

The curve holds the IoU after each round: ``curve[k - 1]`` is the IoU after ``k`` clicks (the first prompt
counts as click 1). ``noc`` / ``nof`` / ``miou_at`` / ``summarize`` turn curves into the published numbers
(NoC capped at ``max_clicks`` = 20, as RITM, SimpleClick and SEEM's ``InteractiveEvaluator``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seem.prompts import Prompts
from seem.train.clicker import Click, click_square, iou, next_click

FIRST_PROMPTS: tuple[str, ...] = ("point", "scribble", "polygon", "box")


def _first_region(gt: np.ndarray, ignore: np.ndarray | None, first_prompt: str,
                  rng: np.random.Generator) -> dict:
    """Predictor keyword arguments of a non-click first prompt sampled from the GT."""
    from seem.data.prompts_sim import PROMPT_SAMPLERS

    target = gt & ~ignore if ignore is not None and (gt & ~ignore).any() else gt
    region = PROMPT_SAMPLERS[first_prompt](target, rng)
    if first_prompt == "box":
        rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
        return {"boxes": [[int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]]}
    if first_prompt == "scribble":
        return {"scribbles": [region]}
    return {"masks": region[None]}  # polygon: the filled region


def _click_xy(click: Click) -> list[float]:
    """Pixel ``(y, x)`` -> the predictor's ``(x, y)`` coordinates of that pixel's centre."""
    return [click.x + 0.5, click.y + 0.5]


def interactive_curve(predictor, gt: np.ndarray, max_clicks: int = 20, ignore: np.ndarray | None = None,
                      first_prompt: str = "point", rng: np.random.Generator | None = None,
                      stop_iou: float | None = None, min_clicks: int = 5) -> list[float]:
    """IoU after each of up to ``max_clicks`` simulated clicks on one object.

    Args:
        predictor: a :class:`~seem.predictor.SeemPredictor` (or anything with the same ``predict``) whose
            image is already set.
        gt: ``(H, W)`` bool ground truth of the object.
        max_clicks: number of rounds (the first prompt included).
        ignore: ``(H, W)`` bool pixels that count neither for IoU nor as click targets (e.g. a void band).
        first_prompt: ``"point"`` (distance-transform maximum), ``"scribble"``, ``"polygon"`` or ``"box"``
            (sampled from the GT by :data:`seem.data.prompts_sim.PROMPT_SAMPLERS`; the region is sent as
            ``scribbles=[mask]``, ``masks=[mask]`` or ``boxes=[[x0, y0, x1 + 1, y1 + 1]]``) and kept in every
            later round together with the clicks.
        rng: random generator of the non-click first prompts (default: seed 0).
        stop_iou: stop once the IoU reaches this value and at least ``min_clicks`` clicks were made (the
            curve is then shorter; :func:`miou_at` stays exact up to ``min_clicks``, NoC for thresholds
            ``<= stop_iou``).
        min_clicks: with ``stop_iou``, never stop before this many clicks (default 5, for mIoU@1..5).

    Returns:
        ``len == max_clicks`` IoUs in [0, 1] (fewer with ``stop_iou``). When no new click is possible (no
        error left outside earlier clicks and ``ignore``), the last IoU is repeated for the remaining rounds.

    Raises:
        ValueError: empty GT (after ``ignore``), unknown ``first_prompt``, shape mismatch, ``max_clicks < 1``.
    """
    gt = np.asarray(gt).astype(bool)
    if gt.ndim != 2:
        raise ValueError(f"gt must be an (H, W) mask, got shape {gt.shape}")
    if ignore is not None:
        ignore = np.asarray(ignore).astype(bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore has shape {ignore.shape}, gt has {gt.shape}")
    if not (gt & ~ignore if ignore is not None else gt).any():
        raise ValueError("gt is empty (outside the ignore mask): nothing to click on")
    if first_prompt not in FIRST_PROMPTS:
        raise ValueError(f"first_prompt must be one of {FIRST_PROMPTS}, got {first_prompt!r}")
    if int(max_clicks) < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    rng = np.random.default_rng(0) if rng is None else rng

    region_kwargs: dict = {}
    points: list[list[float]] = []
    labels: list[int] = []
    clicked = np.zeros_like(gt)
    if first_prompt == "point":
        first = next_click(gt, np.zeros_like(gt), None, ignore)  # DT maximum of the GT: always positive
        assert first is not None  # an empty prediction misses all of gt, checked non-empty outside ignore above
        points.append(_click_xy(first))
        labels.append(1)
        clicked |= click_square(gt.shape, first)
    else:
        region_kwargs = _first_region(gt, ignore, first_prompt, rng)

    curve: list[float] = []
    prediction = None
    while True:
        kwargs = dict(region_kwargs)
        if points:
            kwargs.update(points=[list(p) for p in points], point_labels=list(labels))
        prediction = predictor.predict(Prompts(**kwargs), memory=prediction)
        mask = np.asarray(prediction.masks[0]).astype(bool)
        curve.append(iou(mask, gt, ignore))
        if len(curve) >= max_clicks or (stop_iou is not None and curve[-1] >= stop_iou and len(curve) >= min_clicks):
            return curve
        click = next_click(gt, mask, clicked, ignore)
        if click is None:  # nothing left to correct (or only already clicked pixels): the IoU stays
            return curve + [curve[-1]] * (max_clicks - len(curve))
        points.append(_click_xy(click))
        labels.append(int(click.positive))
        clicked |= click_square(gt.shape, click)


def noc(curve: Sequence[float], thr: float, max_clicks: int = 20) -> int:
    """Number of clicks to reach IoU >= ``thr`` (first index + 1), ``max_clicks`` if it never does."""
    for k, value in enumerate(list(curve)[:max_clicks]):
        if value >= thr:
            return k + 1
    return int(max_clicks)


def nof(curves: Sequence[Sequence[float]], thr: float, max_clicks: int = 20) -> int:
    """Number of failures: curves that never reach IoU >= ``thr`` within ``max_clicks`` clicks."""
    return sum(1 for c in curves if not any(v >= thr for v in list(c)[:max_clicks]))


def _at(curve: Sequence[float], k: int) -> float:
    if not len(curve):
        raise ValueError("empty IoU curve")
    return float(curve[k - 1]) if k <= len(curve) else float(curve[-1])


def miou_at(curves: Sequence[Sequence[float]], k: int) -> float:
    """Mean IoU (fraction) after ``k`` clicks (a shorter curve's last value carries forward)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not len(curves):
        return float("nan")
    return float(np.mean([_at(c, k) for c in curves]))


def summarize(curves: Sequence[Sequence[float]], max_clicks: int = 20) -> dict:
    """The published numbers: ``NoC@85/90/95`` (mean clicks), ``NoF@85/90`` (count), ``mIoU@1..5`` and
    ``mIoU@{max_clicks}`` (percent), ``num_instances``."""
    curves = [list(c) for c in curves]
    out: dict = {"num_instances": len(curves)}
    for t in (85, 90, 95):
        out[f"NoC@{t}"] = float(np.mean([noc(c, t / 100, max_clicks) for c in curves])) if curves else float("nan")
    for t in (85, 90):
        out[f"NoF@{t}"] = nof(curves, t / 100, max_clicks)
    for k in sorted({1, 2, 3, 4, 5, int(max_clicks)}):
        if k <= max_clicks:
            out[f"mIoU@{k}"] = 100.0 * miou_at(curves, k)
    return out
