"""Mask overlays with labels and scores, for humans (PNG previews in the CLI and demo)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from seem.errors import ImageError
from seem.io import load_image
from seem.mask_codecs import _as_masks


# ----------------------------------------------------------------------------------------------------
# Overlay
# ----------------------------------------------------------------------------------------------------
def distinct_colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 well-separated saturated colours (golden-ratio hue steps), deterministic."""
    hues = (np.arange(n) * 0.618033988749895 + 0.07) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.8, 0.95)] for h in hues], np.uint8)


def _boundary(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Mask pixels within ``thickness`` pixels of the background (4-connected erosion), inside the mask."""
    inner = mask
    for _ in range(thickness):
        p = np.pad(inner, 1)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def overlay(
    image: np.ndarray,
    masks: np.ndarray,
    labels: Sequence[str] | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """Draw masks on an image: ``(H, W, 3)`` uint8 out, the input is not modified.

    Each of the ``(K, H, W)`` masks gets a distinct colour blended with weight ``alpha`` and an opaque
    contour drawn on its border pixels; only mask pixels change, except for the text labels
    (``"label 0.87"``) drawn at each mask's centroid, or its top-left corner when the centroid falls
    outside it.
    """
    rgb = load_image(image, max_pixels=np.iinfo(np.int64).max)
    masks = _as_masks(masks) if len(masks) else np.zeros((0, *rgb.shape[:2]), dtype=bool)
    if masks.shape[1:] != rgb.shape[:2]:
        raise ImageError(f"overlay: masks are {masks.shape[1:]} (HxW) but the image is {rgb.shape[:2]}")
    out = rgb.astype(np.float32)
    colors = distinct_colors(len(masks)).astype(np.float32)
    thickness = max(1, round(min(rgb.shape[:2]) / 400))
    for mask, color in zip(masks, colors):
        out[mask] = (1.0 - alpha) * out[mask] + alpha * color
        out[_boundary(mask, thickness)] = color
    result = np.clip(out.round(), 0, 255).astype(np.uint8)
    if labels is None and scores is None:
        return result
    canvas = Image.fromarray(result)
    draw = ImageDraw.Draw(canvas)
    font = _font(max(12, min(rgb.shape[:2]) // 30))
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if xs.size == 0:
            continue
        text = " ".join(
            ([str(labels[i])] if labels is not None else []) + ([f"{float(scores[i]):.2f}"] if scores is not None else [])
        )
        cx, cy = int(xs.mean()), int(ys.mean())
        if not mask[cy, cx]:
            cx, cy = int(xs.min()), int(ys.min())
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 4, bottom - top + 4
        x = min(max(cx - tw // 2, 0), max(canvas.width - tw, 0))
        y = min(max(cy - th // 2, 0), max(canvas.height - th, 0))
        draw.rectangle((x, y, x + tw - 1, y + th - 1), fill=(0, 0, 0))
        draw.text((x + 2 - left, y + 2 - top), text, fill=tuple(int(c) for c in colors[i]), font=font)
    return np.asarray(canvas).copy()
