"""Things of the scene engine: geometric shapes and real cut-outs, their fills, and their rasterisation.

A :class:`Thing` is a pure description (category, fill, centre, size, rotation); :func:`render_thing`
turns it into a soft alpha and colours inside its clipped box. Two things that differ only in
position, size or rotation look like the same object, which is what pairs and clips rely on.
Coordinates: pixels of the scene image, ``(x, y)`` with ``x`` to the right and ``y`` down.

The prompt samplers of :mod:`seem.data.prompts_sim` are re-exported here, where the design brief first
placed them (SEEM calls prompt kinds "shapes").
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from seem.data import assets
from seem.data.prompts_sim import (
    PROMPT_KINDS,
    PROMPT_SAMPLERS,
    sample_box,
    sample_circle,
    sample_point,
    sample_polygon,
    sample_prompt,
    sample_scribble,
)

__all__ = [
    "PATTERNS", "SHAPE_CLASSES", "Fill", "Thing", "render_thing", "sample_shape_params", "unit_area", "unit_outline",
    # prompt samplers, re-exported from seem.data.prompts_sim
    "PROMPT_KINDS", "PROMPT_SAMPLERS", "sample_box", "sample_circle", "sample_point", "sample_polygon",
    "sample_prompt", "sample_scribble",
]

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "rectangle", "triangle", "star", "ellipse", "hexagon", "cross", "heart", "ring")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered", "textured")
_SUPERSAMPLE = 2  # shapes are drawn at 2x and box-averaged: anti-aliased edges in the image


@dataclass(frozen=True)
class Fill:
    """How a thing is coloured; every value is fixed so a thing looks the same wherever it is drawn."""

    colour: str | None  # named colour (assets.COLOUR_NAMES); None for a photo cut-out
    rgb: tuple[float, float, float]  # the shade of that colour, [0, 1]
    pattern: str = "plain"  # one of PATTERNS
    period: float = 0.5  # pattern period, in units of the object radius
    angle: float = 0.0  # pattern orientation, radians
    texture: str = "gravel"  # grey texture for pattern "textured"
    tex_origin: tuple[float, float] = (0.0, 0.0)  # (y, x) in texture pixels
    tex_density: float = 40.0  # texture pixels per object-radius unit (radius-relative: scales with the thing)
    shade: tuple[float, float] = (0.0, 0.0)  # (direction radians, strength): a linear lighting gradient
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel colour jitter of photo cut-outs


@dataclass(frozen=True)
class Thing:
    """One countable object. ``size`` is the square root of its unoccluded area, in pixels."""

    object_id: int
    category: str  # a SHAPE_CLASSES name or a real class (assets.REAL_CLASSES)
    fill: Fill
    cx: float  # centre, pixels
    cy: float
    size: float
    rotation: float = 0.0  # radians, counter-clockwise on screen; shapes only
    flip: bool = False  # horizontal mirror
    params: tuple[float, ...] = ()  # shape parameters (aspect, inner radius, vertex jitter, ...)
    cutout: int = -1  # index into assets.cutouts() for real objects, -1 for shapes

    @property
    def is_cutout(self) -> bool:
        return self.cutout >= 0

    def moved(self, **changes) -> Thing:
        return replace(self, **changes)


def sample_shape_params(category: str, rng: np.random.Generator) -> tuple[float, ...]:
    """Random parameters that keep the shape recognisable as its class."""
    if category in ("rectangle", "ellipse"):
        return (rng.uniform(1.6, 2.8),)  # aspect ratio; clearly not a square or circle
    if category == "star":
        return (float(rng.choice([5, 5, 6])), rng.uniform(0.38, 0.52))
    if category == "triangle":
        return tuple(rng.uniform(-0.12, 0.12, size=6))
    if category == "cross":
        return (rng.uniform(0.28, 0.42),)
    if category == "ring":
        return (rng.uniform(0.45, 0.65),)
    return ()


def _circle(n: int = 48, ry: float = 1.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), ry * np.sin(t)], axis=1)


def unit_outline(category: str, params: tuple[float, ...]) -> list[np.ndarray]:
    """Polygons ``(K, 2)`` (x, y) about the origin, radius about 1; the first is filled, later ones are holes."""
    if category == "circle":
        return [_circle()]
    if category == "ellipse":
        return [_circle(48, 1.0 / params[0])]
    if category == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)]
    if category == "rectangle":
        b = 1.0 / params[0]
        return [np.array([[-1, -b], [1, -b], [1, b], [-1, b]], dtype=np.float64)]
    if category == "triangle":
        t = np.deg2rad([-90.0, 30.0, 150.0])
        return [np.stack([np.cos(t), np.sin(t)], axis=1) + np.asarray(params, dtype=np.float64).reshape(3, 2)]
    if category == "hexagon":
        t = np.arange(6) * np.pi / 3
        return [np.stack([np.cos(t), np.sin(t)], axis=1)]
    if category == "star":
        n, inner = int(params[0]), params[1]
        t = -np.pi / 2 + np.arange(2 * n) * np.pi / n
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
        return [np.stack([r * np.cos(t), r * np.sin(t)], axis=1)]
    if category == "cross":
        a = params[0]
        return [np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]], dtype=np.float64)]
    if category == "heart":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [np.stack([x, y + 2.5], axis=1) / 16.5]
    if category == "ring":
        return [_circle(64), _circle(64) * params[0]]
    raise ValueError(f"unknown shape {category!r}; expected one of {SHAPE_CLASSES}")


def _shoelace(p: np.ndarray) -> float:
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))


def unit_area(category: str, params: tuple[float, ...]) -> float:
    polys = unit_outline(category, params)
    return _shoelace(polys[0]) - sum(_shoelace(p) for p in polys[1:])


@functools.cache
def _cutout_images(index: int) -> tuple[Image.Image, Image.Image | None, int]:
    cut = assets.cutouts()[index]
    mask = Image.fromarray(cut.mask.astype(np.float32))
    rgb = None if cut.rgb is None else Image.fromarray(cut.rgb)
    return mask, rgb, int(cut.mask.sum())


def _box(x0: float, y0: float, x1: float, y1: float, hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    bx0, by0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    bx1, by1 = min(hw[1], int(math.ceil(x1))), min(hw[0], int(math.ceil(y1)))
    return (bx0, by0, bx1, by1) if bx1 > bx0 and by1 > by0 else None


def _object_frame(thing: Thing, box: tuple[int, int, int, int], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of ``box`` in the object's own frame (rotated, mirrored, in units of ``radius``)."""
    bx0, by0, bx1, by1 = box
    dx = (np.arange(bx0, bx1, dtype=np.float32) + 0.5 - thing.cx)[None, :]
    dy = (np.arange(by0, by1, dtype=np.float32) + 0.5 - thing.cy)[:, None]
    c, s = math.cos(thing.rotation), math.sin(thing.rotation)
    u = (c * dx - s * dy) / radius  # inverse of the screen rotation used in render_thing
    v = (s * dx + c * dy) / radius
    return (-u if thing.flip else u), v


