"""The synthetic scene engine (seem.data): determinism, panoptic masks, expressions, pairs, clips, prompts."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import numpy as np
import pytest

from seem.data.assets import COLOUR_NAMES
from seem.data.expressions import Referent, referring_expressions
from seem.data.scenes import SceneConfig, SceneGenerator
from seem.data.shapes import PATTERNS, PROMPT_KINDS, PROMPT_SAMPLERS, sample_box, sample_point, sample_prompt

GEN = SceneGenerator(SceneConfig(size=160))  # small images keep the suite fast; logic is size-independent
SEEDS = range(12)


def _digest(scene) -> str:
    h = hashlib.sha256()
    for a in (scene.image, scene.masks, scene.object_ids):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((scene.class_names, scene.expressions)).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scenes():
    return {seed: GEN.sample(seed) for seed in SEEDS}


def test_same_seed_same_scene_in_new_generator(scenes):
    again = SceneGenerator(SceneConfig(size=160)).sample(3)
    assert _digest(again) == _digest(scenes[3])
    assert _digest(scenes[3]) != _digest(scenes[4])


def test_same_seed_same_scene_in_another_process_and_lazy_imports(scenes):
    code = (
        "import sys, hashlib, numpy as np\n"
        "from seem.data.scenes import SceneConfig, SceneGenerator\n"
        "import seem.data.shapes, seem.data.expressions\n"
        "print(any(m in sys.modules for m in ('skimage', 'imgviz', 'scipy')))\n"
        "s = SceneGenerator(SceneConfig(size=160)).sample(3)\n"
        "h = hashlib.sha256()\n"
        "for a in (s.image, s.masks, s.object_ids): h.update(np.ascontiguousarray(a).tobytes())\n"
        "h.update(repr((s.class_names, s.expressions)).encode())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", _digest(scenes[3])]


def test_masks_partition_the_image(scenes):
    for scene in scenes.values():
        n = scene.num_segments
        assert scene.image.shape == (160, 160, 3) and scene.image.dtype == np.uint8
        assert scene.masks.shape == (n, 160, 160) and scene.masks.dtype == bool
        assert (scene.masks.sum(axis=0) == 1).all()
        assert scene.masks.reshape(n, -1).sum(axis=1).min() >= GEN.config.min_area
        assert len(scene.class_names) == len(scene.attributes) == n == len(scene.is_thing) == len(scene.object_ids)
        assert set(scene.class_names) <= set(GEN.vocabulary)
        assert [c in GEN.thing_classes for c in scene.class_names] == scene.is_thing.tolist()
        assert (scene.object_ids[scene.is_thing] >= 0).all() and (scene.object_ids[~scene.is_thing] < 0).all()
        assert not scene.is_thing[-1]  # there is always visible background
        assert len(set(np.asarray(scene.class_names)[~scene.is_thing])) == int((~scene.is_thing).sum())  # one segment per stuff class


def test_vocabulary_is_stable_and_complete():
    assert len(set(GEN.vocabulary)) == len(GEN.vocabulary)
    assert GEN.vocabulary[: len(GEN.thing_classes)] == GEN.thing_classes
    for name in ("circle", "star", "ring", "person", "chair", "bottle", "table", "sky", "grass", "wall", "water", "road"):
        assert name in GEN.vocabulary


def test_sizes_colours_and_content_vary(scenes):
    fracs = [a["full_area"] / 160**2 for s in scenes.values() for a, t in zip(s.attributes, s.is_thing) if t]
    assert min(fracs) >= GEN.config.min_object_frac * 0.99 and max(fracs) <= GEN.config.max_object_frac * 1.01
    assert max(fracs) / min(fracs) > 10
    colours = {a["colour"] for s in scenes.values() for a in s.attributes if a.get("colour")}
    assert len(colours) >= 5
    assert len({c for s in scenes.values() for c in s.class_names}) >= 12


def _matches(words: list[str], a: dict) -> bool:
    """Does a thing's attribute dict fit a plain description like ["red", "striped", "star"]?"""
    *adjs, noun = words
    if noun in ("object", "thing", "item"):
        pass
    elif noun == "shape":
        if a["kind"] != "shape":
            return False
    elif noun != a["category"]:
        return False
    return all(w in (a["colour"], a["pattern"]) for w in adjs)


def test_expressions_name_exactly_one_thing(scenes):
    gen = SceneGenerator(SceneConfig(size=128))
    checked = 0
    for scene in list(scenes.values()) + [gen.sample(seed) for seed in range(40)]:
        texts = [t for t, _ in scene.expressions]
        assert 1 <= len(texts) <= GEN.config.max_expressions and len(set(texts)) == len(texts)
        things = [a for a, t in zip(scene.attributes, scene.is_thing) if t]
        for text, i in scene.expressions:
            assert 0 <= i < scene.num_segments and scene.is_thing[i]
            plain = re.fullmatch(r"(?:the )?([a-z ]+?)(?: in the (?:picture|image))?", text)
            words = plain.group(1).split() if plain else []
            if words and words[-1] in set(GEN.thing_classes) | {"object", "thing", "item", "shape"} and all(
                w in COLOUR_NAMES or w in PATTERNS for w in words[:-1]
            ):  # a plain description: it must fit the referent and nothing else
                fits = [a for a in things if _matches(words, a)]
                assert fits == [scene.attributes[i]], (text, [a["category"] for a in fits])
                checked += 1
    assert checked >= 10


