"""The `seem` CLI end to end with real weights (the parity-fixture checkpoint) and real files."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from seem.cli import main
from seem.io import rle_to_mask

from _fixture import fixture_dir, require_fixture


@pytest.fixture(scope="module")
def model_path():
    require_fixture()
    return str(fixture_dir() / "model.safetensors")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    require_fixture()
    path = tmp_path_factory.mktemp("img") / "zebras.png"
    Image.open(fixture_dir() / "image1.png").convert("RGB").save(path)
    return path


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_segment_click_writes_png_rle_polygon_overlay(model_path, photo, tmp_path, capsys):
    code, out, err = _run(["segment", photo, "--model", model_path, "--point", "182,123", "--vocab", "zebra,grass,sky",
                           "--format", "png,rle,polygon,overlay", "--out", tmp_path], capsys)
    assert code == 0, err
    png = np.asarray(Image.open(tmp_path / "zebras_mask0.png")) > 0
    assert png.shape == (224, 416) and png.any()
    rle = json.loads((tmp_path / "zebras_masks.json").read_text())
    record = rle[0] if isinstance(rle, list) else rle["annotations"][0]
    assert np.array_equal(rle_to_mask(record["segmentation"]), png)
    assert record["category_name"] in ("zebra", "grass", "sky") or record.get("label") in ("zebra", "grass", "sky")
    assert (tmp_path / "zebras_overlay.png").is_file() and (tmp_path / "zebras_polygons.json").is_file()
    assert "mask 0" in out


def test_reference_text_and_panoptic(model_path, photo, tmp_path, capsys):
    region = np.zeros((224, 416), dtype=np.uint8)
    region[80:160, 120:260] = 255
    Image.fromarray(region).save(tmp_path / "region.png")
    code, _, err = _run(["segment", photo, "--model", model_path, "--reference-image", photo, "--reference-mask",
                         tmp_path / "region.png", "--text", "zebra", "--vocab", "zebra,grass", "--out", tmp_path / "r"], capsys)
    assert code == 0, err
    code, _, err = _run(["panoptic", photo, "--model", model_path, "--vocab", "zebra,grass,sky,tree,water",
                         "--out", tmp_path / "p"], capsys)
    assert code == 0, err
    assert any(p.suffix == ".png" for p in (tmp_path / "p").iterdir())


def _write_bomb(path):
    Image.new("1", (8000, 7000)).save(path)  # 56 MP, tiny on disk


@pytest.mark.parametrize(
    "make_image, extra, message",
    [
        (lambda p: p.write_bytes(b""), [], "empty"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage"), [], ""),
        (_write_bomb, [], "50"),
        (None, ["--point", "5000,10"], "outside the image"),
        (None, ["--box", "50,50,10,10"], "X0 < X1"),
        (None, ["--text", "zebra " * 90], "77"),
        (None, ["--scribble", "EMPTY"], "empty"),
    ],
)
def test_bad_inputs_exit_nonzero_with_one_line_error(model_path, photo, tmp_path, capsys, make_image, extra, message):
    image = photo
    if make_image is not None:
        image = tmp_path / "bad.png"
        make_image(image)
        extra = extra or ["--point", "1,1"]
    if "EMPTY" in extra:
        Image.fromarray(np.zeros((224, 416), dtype=np.uint8)).save(tmp_path / "empty.png")
        extra = ["--scribble", tmp_path / "empty.png"]
    code, _, err = _run(["segment", image, "--model", model_path, "--vocab", "zebra", "--out", tmp_path / "o", *extra], capsys)
    assert code != 0
    assert "Traceback" not in err, err
    error_lines = [line for line in err.splitlines() if "error:" in line]  # ours, or argparse's usage error
    assert len(error_lines) == 1 and message.lower() in error_lines[0].lower(), err


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/seem-evil-marker",))


def test_unsafe_and_mismatched_checkpoints_are_refused(photo, tmp_path, capsys):
    require_fixture()
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": _Evil()}))
    code, _, err = _run(["segment", photo, "--model", evil, "--point", "1,1"], capsys)
    assert code != 0 and err.startswith("error:") and "Traceback" not in err
    import os

    assert not os.path.exists("/tmp/seem-evil-marker")

    from safetensors.torch import load_file

    from seem.checkpoint import save_safetensors
    from seem.registry import get_variant

    sd = load_file(str(fixture_dir() / "model.safetensors"))
    wrong = tmp_path / "wrong.safetensors"
    save_safetensors({k: v for k, v in sd.items()}, wrong, {}, config=get_variant("seem_focalt_v1").config)
    code, _, err = _run(["segment", photo, "--model", wrong, "--point", "1,1"], capsys)
    assert code != 0 and "Traceback" not in err
    assert "missing" in err.lower() or "mismatch" in err.lower() or "embed_dim" in err


def test_convert_official_pickle_checks_shapes_and_round_trips(tmp_path, capsys):
    require_fixture()
    from safetensors.torch import load_file

    from seem import from_pretrained

    official = {k: v.clone() for k, v in load_file(str(fixture_dir() / "model.safetensors")).items()}
    torch.save(official, tmp_path / "official.pt")
    out = tmp_path / "converted.safetensors"
    code, stdout, err = _run(["convert", tmp_path / "official.pt", out, "--config", fixture_dir() / "config.yaml"], capsys)
    assert code == 0, err
    assert "config: from" in stdout
    model = from_pretrained(str(out))  # needs nothing but the file: the config travels in its metadata
    assert torch.equal(model.decoder.query_feat.weight, official["sem_seg_head.predictor.query_feat.weight"])

    code, _, err = _run(["convert", tmp_path / "official.pt", tmp_path / "x.safetensors", "--variant", "seem_focall_v1"], capsys)
    assert code == 2 and "shape" in err.lower() and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()

    code, _, err = _run(["convert", tmp_path / "official.pt", tmp_path / "y.safetensors", "--config", photo_png(tmp_path)], capsys)
    assert code == 2 and "yaml" in err.lower()


def photo_png(tmp_path):
    path = tmp_path / "not_yaml.png"
    Image.new("RGB", (4, 4)).save(path)
    return path
