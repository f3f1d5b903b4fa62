"""A seeded engine of panoptic training scenes: textured stuff backgrounds, shapes and real cut-outs,
referring expressions, paired scenes (same objects elsewhere) and short clips (moving objects).

``SceneGenerator(config).sample(seed)`` is a pure function of ``(config, seed)``: the same seed gives the
same arrays bit for bit, in any process (numpy's PCG64 streams, no global state, no hash ordering).
Pixel frame: ``(H, W)`` arrays, ``(x, y)`` with ``x`` to the right and ``y`` down. Nothing is loaded at
import; textures and cut-outs are decoded on first use and cached.
"""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np

from seem.data import assets
from seem.data.expressions import Referent, referring_expressions
from seem.data.scene_render import Look, finish, owners, paint
from seem.data.shapes import PATTERNS, SHAPE_CLASSES, Fill, Thing, render_thing, sample_shape_params, unit_area

THING_CLASSES: tuple[str, ...] = SHAPE_CLASSES + assets.REAL_CLASSES
STUFF_CLASSES: tuple[str, ...] = assets.STUFF_CLASSES
VOCABULARY: tuple[str, ...] = THING_CLASSES + STUFF_CLASSES
_ATTEMPTS = 8  # a seed whose draw loses every thing (or every pair match) is redrawn, deterministically


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of :class:`SceneGenerator`; change one with ``dataclasses.replace``."""

    size: int = 320  # square images unless height/width are set
    min_things: int = 1
    max_things: int = 6
    min_area: int = 64  # segments with fewer visible pixels are dropped (things are then not drawn)
    min_object_frac: float = 0.005  # unoccluded thing area, fraction of the image (log-uniform in between)
    max_object_frac: float = 0.30
    cutout_prob: float = 0.25  # chance that a thing is a real object (VOC cut-out, horse) instead of a shape
    max_stuff: int = 3  # background regions (1..3)
    min_background_frac: float = 0.15  # things are removed (largest first) until this much stuff is visible
    max_expressions: int = 4
    photo_effects: bool = True  # exposure, white balance, gamma, shadows, sensor noise, occasional blur
    height: int | None = None  # override size
    width: int | None = None

    def __post_init__(self):
        if not 1 <= self.min_things <= self.max_things:
            raise ValueError(f"need 1 <= min_things <= max_things, got {self.min_things}, {self.max_things}")
        if not 0 < self.min_object_frac <= self.max_object_frac <= 1:
            raise ValueError("need 0 < min_object_frac <= max_object_frac <= 1")
        if not 1 <= self.max_stuff <= 3:
            raise ValueError(f"max_stuff must be 1, 2 or 3, got {self.max_stuff}")
        if min(self.hw) < 32:
            raise ValueError(f"images must be at least 32x32, got {self.hw}")

    @property
    def hw(self) -> tuple[int, int]:
        return (self.height or self.size, self.width or self.size)


@dataclass(frozen=True, eq=False)
class Scene:
    """One panoptic image. Segments are things first (back to front), then stuff.

    image: (H, W, 3) uint8 RGB.  masks: (N, H, W) bool, disjoint, covering every pixel.
    class_names: N names from the generator's vocabulary.  is_thing: (N,) bool.
    object_ids: (N,) int64, stable across a pair or clip: things >= 0, stuff = -1 - stuff class index.
    expressions: (text, segment index) pairs, each naming exactly one thing.
    attributes: per segment, a dict for debugging (kind, category, colour, pattern, area, size_rank, ...).
    """

    image: np.ndarray
    masks: np.ndarray
    class_names: list[str]
    is_thing: np.ndarray
    object_ids: np.ndarray
    expressions: list[tuple[str, int]]
    attributes: list[dict] = field(repr=False)

    @property
    def num_segments(self) -> int:
        return len(self.class_names)

    def segment_map(self) -> np.ndarray:
        """(H, W) int64: the segment index of every pixel."""
        return np.argmax(self.masks, axis=0)


class SceneGenerator:
    """Seeded generator of :class:`Scene` objects, pairs and clips (see the module docstring)."""

    vocabulary: tuple[str, ...] = VOCABULARY
    thing_classes: tuple[str, ...] = THING_CLASSES
    stuff_classes: tuple[str, ...] = STUFF_CLASSES

    def __init__(self, config: SceneConfig | None = None):
        self.config = config or SceneConfig()

    # -- public API ------------------------------------------------------------------------------
    def sample(self, seed: int) -> Scene:
        """One scene; the same seed gives an identical scene."""
        seed = _check_seed(seed)
        for attempt in range(_ATTEMPTS):
            rng = np.random.default_rng([seed, 0, attempt])
            bg = self._background(rng)
            things = self._things(rng, int(rng.integers(self.config.min_things, self.config.max_things + 1)))
            scene = self._compose(bg, things, self._look(rng), rng, droppable=True)
            if int(scene.is_thing.sum()) >= self.config.min_things or attempt == _ATTEMPTS - 1:
                return scene
        raise AssertionError("unreachable")

    def sample_pair(self, seed: int) -> tuple[Scene, Scene, list[tuple[int, int]]]:
        """Two scenes sharing some objects (same category, colour, fill or cut-out; new size, place and
        rotation) over different backgrounds and distractors; ``(i, j)``: segment i of the first is
        segment j of the second. At least one correspondence."""
        seed = _check_seed(seed)
        cfg = self.config
        for attempt in range(_ATTEMPTS):
            rng = np.random.default_rng([seed, 1, attempt])
            things_a = self._things(rng, int(rng.integers(cfg.min_things, cfg.max_things + 1)))
            scene_a = self._compose(self._background(rng), things_a, self._look(rng), rng, droppable=True)
            visible = set(scene_a.object_ids[scene_a.is_thing].tolist())
            pool = [t for t in things_a if t.object_id in visible]
            if not pool:
                continue
            k = int(rng.integers(1, len(pool) + 1))
            shared = [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
            moved = [self._place(rng, self._resize(rng, t), []) for t in shared]
            taken = {_identity(t) for t in shared}
            extra = self._things(rng, int(rng.integers(0, max(0, cfg.max_things - k) + 1)), first_id=1000, avoid=taken)
            things_b = [(moved + extra)[i] for i in rng.permutation(len(moved) + len(extra))]
            scene_b = self._compose(self._background(rng), things_b, self._look(rng), rng, droppable=True,
                                    protected={t.object_id for t in moved})
            pairs = [(i, j) for i in np.flatnonzero(scene_a.is_thing) for j in np.flatnonzero(scene_b.is_thing)
                     if scene_a.object_ids[i] == scene_b.object_ids[j]]
            if pairs:
                return scene_a, scene_b, [(int(i), int(j)) for i, j in pairs]
        raise RuntimeError(f"seed {seed}: no pair with a visible shared object after {_ATTEMPTS} attempts")

    def sample_clip(self, seed: int, num_frames: int = 8) -> list[Scene]:
        """``num_frames`` scenes over one fixed background: each thing moves (1-3 % of the image side per
        frame, bouncing off the borders), grows or shrinks slightly and, if a shape, turns; the drawing
        order is fixed, so objects pass in front of one another. Object ids are the same in every frame;
        a thing hidden below ``min_area`` in a frame is absent from that frame only."""
        seed = _check_seed(seed)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        h, w = self.config.hw
        rng = np.random.default_rng([seed, 2])
        bg, look = self._background(rng), self._look(rng)
        things = self._things(rng, int(rng.integers(self.config.min_things, self.config.max_things + 1)), max_frac=0.5)
        speed = rng.uniform(0.01, 0.03, size=len(things)) * min(h, w)
        heading = rng.uniform(0, 2 * np.pi, size=len(things))
        growth = np.exp(rng.uniform(-0.03, 0.03, size=len(things)))
        spin = rng.uniform(-0.08, 0.08, size=len(things))
        frames = []
        for f in range(num_frames):
            moved = [t.moved(cx=_bounce(t.cx + f * s * math.cos(a), w), cy=_bounce(t.cy + f * s * math.sin(a), h),
                             size=t.size * g**f, rotation=t.rotation + (0.0 if t.is_cutout else f * r))
                     for t, s, a, g, r in zip(things, speed, heading, growth, spin)]
            frames.append(self._compose(bg, moved, look, np.random.default_rng([seed, 2, 1, f]), droppable=False))
        return frames

    # -- sampling --------------------------------------------------------------------------------
    def _background(self, rng) -> assets.Background:
        return assets.sample_background(rng, self.config.hw, self.config.max_stuff)

    def _things(self, rng, n: int, first_id: int = 0, avoid: AbstractSet[tuple] = frozenset(), max_frac: float = 1.0) -> list[Thing]:
        out: list[Thing] = []
        while len(out) < n:
            t = self._thing(rng, first_id + len(out), max_frac)
            if _identity(t) in avoid:
                continue
            out.append(self._place(rng, t, out))
        return out

    def _thing(self, rng, object_id: int, max_frac: float) -> Thing:
        cfg = self.config
        h, w = cfg.hw
        hi = max(cfg.min_object_frac, cfg.max_object_frac * max_frac)
        size = math.sqrt(math.exp(rng.uniform(math.log(cfg.min_object_frac), math.log(hi))) * h * w)
        if rng.random() < cfg.cutout_prob:
            index = int(rng.integers(len(assets.cutouts())))
            cut = assets.cutouts()[index]
            if cut.rgb is None:
                colour = str(rng.choice(["brown", "black", "white", "gray", "brown"]))
                fill = self._fill(rng, colour, ("plain", "textured"), radius=size / 2)
            else:
                g = rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, size=3)
                gains = (float(g[0]), float(g[1]), float(g[2]))
                fill = Fill(colour=None, rgb=(0.0, 0.0, 0.0), gains=gains)
                size = min(size, _max_cutout_size(index))
            return Thing(object_id, cut.class_name, fill, 0.0, 0.0, size, flip=bool(rng.random() < 0.5), cutout=index)
        category = str(rng.choice(SHAPE_CLASSES))
        rotation = rng.uniform(-0.4, 0.4) if category == "heart" else rng.uniform(0, 2 * np.pi)
        params = sample_shape_params(category, rng)
        radius = size / math.sqrt(unit_area(category, params))
        fill = self._fill(rng, str(rng.choice(assets.COLOUR_NAMES)), PATTERNS, radius)
        return Thing(object_id, category, fill, 0.0, 0.0, size, rotation, params=params)

    @staticmethod
    def _fill(rng, colour: str, patterns: tuple[str, ...], radius: float) -> Fill:
        """A fill for a thing of ``radius`` pixels (the unit of pattern coordinates): pattern periods of at
        least 5 px and textures magnified at most 2x, so neither aliases nor turns blocky at creation size."""
        weights = np.array([{"plain": 4.0, "textured": 2.0}.get(p, 1.0) for p in patterns])
        rgb = assets.sample_colour(colour, rng)  # (3,)
        return Fill(colour=colour, rgb=(float(rgb[0]), float(rgb[1]), float(rgb[2])),
                    pattern=str(rng.choice(patterns, p=weights / weights.sum())),
                    period=max(rng.uniform(0.25, 0.6), 5.0 / radius), angle=rng.uniform(0, np.pi),
                    texture=str(rng.choice(assets.TEXTURE_NAMES)), tex_origin=(rng.uniform(0, 512), rng.uniform(0, 512)),
                    tex_density=rng.uniform(0.5, 1.5) * radius, shade=(rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.3)))

    def _place(self, rng, thing: Thing, others: list[Thing]) -> Thing:
        """A centre inside the image; up to 4 tries to keep most of the thing clear of earlier ones."""
        h, w = self.config.hw
        lo_y = 0.35 if thing.is_cutout else 0.0  # real objects stand in the lower part of the picture
        for _ in range(4):
            cand = thing.moved(cx=rng.uniform(0, w), cy=rng.uniform(lo_y, 1.0) * h)
            if all(_overlap(cand, o) < 0.5 for o in others):
                break
        return cand

    def _resize(self, rng, thing: Thing) -> Thing:
        h, w = self.config.hw
        lo, hi = math.sqrt(self.config.min_object_frac * h * w), math.sqrt(self.config.max_object_frac * h * w)
        rot = thing.rotation + (0.0 if thing.is_cutout or thing.category == "heart" else rng.uniform(-0.5, 0.5))
        if thing.is_cutout and thing.fill.colour is None:
            hi = min(hi, _max_cutout_size(thing.cutout))
        return thing.moved(size=float(np.clip(thing.size * math.exp(rng.uniform(-0.35, 0.35)), min(lo, hi), hi)), rotation=rot)

    def _look(self, rng) -> Look:
        if not self.config.photo_effects:
            return Look(np.ones(3, np.float32), 1.0, 0.0, 0.0, (0.0, 0.0, 0.0))
        gain = (rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, size=3)).astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        shadow = (0.06 * math.cos(a), 0.06 * math.sin(a), rng.uniform(0.0, 0.45) if rng.random() < 0.6 else 0.0)
        return Look(gain, rng.uniform(0.85, 1.15), rng.uniform(0.0, 0.025), rng.uniform(0.5, 1.0) if rng.random() < 0.15 else 0.0, shadow)

    # -- composition -----------------------------------------------------------------------------
    def _compose(self, bg: assets.Background, things: list[Thing], look: Look, rng, droppable: bool, protected: AbstractSet[int] = frozenset()) -> Scene:
        cfg = self.config
        h, w = cfg.hw
        renders = [render_thing(t, (h, w), rng) for t in things]
        keep = [i for i, r in enumerate(renders) if r is not None]
        while True:
            owner = owners(renders, keep, (h, w))
            visible = np.bincount(owner[owner >= 0], minlength=len(things))
            background = int((owner < 0).sum())
            tiny = [i for i in keep if visible[i] < cfg.min_area]
            if tiny:
                keep = [i for i in keep if i not in tiny]
                continue
            free = [i for i in keep if things[i].object_id not in protected]
            if droppable and free and len(keep) > 1 and background < cfg.min_background_frac * h * w:
                keep.remove(max(free, key=lambda i: visible[i]))
                continue
            break
        # Stuff regions left with a sliver are merged into the largest visible region (pixels repainted).
        label, base = bg.label.copy(), None
        counts = np.bincount(label[owner < 0], minlength=len(bg.names))
        big = int(np.argmax(counts))
        for s in np.flatnonzero((counts > 0) & (counts < cfg.min_area)):
            if s != big and counts[big] >= cfg.min_area:
                sliver = (label == s) & (owner < 0)
                label[sliver] = big
                base = bg.composite() if base is None else base
                base[sliver] = bg.layers[big][sliver]
        image = bg.composite() if base is None else base
        for i in keep:
            paint(image, renders[i], things[i].size, look)
        image = finish(image, look, rng)
        stuff_present = [s for s in range(len(bg.names)) if np.any((label == s) & (owner < 0))]
        seg = np.empty((h, w), dtype=np.int64)
        thing_slot = np.full(len(things) + 1, -1, dtype=np.int64)
        thing_slot[keep] = np.arange(len(keep))
        stuff_slot = np.full(len(bg.names), -1, dtype=np.int64)
        stuff_slot[stuff_present] = len(keep) + np.arange(len(stuff_present))
        seg[:] = np.where(owner >= 0, thing_slot[owner], stuff_slot[label])
        n = len(keep) + len(stuff_present)
        masks = seg[None] == np.arange(n)[:, None, None]
        names = [things[i].category for i in keep] + [bg.names[s] for s in stuff_present]
        ids = [things[i].object_id for i in keep] + [-1 - STUFF_CLASSES.index(bg.names[s]) for s in stuff_present]
        attrs, refs = _describe(masks, [things[i] for i in keep], names, ids, (h, w))
        return Scene(image=image, masks=masks, class_names=names, is_thing=np.arange(n) < len(keep),
                     object_ids=np.asarray(ids, dtype=np.int64), attributes=attrs,
                     expressions=referring_expressions(refs, (h, w), rng, cfg.max_expressions))


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _max_cutout_size(index: int) -> float:
    return assets.MAX_CUTOUT_ZOOM * math.sqrt(float(assets.cutouts()[index].mask.sum()))


def _identity(t: Thing):
    return ("cutout", t.cutout) if t.is_cutout and t.fill.colour is None else (t.category, t.fill.colour)


def _overlap(a: Thing, b: Thing) -> float:
    """Area of the intersection of the two things' rough boxes, over ``a``'s box."""
    ra, rb = 0.7 * a.size, 0.7 * b.size
    ix = max(0.0, min(a.cx + ra, b.cx + rb) - max(a.cx - ra, b.cx - rb))
    iy = max(0.0, min(a.cy + ra, b.cy + rb) - max(a.cy - ra, b.cy - rb))
    return ix * iy / (4 * ra * ra)


def _bounce(x: float, span: float) -> float:
    """Reflect a coordinate into [0, span] (triangle wave)."""
    x = x % (2 * span)
    return 2 * span - x if x > span else x


def _position_word(cx: float, cy: float, hw) -> str:
    v = ("top", "middle", "bottom")[min(2, int(3 * cy / hw[0]))]
    u = ("left", "center", "right")[min(2, int(3 * cx / hw[1]))]
    return "center" if (v, u) == ("middle", "center") else f"{v} {u}"


def _describe(masks, things, names, ids, hw):
    """Per-segment attribute dicts and the expression engine's view of the things."""
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    order = np.argsort(-areas[: len(things)], kind="stable")
    rank = np.empty(len(things), dtype=np.int64)
    rank[order] = np.arange(1, len(things) + 1)
    attrs, refs = [], []
    for k in range(len(masks)):
        rows, cols = np.flatnonzero(masks[k].any(axis=1)), np.flatnonzero(masks[k].any(axis=0))
        ys, xs = np.nonzero(masks[k][rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        cx, cy = float(xs.mean() + cols[0] + 0.5), float(ys.mean() + rows[0] + 0.5)
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        a = {"category": names[k], "object_id": int(ids[k]), "area": int(areas[k]), "centroid": (cx, cy),
             "bbox": box, "position": _position_word(cx, cy, hw)}
        if k < len(things):
            t = things[k]
            pattern = t.fill.pattern if t.fill.colour else None
            a.update(kind="cutout" if t.is_cutout else "shape", colour=t.fill.colour, pattern=pattern,
                     size_rank=int(rank[k]), depth=k, full_area=float(t.size**2),
                     source=assets.cutouts()[t.cutout].source if t.is_cutout else "shape")
            refs.append(Referent(k, t.category, t.fill.colour, pattern if pattern in ("striped", "dotted", "checkered") else None,
                                 not t.is_cutout, int(areas[k]), cx, cy, box))
        else:
            a.update(kind="stuff", colour=None, pattern=None)
        attrs.append(a)
    return attrs, refs
