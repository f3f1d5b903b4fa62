"""Training draws from real photos: large-scale jitter, flips, copy-paste, and the scene engine mixed in.

Each draw is one square ``size x size`` image with its segments, in the form the training step needs
(:class:`MixedSample`). Recipes:

* **Large-scale jitter** (Ghiasi et al., CVPR 2021, "Simple Copy-Paste"): the photo is resized so its long
  side is ``size * U_log(scale_range)``, then randomly cropped or padded to ``size`` (padding is void).
* **Copy-paste**: with ``copy_paste_prob``, 1..``max_pasted`` whole objects (COCO things, CCP persons, CamVid
  cars / pedestrians / cyclists), each cut out along its mask, rescaled and flipped, are pasted on top of the
  draw; with ``background_prob`` the draw is replaced by an unlabelled ImageNet photo first, so the pasted
  objects are its only segments. Pasted objects occlude what they cover.
* **Duplicate pastes** (instance discrimination): with ``duplicate_prob`` a pasted object is pasted 2..
  ``max_copies`` times (scale jitter 0.8-1.25x, random flips), each copy its own segment. A click on one copy
  must segment that copy alone, which appearance cannot decide: the decoder has to use where the prompt is,
  not only what it looks like (a click on one person otherwise returns every person).
* **Class-agnostic objectness**: every segment of every set (whole objects, clothing parts, BSDS regions)
  can be a visual-prompt target; only labelled whole segments are object-query (generic) targets.
* **Text**: every class present (generic and part labels) becomes a phrase whose target is the union of
  that class's segments ("car" -> all cars), as the class-name grounding of SEEM's training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from seem.data.real_sets import ROLE_GENERIC, ROLE_PART, ROLE_REGION, PhotoRecord, load_set, set_class_names
from seem.errors import ConfigError

ROLE_TEXT = "text"  # a class-union mask used only as a phrase target


@dataclass(frozen=True)
class MixConfig:
    """Knobs of :class:`RealMixture`. ``weights``: ``(set name, weight)`` pairs, ``"scenes"`` = the scene
    engine; set names as in :data:`seem.data.real_sets.SET_SPECS`."""

    root: str = "../shared/datasets"
    size: int = 320
    weights: tuple[tuple[str, float], ...] = (("coco128", 0.2), ("ccp", 0.2), ("camvid", 0.2),
                                              ("bsds500", 0.3), ("scenes", 0.1))
    scale_range: tuple[float, float] = (0.6, 2.0)  # long side / size, log-uniform
    copy_paste_prob: float = 0.3
    background_prob: float = 0.4  # of the copy-paste draws: paste onto an ImageNet photo
    max_pasted: int = 3
    duplicate_prob: float = 0.0  # of the pasted objects: paste 2..max_copies identical copies
    max_copies: int = 3
    min_area: int = 12  # segments smaller than this (pixels, after augmentation) are dropped
    # photometric jitter of real-photo draws (brightness, contrast, saturation each x exp(U(-a, a)), gamma),
    # probability per draw; 0 keeps the draws of earlier configs bit for bit
    color_jitter_prob: float = 0.0
    color_jitter_strength: float = 0.3
    val_fraction: float = 0.1
    limit_per_set: int | None = None


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> jittered uint8: brightness, contrast (about the mean grey), saturation (about each
    pixel's grey) each scaled by ``exp(U(-strength, strength))``, then gamma ``exp(U(-strength, strength) / 2)``,
    in a random order of the first three (as torchvision's ``ColorJitter``; RITM trains with such jitter). Masks
    do not change."""
    x = image.astype(np.float32) / 255.0
    factors = np.exp(rng.uniform(-strength, strength, 3))
    for op in rng.permutation(3):
        grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if op == 0:
            x = x * factors[0]
        elif op == 1:
            x = (x - grey.mean()) * factors[1] + grey.mean()
        else:
            x = (x - grey[..., None]) * factors[2] + grey[..., None]
        x = np.clip(x, 0.0, 1.0)
    x = x ** float(np.exp(rng.uniform(-strength, strength) / 2))
    return (x * 255.0 + 0.5).astype(np.uint8)


@dataclass
class MixedSample:
    """One training draw. ``masks`` ``(N, S, S)`` bool; ``roles[i]`` in generic / part / region / text."""

    image: np.ndarray
    masks: np.ndarray
    class_names: list[str]
    roles: list[str]
    expressions: list[tuple[str, int]] = field(default_factory=list)
    vocabulary: tuple[str, ...] = ()  # class names the generic labels of this draw are scored against


def _resize(arr: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    h, w = hw
    if arr.ndim == 2:
        img = Image.fromarray(arr.astype(np.int32), mode="I")
        return np.asarray(img.resize((w, h), Image.Resampling.NEAREST), dtype=np.int32).astype(arr.dtype)
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR))


