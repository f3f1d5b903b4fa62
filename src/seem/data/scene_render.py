"""Painting a generated scene: front-most owners, alpha blending with drop shadows, the photographic finish.

Pure numpy / Pillow on ``(H, W, 3)`` float32 images in ``[0, 1]`` (``finish`` returns uint8); used by
:mod:`seem.data.scenes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Look:
    """Per-scene photographic look (kept for every frame of a clip)."""

    gain: np.ndarray  # (3,) exposure x white balance
    gamma: float
    noise: float
    blur: float  # Gaussian radius, 0 = none
    shadow: tuple[float, float, float]  # (dx, dy) per unit size, strength


def owners(renders, keep, hw) -> np.ndarray:
    """(H, W) int64: index of the front-most kept thing at each pixel (alpha >= 0.5), -1 for background."""
    owner = np.full(hw, -1, dtype=np.int64)
    for i in keep:
        alpha, _, y0, x0 = renders[i]
        view = owner[y0 : y0 + alpha.shape[0], x0 : x0 + alpha.shape[1]]
        view[alpha >= 0.5] = i
    return owner


def paint(image: np.ndarray, render, size: float, look: Look) -> None:
    """Alpha-blend one thing into ``image`` (in place), after darkening a soft, offset drop shadow."""
    alpha, rgb, y0, x0 = render
    ah, aw = alpha.shape
    h, w = image.shape[:2]
    dx, dy, strength = look.shadow
    if strength > 0:
        ox, oy = int(round(dx * size)), int(round(dy * size))
        pad = int(abs(ox) + abs(oy) + 4)
        canvas = Image.new("L", (aw + 2 * pad, ah + 2 * pad), 0)
        canvas.paste(Image.fromarray((alpha * 255).astype(np.uint8)), (pad + ox, pad + oy))
        shade = np.asarray(canvas.filter(ImageFilter.BoxBlur(2)), dtype=np.float32) * (strength / 255.0)
        sy0, sx0 = y0 - pad, x0 - pad
        cy0, cx0, cy1, cx1 = max(0, sy0), max(0, sx0), min(h, sy0 + shade.shape[0]), min(w, sx0 + shade.shape[1])
        image[cy0:cy1, cx0:cx1] *= 1.0 - shade[cy0 - sy0 : cy1 - sy0, cx0 - sx0 : cx1 - sx0, None]
    view = image[y0 : y0 + ah, x0 : x0 + aw]
    view += alpha[..., None] * (rgb - view)


def finish(image: np.ndarray, look: Look, rng) -> np.ndarray:
    """Photographic look: gain, sensor noise, gamma (as a lookup table), occasional blur -> uint8."""
    image = image * look.gain
    if look.noise > 0:
        image += np.float32(look.noise) * rng.standard_normal(image.shape, dtype=np.float32)
    out = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if look.gamma != 1.0:
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** look.gamma + 0.5, 0, 255).astype(np.uint8)
        out = lut[out]
    if look.blur > 0:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(look.blur)))
    return out