def _paint(fill: Fill, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colours ``(h, w, 3)`` float32 of a pattern-filled object at object-frame coordinates ``u, v``."""
    base = np.asarray(fill.rgb, dtype=np.float32)
    ca, sa = math.cos(fill.angle), math.sin(fill.angle)
    pu, pv = (ca * u + sa * v) / fill.period, (-sa * u + ca * v) / fill.period
    if fill.pattern == "textured":
        tex = assets.gray_texture(fill.texture)
        iy = (fill.tex_origin[0] + v * fill.tex_density).astype(np.int64) % tex.shape[0]
        ix = (fill.tex_origin[1] + u * fill.tex_density).astype(np.int64) % tex.shape[1]
        img = base * (1.0 + 0.3 * tex[iy, ix])[..., None]
    elif fill.pattern == "plain":
        img = np.broadcast_to(base, u.shape + (3,)).astype(np.float32)
    else:
        if fill.pattern == "striped":
            on = (pu % 1.0) < 0.5
        elif fill.pattern == "checkered":
            on = (np.floor(pu) + np.floor(pv)) % 2 == 0
        elif fill.pattern == "dotted":
            on = ((pu % 1.0) - 0.5) ** 2 + ((pv % 1.0) - 0.5) ** 2 < 0.09
        else:
            raise ValueError(f"unknown pattern {fill.pattern!r}; expected one of {PATTERNS}")
        dark = float(max(base)) < 0.35  # a darker second tone would vanish: use a lighter one
        second = base + (1.0 - base) * 0.45 if dark else base * 0.55
        img = np.where(on[..., None], second, base)
    light = 1.0 + fill.shade[1] * (math.cos(fill.shade[0]) * u + math.sin(fill.shade[0]) * v)
    img = img * light[..., None] + np.float32(0.015) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0)


def render_thing(thing: Thing, hw: tuple[int, int], rng: np.random.Generator):
    """Rasterise one thing: ``(alpha (h, w) float32 in [0, 1], rgb (h, w, 3) float32, y0, x0)`` for the
    part of its box inside an image of size ``hw = (H, W)``, or ``None`` when nothing of it is inside."""
    if thing.is_cutout:
        return _render_cutout(thing, hw, rng)
    params = thing.params
    radius = thing.size / math.sqrt(unit_area(thing.category, params))
    c, s = math.cos(thing.rotation), math.sin(thing.rotation)
    polys = []
    for p in unit_outline(thing.category, params):
        x = p[:, 0] * (-1 if thing.flip else 1) * radius
        y = p[:, 1] * radius
        polys.append(np.stack([thing.cx + c * x + s * y, thing.cy - s * x + c * y], axis=1))
    box = _box(polys[0][:, 0].min(), polys[0][:, 1].min(), polys[0][:, 0].max(), polys[0][:, 1].max(), hw)
    if box is None:
        return None
    bx0, by0, bx1, by1 = box
    k = _SUPERSAMPLE
    canvas = Image.new("L", ((bx1 - bx0) * k, (by1 - by0) * k), 0)
    draw = ImageDraw.Draw(canvas)
    for i, p in enumerate(polys):
        local = (p - np.array([bx0, by0])) * k
        draw.polygon([tuple(q) for q in local.tolist()], fill=255 if i == 0 else 0)
    alpha = np.asarray(canvas.reduce(k), dtype=np.float32) / 255.0
    u, v = _object_frame(thing, box, radius)
    return alpha, _paint(thing.fill, u, v, rng), by0, bx0


def _render_cutout(thing: Thing, hw: tuple[int, int], rng: np.random.Generator):
    mask_img, rgb_img, area = _cutout_images(thing.cutout)
    f = thing.size / math.sqrt(area)
    w, h = max(1, round(mask_img.width * f)), max(1, round(mask_img.height * f))
    x0, y0 = int(round(thing.cx - w / 2)), int(round(thing.cy - h / 2))
    box = _box(x0, y0, x0 + w, y0 + h, hw)
    if box is None:
        return None
    bx0, by0, bx1, by1 = box
    crop = (bx0 - x0, by0 - y0, bx1 - x0, by1 - y0)
    alpha = np.clip(np.asarray(mask_img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32), 0.0, 1.0)
    if thing.flip:
        alpha = alpha[:, ::-1]
    alpha = np.ascontiguousarray(alpha[crop[1] : crop[3], crop[0] : crop[2]])
    if rgb_img is None:  # a silhouette: painted like a shape
        u, v = _object_frame(thing, box, thing.size / 2)
        return alpha, _paint(thing.fill, u, v, rng), by0, bx0
    rgb = np.asarray(rgb_img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    if thing.flip:
        rgb = rgb[:, ::-1]
    rgb = rgb[crop[1] : crop[3], crop[0] : crop[2]] * np.asarray(thing.fill.gains, dtype=np.float32)
    return alpha, np.clip(rgb, 0.0, 1.0), by0, bx0