class RealMixture:
    """Seeded training draws over the real sets (and the scene engine); ``mixture.sample(seed)``.

    Photos are read once at construction (a few hundred MB for all sets). The same seed gives the same draw.

    Raises:
        ConfigError: a set is missing or unknown, or weights are not positive.
    """

    def __init__(self, config: MixConfig, split: str = "train") -> None:
        self.config = config
        names = [n for n, _ in config.weights]
        weights = np.array([w for _, w in config.weights], dtype=np.float64)
        if not len(names) or (weights <= 0).any():
            raise ConfigError(f"mixture weights must be positive, got {config.weights}")
        self.set_names = names
        self.probs = weights / weights.sum()
        self.records: dict[str, list[PhotoRecord]] = {}
        self.set_vocab: dict[str, tuple[str, ...]] = {}  # generic (object-query) classes per set
        self.text_vocab: dict[str, tuple[str, ...]] = {}  # every class name per set (generic and parts)
        for name in names:
            if name == "scenes":
                continue
            recs = load_set(config.root, name, split, config.val_fraction, config.limit_per_set)
            if not recs:
                raise ConfigError(f"training set {name} has no {split} photos under {config.root}")
            self.records[name] = recs
            self.set_vocab[name] = set_class_names(recs, (ROLE_GENERIC,))
            self.text_vocab[name] = set_class_names(recs)
        self.scenes = None
        if "scenes" in names:
            from seem.data.scenes import SceneConfig, SceneGenerator

            self.scenes = SceneGenerator(SceneConfig(size=config.size))
            self.set_vocab["scenes"] = self.text_vocab["scenes"] = tuple(self.scenes.vocabulary)
        self.paste_pool = [(r, li, k) for recs in self.records.values() for r in recs
                           for li, layer in enumerate(r.layers) if layer.role == ROLE_GENERIC
                           for k in range(len(layer.names)) if layer.is_thing[k]]
        self.backgrounds = self._background_paths(Path(config.root) / "imagenet_samples")
        vocab: list[str] = []
        for name in names:
            vocab += [v for v in self.text_vocab.get(name, ()) if v not in vocab]
        self.vocabulary = tuple(vocab)

    @staticmethod
    def _background_paths(folder: Path) -> list[Path]:
        """The photos under ``folder/images`` (``images.json`` only lists them; its layout is not relied on)."""
        if not (folder / "images").is_dir():
            return []
        return sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))

    # ------------------------------------------------------------------ draws
    def sample(self, seed: int) -> MixedSample:
        rng = np.random.default_rng([int(seed), 7])
        name = self.set_names[int(rng.choice(len(self.set_names), p=self.probs))]
        if name == "scenes":
            return self._scene(int(seed), rng)
        records = self.records[name]
        paste = self.paste_pool and rng.random() < self.config.copy_paste_prob
        if paste and self.backgrounds and rng.random() < self.config.background_prob:
            out = self._background(rng)
        else:
            out = self._photo(records[int(rng.integers(len(records)))], rng)
            out.vocabulary = self.set_vocab[name]
        if paste:
            for _ in range(int(rng.integers(1, self.config.max_pasted + 1))):
                self._paste(out, rng)
        if self.config.color_jitter_prob > 0 and rng.random() < self.config.color_jitter_prob:
            out.image = color_jitter(out.image, self.config.color_jitter_strength, rng)
        return self._finish(out)

    def _scene(self, seed: int, rng: np.random.Generator) -> MixedSample:
        assert self.scenes is not None  # "scenes" is drawn only when it was one of the configured sets
        scene = self.scenes.sample(seed)
        return MixedSample(scene.image, scene.masks, list(scene.class_names), [ROLE_GENERIC] * scene.num_segments,
                           list(scene.expressions), self.set_vocab["scenes"])

    def _jitter_geometry(self, hw: tuple[int, int], rng: np.random.Generator):
        s = self.config.size
        lo, hi = self.config.scale_range
        scale = s / max(hw) * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        nh, nw = max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))
        y0, x0 = int(rng.integers(0, max(nh - s, 0) + 1)), int(rng.integers(0, max(nw - s, 0) + 1))
        ch, cw = min(nh, s), min(nw, s)
        oy, ox = int(rng.integers(0, s - ch + 1)), int(rng.integers(0, s - cw + 1))
        return (nh, nw), (y0, x0, ch, cw), (oy, ox), bool(rng.random() < 0.5)

    def _place(self, arr: np.ndarray, geom, fill) -> np.ndarray:
        (nh, nw), (y0, x0, ch, cw), (oy, ox), flip = geom
        s = self.config.size
        resized = _resize(arr, (nh, nw), nearest=arr.ndim == 2)[y0 : y0 + ch, x0 : x0 + cw]
        out = np.full((s, s) + arr.shape[2:], fill, dtype=arr.dtype)
        out[oy : oy + ch, ox : ox + cw] = resized
        return out[:, ::-1].copy() if flip else out

    def _photo(self, record: PhotoRecord, rng: np.random.Generator) -> MixedSample:
        layers = record.layers
        if record.alternatives:  # one annotator's map of the photo
            layers = (layers[int(rng.integers(len(layers)))],)
        geom = self._jitter_geometry(record.image.shape[:2], rng)
        image = self._place(record.image, geom, 0)
        masks, names, roles = [], [], []
        for layer in layers:
            index = self._place(layer.index, geom, -1)
            for k in range(len(layer.names)):
                m = index == k
                if m.any():
                    masks.append(m)
                    names.append(layer.names[k] if layer.role != ROLE_REGION else "region")
                    roles.append(layer.role)
        s = self.config.size
        stack = np.stack(masks) if masks else np.zeros((0, s, s), dtype=bool)
        return MixedSample(image, stack, names, roles)

    def _background(self, rng: np.random.Generator) -> MixedSample:
        path = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        with Image.open(path) as im:
            photo = np.asarray(im.convert("RGB"))
        geom = self._jitter_geometry(photo.shape[:2], rng)
        s = self.config.size
        return MixedSample(self._place(photo, geom, 0), np.zeros((0, s, s), dtype=bool), [], [])

    def _paste(self, out: MixedSample, rng: np.random.Generator) -> None:
        record, li, k = self.paste_pool[int(rng.integers(len(self.paste_pool)))]
        layer = record.layers[li]
        obj = layer.index == k
        rows, cols = np.flatnonzero(obj.any(1)), np.flatnonzero(obj.any(0))
        if rows.size == 0:
            return
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        s = self.config.size
        side = s * float(np.exp(rng.uniform(np.log(0.08), np.log(0.8))))
        # at most 2x: a small annotation blown up further pastes its polygon's blocky outline
        scale = min(side / max(r1 - r0, c1 - c0), 2.0)
        copies = 1
        if self.config.duplicate_prob > 0 and rng.random() < self.config.duplicate_prob:
            copies = int(rng.integers(2, max(self.config.max_copies, 2) + 1))
        crop, cut = record.image[r0:r1, c0:c1], obj[r0:r1, c0:c1].astype(np.uint8)
        for c in range(copies):
            jitter = 1.0 if c == 0 else float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
            self._paste_one(out, crop, cut, scale * jitter, layer.names[k], rng)

    def _paste_one(self, out: MixedSample, crop: np.ndarray, cut: np.ndarray, scale: float, name: str,
                   rng: np.random.Generator) -> None:
        """Paste the cut-out ``crop`` (its mask ``cut``) rescaled by ``scale`` at a random place, maybe flipped."""
        s = self.config.size
        h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
        if h > s or w > s:
            return
        patch = _resize(crop, (h, w), nearest=False)
        mask = _resize(cut, (h, w), nearest=True).astype(bool)
        if rng.random() < 0.5:
            patch, mask = patch[:, ::-1], mask[:, ::-1]
        y, x = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
        full = np.zeros((s, s), dtype=bool)
        full[y : y + h, x : x + w] = mask
        if not full.any():
            return
        region = out.image[y : y + h, x : x + w]
        region[mask] = patch[mask]
        out.masks = np.concatenate([out.masks & ~full, full[None]])
        out.class_names.append(name)
        out.roles.append(ROLE_GENERIC)
        if name not in out.vocabulary:
            out.vocabulary = tuple(out.vocabulary) + (name,)

    def _finish(self, out: MixedSample) -> MixedSample:
        keep = [i for i in range(len(out.roles)) if int(out.masks[i].sum()) >= self.config.min_area]
        masks = out.masks[keep]
        names = [out.class_names[i] for i in keep]
        roles = [out.roles[i] for i in keep]
        expressions = []
        for cls in sorted({n for n, r in zip(names, roles) if r in (ROLE_GENERIC, ROLE_PART)}):
            union = np.zeros(masks.shape[1:], dtype=bool)
            for m, n, r in zip(masks, names, roles):
                if n == cls and r in (ROLE_GENERIC, ROLE_PART):
                    union |= m
            expressions.append((cls, len(names)))
            masks = np.concatenate([masks, union[None]])
            names.append(cls)
            roles.append(ROLE_TEXT)
        vocab = tuple(out.vocabulary) or tuple(sorted({n for n, r in zip(names, roles) if r == ROLE_GENERIC}))
        return MixedSample(out.image, masks, names, roles, expressions, vocab)


__all__ = ["MixConfig", "MixedSample", "RealMixture", "ROLE_GENERIC", "ROLE_PART", "ROLE_REGION", "ROLE_TEXT"]