def test_expression_engine_on_a_hand_made_layout():
    def ref(i, cat, colour, cx, cy, area=400):
        r = area**0.5 / 2
        return Referent(i, cat, colour, None, True, area, cx, cy, (cx - r, cy - r, cx + r, cy + r))

    refs = [ref(0, "circle", "red", 30, 100), ref(1, "circle", "red", 170, 100), ref(2, "circle", "blue", 100, 40, 1600)]
    seen: dict[str, int] = {}
    for seed in range(30):
        for text, i in referring_expressions(refs, (200, 200), np.random.default_rng(seed), max_count=4):
            seen[text] = i
    assert "the red circle" not in seen and "the circle" not in seen  # ambiguous
    assert seen.get("the blue circle") == 2
    assert seen.get("the red circle on the left") == 0
    assert seen.get("the rightmost red circle", 1) == 1 and seen.get("the largest circle", 2) == 2


def test_pairs_share_object_identity():
    for seed in range(3):
        a, b, pairs = GEN.sample_pair(seed)
        assert pairs and not np.array_equal(a.image, b.image)
        for i, j in pairs:
            assert a.is_thing[i] and b.is_thing[j] and a.object_ids[i] == b.object_ids[j]
            assert a.class_names[i] == b.class_names[j]
            for key in ("colour", "pattern", "source"):
                assert a.attributes[i][key] == b.attributes[j][key]
        assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
        assert _digest(GEN.sample_pair(seed)[1]) == _digest(b)


def test_clip_ids_are_stable_and_objects_move():
    clip = GEN.sample_clip(5, num_frames=4)
    assert len(clip) == 4
    first = {int(oid): j for j, oid in enumerate(clip[0].object_ids)}
    moved = False
    for frame in clip[1:]:
        assert (frame.masks.sum(axis=0) == 1).all()
        stuff = [c for c, t in zip(frame.class_names, frame.is_thing) if not t]
        assert set(stuff) <= set(clip[0].class_names)
        for k, oid in enumerate(frame.object_ids):
            if frame.is_thing[k] and int(oid) in first:
                j = first[int(oid)]
                assert frame.class_names[k] == clip[0].class_names[j]
                moved |= not np.array_equal(frame.masks[k], clip[0].masks[j])
    assert moved


@pytest.fixture(scope="module")
def prompt_masks(scenes):
    one = np.zeros((40, 40), bool)
    one[0, 39] = True
    line = np.zeros((40, 40), bool)
    line[20, 3:30] = True
    return [scenes[1].masks[0], scenes[2].masks[-1], one, line]


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_prompt_samplers_stay_inside(kind, prompt_masks):
    rng = np.random.default_rng(0)
    for mask in prompt_masks:
        region = PROMPT_SAMPLERS[kind](mask, rng)
        assert region.shape == mask.shape and region.dtype == bool and region.any()
        box = sample_box(mask)
        assert not (region & ~box).any()
        if kind in ("point", "scribble", "circle"):
            assert not (region & ~mask).any()
        with pytest.raises(ValueError):
            PROMPT_SAMPLERS[kind](np.zeros_like(mask), rng)


def test_prompt_helpers():
    mask = np.zeros((30, 30), bool)
    mask[5:20, 8:12] = True
    assert (sample_box(mask) == mask).all()
    rng = np.random.default_rng(1)
    single = sample_point(mask, rng, max_points=1)
    assert 1 <= single.sum() <= 9
    assert sample_prompt(mask, rng, kinds=("box",)).sum() == mask.sum()
    with pytest.raises(ValueError):
        sample_prompt(mask, rng, kinds=("lasso",))
    with pytest.raises(ValueError):
        sample_point(np.zeros((4, 4, 1), bool), rng)


def test_config_and_seed_validation():
    with pytest.raises(ValueError):
        SceneConfig(min_things=3, max_things=2)
    with pytest.raises(ValueError):
        GEN.sample(-1)
    with pytest.raises(ValueError):
        GEN.sample(1.5)
    scene = SceneGenerator(SceneConfig(height=96, width=128, photo_effects=False, max_things=2)).sample(0)
    assert scene.image.shape == (96, 128, 3) and (scene.masks.sum(axis=0) == 1).all()


def test_seem_tiny_vocabulary_covers_the_scene_vocabulary():
    """seem_tiny still trains on scenes: their classes (and thing flags) are part of its label space."""
    from seem.data.scenes import SceneConfig, SceneGenerator
    from seem.registry import SEEM_TINY

    gen = SceneGenerator(SceneConfig())
    assert set(gen.vocabulary) <= set(SEEM_TINY.default_vocabulary)
    assert set(gen.thing_classes) <= set(SEEM_TINY.default_thing_classes)
    assert len(set(SEEM_TINY.default_vocabulary)) == len(SEEM_TINY.default_vocabulary) == 164
