"""``seem find``, and ``seem segment`` / ``seem panoptic`` on several images (folders, globs), with the bundled
model on generated scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from seem import SeemPredictor
from seem.cli import main
from seem.io import rle_to_mask


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from seem.data.scenes import SceneConfig, SceneGenerator

    root = tmp_path_factory.mktemp("cli_find") / "images"
    root.mkdir()
    gen = SceneGenerator(SceneConfig(size=96))
    for i in (101, 103):
        Image.fromarray(gen.sample(i).image).save(root / f"scene_{i}.png")
    return root


def _run(argv, capsys):
    code = main([str(a) for a in argv] + ["--threads", "1"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_find_writes_one_group_per_phrase_per_image(folder, tmp_path, capsys):
    code, out, err = _run(["find", folder, "--text", "person", "--text", "car", "--out", tmp_path], capsys)
    assert code == 0, err
    predictor = SeemPredictor.from_pretrained()
    found = 0
    for path in sorted(folder.iterdir()):
        info = json.loads((tmp_path / f"{path.stem}_find.json").read_text())
        assert (tmp_path / f"{path.stem}_find_overlay.png").is_file()
        predictor.set_image(np.asarray(Image.open(path).convert("RGB")))
        expected = predictor.find(["person", "car"])
        assert [g["phrase"] for g in info["phrases"]] == ["person", "car"]
        for group, exp in zip(info["phrases"], expected):
            assert len(group["instances"]) == len(exp)
            for inst, mask in zip(group["instances"], exp.masks):
                np.testing.assert_array_equal(rle_to_mask(inst["segmentation"]), mask)
            found += len(exp)
    assert found >= 1
    assert "person:" in out and "car:" in out


@pytest.mark.parametrize("extra, message", [([], "no phrase"), (["--text", "car", "--text", "Car"], "duplicate"),
                                            (["--text", "car", "--score-threshold", "2"], "[0, 1]")])
def test_find_usage_errors(folder, tmp_path, capsys, extra, message):
    code, _, err = _run(["find", folder, "--out", tmp_path, *extra], capsys)
    assert code == 2 and message in err


def test_segment_and_panoptic_take_folders_and_globs(folder, tmp_path, capsys):
    code, out, err = _run(["segment", folder, "--point", "48,48", "--format", "png,rle", "--out", tmp_path / "s"],
                          capsys)
    assert code == 0, err
    for path in folder.iterdir():
        assert (tmp_path / "s" / f"{path.stem}_mask0.png").is_file()
        assert (tmp_path / "s" / f"{path.stem}_masks.json").is_file()
    code, out, err = _run(["panoptic", str(folder / "*.png"), "--vocab", "person,car,sky", "--kind", "everything",
                           "--out", tmp_path / "p"], capsys)
    assert code == 0, err
    for path in folder.iterdir():
        info = json.loads((tmp_path / "p" / f"{path.stem}_everything.json").read_text())
        assert info["kind"] == "everything" and {s["label"] for s in info["segments"]} <= {"person", "car", "sky"}


def test_an_unreadable_image_in_a_folder_is_named_and_the_others_are_done(folder, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for path in folder.iterdir():
        (src / path.name).write_bytes(path.read_bytes())
    (src / "broken.png").write_bytes(b"not a png")
    code, out, err = _run(["find", src, "--text", "person", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "broken.png" in err and "1 of 3 images failed" in err
    assert err.count("broken.png") == 1, err  # named once
    assert len(list((tmp_path / "o").glob("*_find.json"))) == 2
    code, _, err = _run(["find", tmp_path / "nothing_here", "--text", "person"], capsys)
    assert code == 2 and "no such file" in err


def test_panoptic_everything_takes_grid_and_crop_layers(folder, tmp_path, capsys):
    path = sorted(folder.iterdir())[0]
    code, out, err = _run(["panoptic", path, "--vocab", "person,car,sky", "--kind", "everything",
                           "--points-per-side", "4", "--crop-n-layers", "1", "--out", tmp_path / "p"], capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "p" / f"{path.stem}_everything.json").read_text())
    predictor = SeemPredictor.from_pretrained()
    predictor.set_image(np.asarray(Image.open(path).convert("RGB")))
    expected = predictor.segment_everything(["person", "car", "sky"], kind="everything",
                                            config={"points_per_side": 4, "crop_n_layers": 1})
    default = predictor.segment_everything(["person", "car", "sky"], kind="everything")
    assert len(info["segments"]) == len(expected.masks) != len(default.masks)
    assert [s["area"] for s in info["segments"]] == [int(m.sum()) for m in expected.masks]
    code, out, err = _run(["panoptic", path, "--vocab", "person,car,sky", "--kind", "everything", "--points-per-side",
                           "4", "--point-decoding", "sampled", "--skip-covered-points", "--out", tmp_path / "s"], capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "s" / f"{path.stem}_everything.json").read_text())
    expected = predictor.segment_everything(["person", "car", "sky"], kind="everything", config={
        "points_per_side": 4, "point_decoding": "sampled", "skip_covered_points": True})
    assert [s["area"] for s in info["segments"]] == [int(m.sum()) for m in expected.masks]


@pytest.mark.parametrize("extra, message", [(["--crop-n-layers", "1"], "only apply to --kind everything"),
                                            (["--kind", "everything", "--crop-n-layers", "5"], "crop_n_layers"),
                                            (["--kind", "everything", "--points-per-side", "0"], "points_per_side"),
                                            (["--point-decoding", "sampled"], "only apply to --kind everything"),
                                            (["--kind", "everything", "--point-decoding", "grid"], "invalid choice")])
def test_panoptic_everything_option_errors(folder, tmp_path, capsys, extra, message):
    code, _, err = _run(["panoptic", folder, "--vocab", "person,car", *extra, "--out", tmp_path], capsys)
    assert code == 2 and message in err, err
