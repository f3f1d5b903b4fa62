"""Simulated visual prompts: from a ground-truth mask to the positive region a user might have drawn.

One sampler per official prompt kind of SEEM's training/evaluation (``ShapeSampler``: point, polygon,
scribble, circle; box at evaluation). Each takes ``mask (H, W)`` bool (any array that casts to bool)
and returns a new ``(H, W)`` bool region in the same pixel frame. Every sampler returns a non-empty
region for any non-empty mask, a single pixel included, and raises ``ValueError`` for an empty one.
Which region each returns:

* ``sample_point``: 1..max_points 3x3 squares centred on mask pixels, intersected with the mask;
* ``sample_scribble``: a smooth random walk that stays inside the mask, 3 px wide, inside the mask;
* ``sample_polygon``: a filled closed curve through 3..9 random mask pixels, clipped to the mask's box;
* ``sample_circle``: the 3 px outline of an object-like blob (the mask shrunk by a random margin);
* ``sample_box``: the filled bounding box of the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

PROMPT_KINDS: tuple[str, ...] = ("point", "scribble", "polygon", "circle", "box")


def _as_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {m.shape}")
    m = m.astype(bool, copy=False)
    if not m.any():
        raise ValueError("mask is empty: a prompt needs at least one foreground pixel")
    return m


def _shift_all(m: np.ndarray, erode: bool) -> np.ndarray:
    """3x3 erosion (``erode``) or dilation of a bool mask; outside the image counts as background."""
    h, w = m.shape
    p = np.pad(m, 1, constant_values=False)
    out = m.copy()
    for dy in range(3):
        for dx in range(3):
            if erode:
                out &= p[dy : dy + h, dx : dx + w]
            else:
                out |= p[dy : dy + h, dx : dx + w]
    return out


def _interior(m: np.ndarray) -> np.ndarray:
    """Pixels where a 3x3 square fits inside the mask, or the mask itself when there are none."""
    inner = _shift_all(m, erode=True)
    return inner if inner.any() else m


def _bbox(m: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _random_pixels(m: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(m)
    idx = rng.choice(len(ys), size=n, replace=n > len(ys))
    return ys[idx], xs[idx]


def sample_point(mask: np.ndarray, rng: np.random.Generator, max_points: int = 20) -> np.ndarray:
    """1..``max_points`` (uniform count) clicks, each a 3x3 square centred on a mask pixel (away from the
    border where the mask allows), intersected with the mask. ``max_points=1`` gives a single click."""
    m = _as_mask(mask)
    if int(max_points) < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    n = int(rng.integers(1, int(max_points) + 1))
    ys, xs = _random_pixels(_interior(m), n, rng)
    out = np.zeros_like(m)
    out[ys, xs] = True
    return _shift_all(out, erode=False) & m


def sample_scribble(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve inside the mask (a walk with slowly turning heading that turns away from
    the mask's border), drawn 3 px wide and intersected with the mask."""
    m = _as_mask(mask)
    domain = _interior(m)
    h, w = m.shape
    area = int(m.sum())
    n_steps = int(np.clip(rng.uniform(0.6, 2.5) * np.sqrt(area), 1, 800))
    y0, x0 = _random_pixels(domain, 1, rng)
    pos = np.array([x0[0] + 0.5, y0[0] + 0.5])
    heading = rng.uniform(0, 2 * np.pi)
    turn_noise = rng.normal(0.0, 0.04, size=n_steps)
    path_x, path_y = [int(x0[0])], [int(y0[0])]
    omega = 0.0
    for i in range(n_steps):
        omega = float(np.clip(0.9 * omega + turn_noise[i], -0.12, 0.12))  # curvature radius >= ~12 px
        heading += omega
        for turn in (0.0, 0.5, -0.5, 1.0, -1.0, 1.6, -1.6, 2.4, -2.4, np.pi):
            step = pos + 1.5 * np.array([np.cos(heading + turn), np.sin(heading + turn)])
            ix, iy = int(step[0]), int(step[1])
            if 0 <= ix < w and 0 <= iy < h and domain[iy, ix]:
                heading += turn
                if turn:
                    omega = 0.0
                pos = step
                path_x.append(ix)
                path_y.append(iy)
                break
        else:
            break
    out = np.zeros_like(m)
    out[np.asarray(path_y), np.asarray(path_x)] = True
    return _shift_all(out, erode=False) & m


def _closed_spline(pts: np.ndarray, samples: int = 8) -> np.ndarray:
    """Closed Catmull-Rom curve through ``pts (K, 2)``: ``(K * samples, 2)``."""
    p0, p1, p2, p3 = np.roll(pts, 1, 0), pts, np.roll(pts, -1, 0), np.roll(pts, -2, 0)
    t = np.linspace(0, 1, samples, endpoint=False)[:, None, None]
    curve = 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
    return curve.transpose(1, 0, 2).reshape(-1, 2)


def sample_polygon(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A filled smooth closed curve through 3..9 random mask pixels (ordered by angle about their mean),
    clipped to the mask's bounding box; its vertex pixels are always included."""
    m = _as_mask(mask)
    r0, r1, c0, c1 = _bbox(m)
    k = int(rng.integers(3, 10))
    ys, xs = _random_pixels(m, k, rng)
    pts = np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float64)
    centre = pts.mean(axis=0)
    pts = pts[np.argsort(np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0]), kind="stable")]
    curve = _closed_spline(pts) - np.array([c0, r0])
    canvas = Image.new("1", (c1 - c0, r1 - r0), 0)
    ImageDraw.Draw(canvas).polygon([tuple(q) for q in curve.tolist()], fill=1, outline=1)
    out = np.zeros_like(m)
    out[r0:r1, c0:c1] = np.asarray(canvas, dtype=bool)
    out[ys, xs] = True
    return out


def sample_circle(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 3 px outline of an object-like blob: the mask shrunk by a random 15-60 % of its largest
    inner distance (so it keeps the object's shape), as a user would circle the object; inside the mask."""
    from scipy import ndimage

    m = _as_mask(mask)
    r0, r1, c0, c1 = _bbox(m)
    crop = np.pad(m[r0:r1, c0:c1], 1, constant_values=False)
    dist = ndimage.distance_transform_edt(crop)
    blob = dist > rng.uniform(0.15, 0.6) * (float(dist.max()) - 1.0)
    stroke = blob & (ndimage.distance_transform_edt(blob) <= 3.0)
    out = np.zeros_like(m)
    out[r0:r1, c0:c1] = stroke[1:-1, 1:-1]
    return out


def sample_box(mask: np.ndarray) -> np.ndarray:
    """The filled bounding box of the mask."""
    m = _as_mask(mask)
    r0, r1, c0, c1 = _bbox(m)
    out = np.zeros_like(m)
    out[r0:r1, c0:c1] = True
    return out


PROMPT_SAMPLERS = {
    "point": sample_point,
    "scribble": sample_scribble,
    "polygon": sample_polygon,
    "circle": sample_circle,
    "box": lambda mask, rng: sample_box(mask),
}


def sample_prompt(mask: np.ndarray, rng: np.random.Generator, kinds: Sequence[str] = PROMPT_KINDS) -> np.ndarray:
    """The region of one prompt of a kind drawn uniformly from ``kinds`` (names of :data:`PROMPT_KINDS`).
    To know the kind, draw it yourself and call ``PROMPT_SAMPLERS[kind](mask, rng)``."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in PROMPT_SAMPLERS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {PROMPT_KINDS}, got {kinds}")
    return PROMPT_SAMPLERS[kinds[int(rng.integers(len(kinds)))]](mask, rng)
