"""Real-photo training data: set roles, the fixed validation split, jitter / copy-paste draws, a mixed step."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from seem.data.real_mix import (
    ROLE_GENERIC,
    ROLE_PART,
    ROLE_REGION,
    ROLE_TEXT,
    MixConfig,
    RealMixture,
    color_jitter,
)
from seem.data.real_sets import is_validation, load_set
from seem.errors import ConfigError
from seem.train.pack import PackedSamples

H, W = 48, 64


def _write_set(root, folder, json_name, png_dir, photos, categories):
    """photos: {stem: [(category_id, (y0, y1, x0, x1)), ...]} -> a COCO panoptic set under root/folder."""
    base = root / folder
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / png_dir).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for k, (stem, segs) in enumerate(sorted(photos.items())):
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(base / "images" / f"{stem}.png")
        ids = np.zeros((H, W, 3), dtype=np.uint8)
        info = []
        for j, (cid, (y0, y1, x0, x1)) in enumerate(segs):
            ids[y0:y1, x0:x1, 0] = j + 1
            info.append({"id": j + 1, "category_id": cid, "iscrowd": 0})
        Image.fromarray(ids).save(base / png_dir / f"{stem}.png")
        images.append({"id": stem, "file_name": f"{stem}.png", "width": W, "height": H})
        annotations.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": info})
    (base / json_name).write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


@pytest.fixture()
def root(tmp_path):
    things = [{"id": 1, "name": "dog", "isthing": 1}, {"id": 2, "name": "cup", "isthing": 1}]
    stems = [f"c{i:02d}" for i in range(12)]
    _write_set(tmp_path, "coco128", "panoptic_train.json", "panoptic_train",
               {s: [(1, (4, 30, 4, 30)), (2, (30, 44, 40, 60))] for s in stems}, things)
    person = [{"id": 1, "name": "person", "isthing": 1}]
    parts = [{"id": 1, "name": "hair", "isthing": 1}, {"id": 2, "name": "jeans", "isthing": 1}]
    _write_set(tmp_path, "ccp", "panoptic_person.json", "panoptic_person", {"p0": [(1, (2, 46, 10, 40))]}, person)
    _write_set(tmp_path, "ccp", "panoptic_parts.json", "panoptic_parts",
               {"p0": [(1, (2, 10, 10, 40)), (2, (30, 46, 10, 25)), (2, (30, 46, 28, 40))]}, parts)
    region = [{"id": 1, "name": "region", "isthing": 1}]
    _write_set(tmp_path, "bsds500", "panoptic_all.json", "panoptic_all",
               {"b0": [(1, (0, 24, 0, 64)), (1, (24, 48, 0, 64))]}, region)
    return tmp_path


def test_ccp_layers_and_validation_split_are_disjoint(root):
    ccp = load_set(root, "ccp", "all")
    assert len(ccp) == 1 and [layer.role for layer in ccp[0].layers] == [ROLE_GENERIC, ROLE_PART]
    assert ccp[0].layers[1].names == ("hair", "jeans", "jeans")
    assert int((ccp[0].layers[1].index == 2).sum()) == 16 * 12  # the second jeans component
    train = {r.key for r in load_set(root, "coco128", "train", val_fraction=0.5)}
    val = {r.key for r in load_set(root, "coco128", "val", val_fraction=0.5)}
    assert train and val and not (train & val) and len(train | val) == 12
    assert all(is_validation(k, 0.5) for k in val)
    with pytest.raises(ConfigError, match="unknown training set"):
        load_set(root, "nope")


def test_draws_are_seeded_square_and_carry_roles(root):
    mix = RealMixture(MixConfig(root=str(root), size=64, weights=(("ccp", 1.0),), copy_paste_prob=0.0,
                                scale_range=(1.0, 1.0), val_fraction=0.0))
    a, b = mix.sample(3), mix.sample(3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert a.image.shape == (64, 64, 3) and a.masks.shape[1:] == (64, 64)
    assert a.vocabulary == ("person",)  # only whole persons are object-query classes in CCP
    assert set(mix.vocabulary) == {"person", "hair", "jeans"}
    assert a.roles.count(ROLE_GENERIC) == 1 and a.roles.count(ROLE_PART) == 3
    # "jeans" as text targets the union of both components
    phrase = dict(a.expressions)["jeans"]
    assert a.roles[phrase] == ROLE_TEXT and a.roles[a.class_names.index("person")] == ROLE_GENERIC
    parts = [m for m, n, r in zip(a.masks, a.class_names, a.roles) if n == "jeans" and r == ROLE_PART]
    assert np.array_equal(a.masks[phrase], parts[0] | parts[1])


def test_color_jitter_changes_pixels_not_masks_and_is_seeded(root):
    base = MixConfig(root=str(root), size=64, weights=(("ccp", 1.0),), copy_paste_prob=0.0, val_fraction=0.0)
    plain, jittered = RealMixture(base), RealMixture(replace(base, color_jitter_prob=1.0))
    a, b, c = plain.sample(5), jittered.sample(5), jittered.sample(5)
    assert np.array_equal(a.masks, b.masks) and a.class_names == b.class_names
    assert not np.array_equal(a.image, b.image) and np.array_equal(b.image, c.image)
    assert b.image.dtype == np.uint8
    # strength 0: every factor is 1, so the photo comes back (up to rounding)
    img = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    same = color_jitter(img, 0.0, np.random.default_rng(1))
    assert np.abs(same.astype(int) - img).max() <= 1
    # a draw that was not jittered is bit-identical to a config without jitter (old configs reproduce)
    assert np.array_equal(RealMixture(replace(base, color_jitter_prob=0.0)).sample(5).image, a.image)


def test_bsds_regions_are_class_agnostic_and_copy_paste_adds_objects(root):
    mix = RealMixture(MixConfig(root=str(root), size=64, weights=(("bsds500", 1.0), ("coco128", 1e-9)),
                                copy_paste_prob=1.0, background_prob=0.0, val_fraction=0.0))
    draws = [mix.sample(s) for s in range(20)]
    for d in draws:
        assert ROLE_REGION in d.roles or ROLE_GENERIC in d.roles
        pasted = [n for n, r in zip(d.class_names, d.roles) if r == ROLE_GENERIC]
        assert set(pasted) <= set(d.vocabulary) <= {"dog", "cup"}
        visible = d.masks[[r != ROLE_TEXT for r in d.roles]]
        assert visible.sum(0).max() <= 1  # pasted objects occlude what they cover: no overlaps
    assert any(ROLE_GENERIC in d.roles for d in draws)


def test_duplicate_pastes_are_separate_same_looking_segments(root):
    mix = RealMixture(MixConfig(root=str(root), size=64, weights=(("coco128", 1.0),), copy_paste_prob=1.0,
                                background_prob=1.0, max_pasted=1, duplicate_prob=1.0, max_copies=3,
                                val_fraction=0.0))
    mix.backgrounds = [root / "coco128" / "images" / "c00.png"]  # an unlabelled photo: the copies are all there is
    counts = []
    for seed in range(12):
        d = mix.sample(seed)
        generic = [i for i, r in enumerate(d.roles) if r == ROLE_GENERIC]
        counts.append(len(generic))
        assert len({d.class_names[i] for i in generic}) <= 1  # copies of one object
        assert d.masks[generic].sum(0).max() <= 1  # each copy its own segment; later ones occlude earlier ones
        phrase = dict(d.expressions).get(d.class_names[generic[0]]) if generic else None
        if phrase is not None:  # the class phrase targets every copy
            assert np.array_equal(d.masks[phrase], d.masks[generic].any(0))
    assert max(counts) >= 2 and min(counts) >= 1
    single = RealMixture(MixConfig(root=str(root), size=64, weights=(("coco128", 1.0),), copy_paste_prob=1.0,
                                   background_prob=1.0, max_pasted=1, val_fraction=0.0))
    single.backgrounds = mix.backgrounds
    assert all(single.sample(s).roles.count(ROLE_GENERIC) <= 1 for s in range(12))


def test_one_mixed_training_step_runs_and_skips_generic_for_regions(root, tmp_path):
    from dataclasses import replace

    from seem.train.engine import Trainer

    from test_train import tiny_model_config, train_config

    config = replace(train_config(tmp_path, steps=2), data="mix", data_root=str(root),
                     mix_weights=(("bsds500", 1.0), ("ccp", 1.0)), copy_paste_prob=0.5)
    trainer = Trainer(config, log=lambda *_: None, model_config=tiny_model_config())
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n.startswith("decoder.")}
    parts = trainer.train_step()
    assert np.isfinite(parts["loss"]) and parts["loss"] > 0
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if n in before)


def test_a_draw_without_segments_has_no_prompt_targets():
    from seem.train.step import TrainSample

    empty = TrainSample(np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8, 8), bool), np.zeros(0, np.int64), [],
                        generic=np.zeros(0, bool), promptable=np.zeros(0, bool))
    assert empty.prompt_index().size == 0 and empty.generic_index().size == 0


def test_pack_then_continue_training_for_minutes_writes_loadable_shards(root, tmp_path):
    """The lent-GPU path end to end, on the CPU: `seem train-pack` draws the mixture into a file, `seem
    train-continue` trains the bundled model from it for a few seconds and writes size-bounded shards that
    merge into weights which differ from the bundled ones and load into the model strictly."""
    from importlib import resources

    from seem.checkpoint import read_checkpoint
    from seem.cli import main
    from seem.train.export import export_checkpoint
    from seem.train.shards import INDEX

    mix_cfg = tmp_path / "mix.json"
    mix_cfg.write_text(json.dumps({"data": "mix", "data_root": str(root), "image_size": 64,
                                   "mix_weights": [["ccp", 1.0], ["coco128", 1.0]], "copy_paste_prob": 0.0}))
    assert main(["train-pack", str(mix_cfg), "--out", str(tmp_path / "p.npz"), "--max-mib", "0.2"]) == 0
    pack = PackedSamples(tmp_path / "p.npz")
    assert len(pack) >= 5 and pack.size == 64 and (tmp_path / "p.npz").stat().st_size <= 0.2 * (1 << 20)

    run_cfg = tmp_path / "run.json"
    run_cfg.write_text(json.dumps({"batch_size": 1, "steps": 100000, "max_objects": 2, "max_sentences": 1,
                                   "max_rounds": 1, "num_points": 256, "warmup_steps": 1, "milestones": [],
                                   "threads": 1, "checkpoint_every": 1000}))
    shards = tmp_path / "shards"
    assert main(["train-continue", "--pack", str(tmp_path / "p.npz"), "--config", str(run_cfg), "--minutes",
                 "0.02", "--device", "cpu", "--out-dir", str(tmp_path / "run"), "--shards", str(shards),
                 "--shard-mib", "12"]) == 0
    files = sorted(shards.glob("model-*.safetensors"))
    assert len(files) >= 2 and all(f.stat().st_size <= 12 << 20 for f in files) and (shards / INDEX).is_file()
    merged = read_checkpoint(export_checkpoint(shards, tmp_path / "merged.safetensors"))
    bundled = read_checkpoint(resources.files("seem") / "assets" / "seem_tiny.safetensors")
    # training drops the bundle's candidate, box and grounding scorers (fitted to its queries): their trainers fit anew
    from seem.candidates import SCORER_PREFIXES

    assert list(merged) == [k for k in bundled if not k.startswith(SCORER_PREFIXES)]
    changed = [k for k in merged if not torch.equal(merged[k].float(), bundled[k].float())]
    assert changed and any(k.startswith("decoder.") for k in changed)
    from seem import from_pretrained

    assert from_pretrained(str(tmp_path / "merged.safetensors")) is not None  # strict load


def test_pack_and_continue_refuse_bad_options_before_any_work(tmp_path, capsys):
    """Options that would only fail after drawing or training (an --out folder, a shard smaller than the
    largest tensor, a --shards file, a missing pack, NaN minutes, an unknown device) fail first, by name."""
    from seem.cli import main

    cfg = tmp_path / "mix.json"
    cfg.write_text(json.dumps({"data": "mix", "data_root": str(tmp_path / "no-data")}))
    assert main(["train-pack", str(cfg), "--out", str(tmp_path)]) != 0
    assert "--out" in capsys.readouterr().err
    pack = tmp_path / "p.npz"
    pack.write_bytes(b"")
    (tmp_path / "file").write_text("")
    for extra, needle in ((["--shard-mib", "1"], "token_embedding"), (["--shards", str(tmp_path / "file")], "--shards"),
                          (["--pack", str(tmp_path / "none.npz")], "--pack")):
        argv = ["train-continue", "--pack", str(pack), "--shards", str(tmp_path / "s"), "--out-dir",
                str(tmp_path / "run"), *extra]
        assert main(argv) != 0
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "run").exists()
    for bad in (["--minutes", "nan"], ["--device", "bogus"], ["--shard-mib", "-1"]):
        assert main(["train-continue", "--pack", str(pack), "--shards", str(tmp_path / "s"), *bad]) == 2
        assert f"argument {bad[0]}" in capsys.readouterr().err
