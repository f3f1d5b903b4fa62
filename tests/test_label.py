"""``seem label``: image sources, part files, resumption, merge into COCO files, and 2 gloo processes under
torchrun giving the same files as one process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seem.errors import ImageError
from seem.image_sources import expand_images, output_stems
from seem.labeling.distributed import Ranks, label_command, ranks_from_env
from seem.labeling.parts import PartStore

pytest.importorskip("pycocotools")
REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from seem.data.scenes import SceneConfig, SceneGenerator

    root = tmp_path_factory.mktemp("label") / "images"
    root.mkdir()
    gen = SceneGenerator(SceneConfig(size=96))
    for i in range(N_IMAGES):
        Image.fromarray(gen.sample(100 + i).image).save(root / f"scene_{i:02d}.png")
    return root


# ---------------------------------------------------------------------------------------------- sources, parts
def test_image_sources(folder, tmp_path):
    files = expand_images([folder])
    assert [p.name for p in files] == [f"scene_{i:02d}.png" for i in range(N_IMAGES)]
    assert expand_images([str(folder / "scene_0[12].png")]) == files[1:3]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images\n{files[3]}\n\n{os.path.relpath(files[0], tmp_path)}\n")
    assert expand_images([listing, files[3]]) == [files[3], files[0]]  # list order, each once
    with pytest.raises(ImageError, match="no such file"):
        expand_images([tmp_path / "missing.png"])
    with pytest.raises(ImageError, match="no image found"):
        expand_images([str(tmp_path / "*.jpg")])
    with pytest.raises(ImageError, match="more than 3 images"):
        expand_images([folder], max_images=3)
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    assert output_stems([a, b]) == ["a__x.png", "b__x.png"] and output_stems([a]) == ["x"]


def test_part_files_are_atomic_and_checked(tmp_path):
    store = PartStore(tmp_path)
    assert not store.done(0)
    store.write(0, {"id": 1, "annotations": []})
    assert store.done(0) and store.read(0) == {"id": 1, "annotations": []}
    assert [p.name for p in store.dir.iterdir()] == ["00000000.json"]  # no temporary file left
    store.path(1).write_text('{"id": 2, "annot')  # a torn file (not written by PartStore) is not done
    assert not store.done(1)


def test_ranks_from_env():
    assert ranks_from_env({}) == Ranks(0, 1)
    assert ranks_from_env({"RANK": "1", "WORLD_SIZE": "2"}) == Ranks(1, 2)
    with pytest.raises(ValueError):
        ranks_from_env({"RANK": "2", "WORLD_SIZE": "2"})


# ---------------------------------------------------------------------------------------------- labelling
def _label(args, env_extra=None, nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get(
        "PYTHONPATH", ""), **(env_extra or {})}
    cmd = label_command(nproc)
    return subprocess.run(cmd + [str(a) for a in args] + ["--threads", "1", "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=600)


def _outputs(out: Path) -> dict[str, bytes]:
    files = {"instances.json": (out / "instances.json").read_bytes(), "panoptic.json": (out / "panoptic.json").read_bytes()}
    files.update({f"panoptic/{p.name}": p.read_bytes() for p in sorted((out / "panoptic").iterdir())})
    return files


@pytest.fixture(scope="module")
def single(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    r = _label([folder, "--text", "person", "--text", "car", "--out", out])
    assert r.returncode == 0, r.stderr
    assert "images/s" in r.stdout
    return out


def test_coco_files_are_valid(single):
    from pycocotools.coco import COCO

    from seem.io import rle_to_mask

    inst = json.loads((single / "instances.json").read_text())
    assert [c["name"] for c in inst["categories"]] == ["person", "car"]
    assert [im["id"] for im in inst["images"]] == list(range(1, N_IMAGES + 1))
    assert len(inst["annotations"]) >= 1
    assert [a["id"] for a in inst["annotations"]] == list(range(1, len(inst["annotations"]) + 1))
    coco = COCO()
    coco.dataset = inst
    coco.createIndex()
    for ann in inst["annotations"]:
        assert rle_to_mask(ann["segmentation"]).sum() == ann["area"] > 0 and 0.3 <= ann["score"] <= 1
    assert len(coco.getAnnIds()) == len(inst["annotations"])
    pano = json.loads((single / "panoptic.json").read_text())
    for ann in pano["annotations"]:
        rgb = np.asarray(Image.open(single / "panoptic" / ann["file_name"])).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        assert sorted(set(np.unique(ids)) - {0}) == sorted(s["id"] for s in ann["segments_info"])
        for s in ann["segments_info"]:
            assert int((ids == s["id"]).sum()) == s["area"]


def test_two_gloo_processes_write_the_same_files(folder, single, tmp_path):
    r = _label([folder, "--text", "person", "--text", "car", "--out", tmp_path], nproc=2)
    assert r.returncode == 0, r.stderr
    assert "rank 1/2" in r.stdout and "rank 0/2" in r.stdout
    assert _outputs(tmp_path) == _outputs(single)


def test_a_killed_run_continues_and_writes_the_same_files(folder, single, tmp_path):
    import torch

    from seem import SeemPredictor
    from seem.labeling.merge import merge
    from seem.labeling.records import LabelSpec
    from seem.labeling.run import LabelJob, label_shard

    torch.set_num_threads(1)
    predictor = SeemPredictor.from_pretrained()
    job = LabelJob.create(expand_images([folder]), tmp_path, LabelSpec("text", ("person", "car"), (True, True)))

    def stop_after_two(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt  # killed after its second image
    with pytest.raises(KeyboardInterrupt):
        label_shard(predictor, job, progress=False, after_image=stop_after_two)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["00000000.json", "00000001.json"]
    stats = label_shard(predictor, job, progress=False)
    assert (stats.labelled, stats.skipped, stats.failed) == (N_IMAGES - 2, 2, 0)
    merge(job)
    assert _outputs(tmp_path) == _outputs(single)


def test_vocabulary_mode_bad_images_and_usage(folder, tmp_path):
    broken = tmp_path / "src"
    broken.mkdir()
    for p in sorted(folder.iterdir())[:2]:
        (broken / p.name).write_bytes(p.read_bytes())
    (broken / "zz_broken.png").write_bytes(b"not an image")
    r = _label([broken, "--vocab", "person,car,sky", "--format", "coco", "--out", tmp_path / "o"])
    assert r.returncode == 2 and "zz_broken.png" in r.stderr
    assert "1 images without labels" in r.stdout
    inst = json.loads((tmp_path / "o" / "instances.json").read_text())
    assert len(inst["images"]) == 2 and not (tmp_path / "o" / "panoptic.json").exists()
    r = _label([broken, "--vocab", "a,b", "--text", "car", "--out", tmp_path / "p"])
    assert r.returncode == 2 and "either --text" in r.stderr


def test_an_output_folder_is_continued_only_by_the_same_job(folder, single, tmp_path):
    """Part files are keyed by image index: a rerun with other phrases, another vocabulary or other images
    into the same folder must be refused, not mislabel or skip images; the same arguments continue it."""
    before = _outputs(single)
    for args in (["--text", "dog", "--text", "cat"], ["--vocab", "person,car"],
                 ["--text", "person", "--text", "car", "--format", "coco"]):
        r = _label([folder, *args, "--out", single])
        assert r.returncode != 0 and "other settings" in r.stderr and "another --out" in r.stderr, (args, r.stderr)
    r = _label([sorted(folder.iterdir())[0], "--text", "person", "--text", "car", "--out", single])
    assert r.returncode != 0 and "other images" in r.stderr, r.stderr
    r = _label([folder, "--text", "person", "--text", "car", "--out", single])
    assert r.returncode == 0 and f"{N_IMAGES} already done" in r.stdout, (r.stdout, r.stderr)
    assert _outputs(single) == before
    stray = tmp_path / "stray"
    (stray / "parts").mkdir(parents=True)
    (stray / "parts" / "00000000.json").write_text("{}")
    r = _label([folder, "--text", "person", "--out", stray])
    assert r.returncode != 0 and "unrecorded job" in r.stderr, r.stderr
