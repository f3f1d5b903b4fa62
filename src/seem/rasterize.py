"""Polygon and scribble prompts -> boolean masks (continuous COCO pixel coordinates, see :mod:`seem.io`)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from seem.errors import PromptError


# ----------------------------------------------------------------------------------------------------
# Rasterization of polygon and scribble prompts
# ----------------------------------------------------------------------------------------------------
def _as_points(points_xy: np.ndarray, what: str, min_points: int) -> np.ndarray:
    try:
        pts = np.asarray(points_xy, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError(f"{what}: points must be numbers, an (N, 2) array of (x, y)") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"{what}: expected an (N, 2) array of (x, y) points, got shape {pts.shape}")
    if len(pts) < min_points:
        raise PromptError(f"{what}: needs at least {min_points} point(s), got {len(pts)}")
    if not np.isfinite(pts).all():
        raise PromptError(f"{what}: coordinates must be finite, got NaN or infinity")
    return pts


def _as_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise PromptError(f"image size must be positive (H, W), got {tuple(size)}")
    return h, w


def rasterize_polygon(points_xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fill a polygon: ``(H, W)`` bool, True where the pixel centre lies inside (even-odd rule).

    Args:
        points_xy: ``(N, 2)`` float, N >= 3 vertices ``(x, y)`` in continuous pixel coordinates of
            the image (the frame :func:`mask_to_polygons` returns); the polygon closes itself.
        size: ``(H, W)`` of the image. Parts outside the image are clipped.
    """
    pts = _as_points(points_xy, "polygon", 3)
    h, w = _as_size(size)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # Rows whose centre y = r + 0.5 satisfies min(y0, y1) <= y < max(y0, y1) (half-open: each
    # vertex counted once, so every row has an even number of crossings).
    r_start = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, h).astype(np.int64)
    r_stop = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, h).astype(np.int64)
    counts = np.maximum(r_stop - r_start, 0)
    edge = np.repeat(np.arange(len(pts)), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = r_start[edge] + offsets
    yc = rows + 0.5
    xs = x0[edge] + (yc - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    # Consecutive crossings of a row pair up; fill columns whose centre c + 0.5 is in [x_in, x_out).
    c_in = np.clip(np.ceil(xs[0::2] - 0.5), 0, w).astype(np.int64)
    c_out = np.clip(np.ceil(xs[1::2] - 0.5), 0, w).astype(np.int64)
    diff = np.zeros((h, w + 1), dtype=np.int8)
    np.add.at(diff, (rows[0::2], c_in), 1)
    np.add.at(diff, (rows[1::2], c_out), -1)
    return np.cumsum(diff[:, :w], axis=1, dtype=np.int8) > 0


def rasterize_polyline(points_xy: np.ndarray, size: tuple[int, int], width: int = 3) -> np.ndarray:
    """Draw a scribble: ``(H, W)`` bool stroke of ``width`` pixels with round joints and ends.

    Args:
        points_xy: ``(N, 2)`` float, N >= 1 points ``(x, y)`` in continuous pixel coordinates of the
            image; a single point draws a dot of diameter ``width``.
        size: ``(H, W)`` of the image. Parts outside the image are clipped.
    """
    pts = _as_points(points_xy, "scribble", 1)
    h, w = _as_size(size)
    if int(width) < 1:
        raise PromptError(f"scribble: width must be >= 1 pixel, got {width}")
    width = int(width)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    centres = [(float(x) - 0.5, float(y) - 0.5) for x, y in pts]  # Pillow: integer = pixel centre
    if len(centres) > 1:
        draw.line(centres, fill=255, width=width, joint="curve")
    r = (width - 1) / 2.0
    for x, y in (centres[0], centres[-1]):  # round caps; a 1-pixel dot is the pixel holding the point
        if width == 1:
            draw.point((int(np.floor(x + 0.5)), int(np.floor(y + 0.5))), fill=255)
        else:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(canvas) > 0
