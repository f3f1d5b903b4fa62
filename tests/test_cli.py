"""seem.cli: argument parsing, written files and exit codes, with a fake predictor.

The real predictor is replaced by :class:`FakePredictor` through ``sys.modules["seem.predictor"]``,
which the CLI looks up when a command runs. End-to-end tests with the real model live elsewhere.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from seem import cli
from seem import io as sio
from seem.errors import PromptError
from seem.modeling.decoder import VisualPromptTokens
from seem.prompts import Prompts, ReferencePrompt
from seem.prompts.value import VISUAL_FIELDS
from seem.structures import InstanceResult, PanopticResult, Prediction, Segment, SemanticResult

H, W = 48, 64


# one referred object, as encode_reference makes it (tokens of 3 levels, 2 tokens each)
REFERENCE = ReferencePrompt(VisualPromptTokens(
    [torch.zeros(2, 1, 8)] * 3, [torch.zeros(1, 2, dtype=torch.long)] * 3, [torch.zeros(1, 2, dtype=torch.bool)] * 3,
    torch.zeros(1, 1, 4), -torch.ones(1, 1, 4)))


class FakePredictor:
    """Records calls; ``predict`` returns one rectangle mask per box (or one box-free mask)."""

    instances: list[FakePredictor] = []

    def __init__(self, name, device, precision="fp32"):
        self.name, self.device, self.precision, self.calls = name, device, precision, []
        FakePredictor.instances.append(self)

    @classmethod
    def from_pretrained(cls, name_or_path=None, device="cpu", precision="fp32"):
        return cls(name_or_path, device, precision)

    def set_vocabulary(self, names):
        self.calls.append(("set_vocabulary", list(names)))

    def set_image(self, image):
        assert image.dtype == np.uint8 and image.shape == (H, W, 3)
        self.calls.append(("set_image", image.shape))

    def encode_reference(self, image, region):
        self.calls.append(("encode_reference", image.shape, int(region.sum())))
        return REFERENCE

    def predict(self, prompts: Prompts, joint_prompts: bool = True):
        self.calls.append(("predict", prompts, joint_prompts))
        prompts = {f: getattr(prompts, f) for f in (*VISUAL_FIELDS, "point_labels", "text", "reference")}
        if prompts["text"] == ("nothing",):
            raise PromptError("text 'nothing' matches no object")
        boxes = prompts.get("boxes")
        boxes = boxes if boxes is not None else np.array([[10, 8, 30, 20]])
        masks = np.zeros((len(boxes), H, W), bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            masks[k, y0:y1, x0:x1] = True
        k = len(masks)
        return Prediction(masks=masks, scores=np.linspace(0.9, 0.5, k).astype(np.float32),
                          labels=["cat", "dog"][:k] if k <= 2 else ["cat"] * k, label_ids=np.arange(k),
                          logits_lowres=torch.zeros(k, 12, 16), vocabulary=("cat", "dog"))

    def segment_everything(self, vocabulary=None, kind="panoptic", *, text_grounding=False):
        self.calls.append(("segment_everything", list(vocabulary), kind))
        if text_grounding:
            self.calls.append(("text_grounding", kind))
        seg = np.zeros((H, W), np.int32)
        seg[:, :20], seg[10:30, 30:50] = 1, 2
        if kind == "panoptic":
            return PanopticResult(seg, [Segment(1, 1, "wall", False, 0.8, int((seg == 1).sum())),
                                        Segment(2, 0, "cat", True, 0.95, int((seg == 2).sum()))],
                                  tuple(vocabulary))
        if kind == "semantic":  # probabilities at half resolution, as the real predictor keeps them
            probs = np.stack([(seg == 2) * 3.0, (seg == 2) + 2.0 * (seg != 2)])[:, ::2, ::2].astype(np.float32)
            return SemanticResult(probs, np.where(seg == 2, 0, 1).astype(np.int64), tuple(vocabulary))
        return InstanceResult(np.stack([seg == 2, seg == 1]), np.array([0.9, 0.4]), np.array([0, 1]),
                              ["cat", "wall"], tuple(vocabulary))


@pytest.fixture(autouse=True)
def fake_predictor(monkeypatch):
    module = types.ModuleType("seem.predictor")
    module.SeemPredictor = FakePredictor
    monkeypatch.setitem(sys.modules, "seem.predictor", module)
    FakePredictor.instances = []
    return FakePredictor


@pytest.fixture
def image_path(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_import_is_light():
    code = (
        "import sys, seem; before = set(sys.modules); import seem.cli; "
        "print(sorted(set(sys.modules) - before))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    added = ast.literal_eval(result.stdout)
    assert "seem.cli" in added
    heavy = ("seem.outputs", "seem.io", "seem.vocabularies", "pycocotools", "skimage")
    assert not [m for m in added if m.startswith(heavy)]


def test_segment_points_and_boxes_write_files(tmp_path, image_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _run(["segment", image_path, "--box", "2,3,20,15", "--box", "30,10,60,40",
                              "--format", "png,rle", "--format", "polygon", "--format", "overlay", "--out", out,
                              "--device", "cpu", "--vocab", "cat,dog"], capsys)
    assert code == 0, err
    fake = FakePredictor.instances[0]
    assert (fake.name, fake.device) == (None, "cpu")
    assert fake.calls[0] == ("set_vocabulary", ["cat", "dog"])
    prompts = fake.calls[-1][1]
    np.testing.assert_array_equal(prompts.boxes, [[2, 3, 20, 15], [30, 10, 60, 40]])
    assert prompts.points is None and prompts.num_visual == 2

    mask0 = sio.load_mask(out / "photo_mask0.png")
    assert mask0.sum() == 18 * 12 and mask0[3:15, 2:20].all()
    records = json.loads((out / "photo_masks.json").read_text())
    assert [r["category_name"] for r in records] == ["cat", "dog"]
    assert records[1]["bbox"] == [30, 10, 30, 30] and records[1]["image_id"] == "photo.png"
    polygons = json.loads((out / "photo_polygons.json").read_text())
    assert polygons[0]["label"] == "cat" and len(polygons[0]["polygons"]) == 1
    assert sio.load_image(out / "photo_overlay.png").shape == (H, W, 3)
    assert "mask 0: cat  score=0.900  area=216 px" in stdout
    assert "mask 1: dog  score=0.500  area=900 px" in stdout
    assert f"wrote {out / 'photo_overlay.png'}" in stdout


def test_segment_default_formats_and_other_prompts(tmp_path, image_path, capsys):
    scribble = np.zeros((H, W), bool)
    scribble[20, 5:40] = True
    sio.save_mask_png(scribble, tmp_path / "scribble.png")
    sio.save_mask_png(scribble, tmp_path / "ref_mask.png")
    out = tmp_path / "o"
    code, _, err = _run(["segment", image_path, "--text", "the cat", "--scribble", tmp_path / "scribble.png",
                         "--mask", tmp_path / "scribble.png", "--polygon", "1,1 10,1 10,10",
                         "--reference-image", image_path, "--reference-mask", tmp_path / "ref_mask.png",
                         "--out", out], capsys)
    assert code == 0, err
    calls = FakePredictor.instances[0].calls
    assert calls[0] == ("encode_reference", (H, W, 3), 35)
    prompts = calls[-1][1]
    assert prompts.text == ("the cat",) and prompts.reference is REFERENCE
    np.testing.assert_array_equal(prompts.scribbles[0], scribble)
    assert len(prompts.masks) == 1 and prompts.masks[0].shape == (H, W)
    np.testing.assert_array_equal(prompts.polygons[0], [[1, 1], [10, 1], [10, 10]])
    assert sorted(p.name for p in out.iterdir()) == ["photo_mask0.png", "photo_overlay.png"]


def test_segment_clicks_refine_one_object_and_are_checked_before_the_model_loads(tmp_path, image_path, capsys):
    code, _, err = _run(["segment", image_path, "--point", "12,9", "--point", "40.5,30,0", "--box", "2,3,50,35",
                         "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    prompts = FakePredictor.instances[-1].calls[-1][1]
    np.testing.assert_array_equal(prompts.points, [[[12, 9], [40.5, 30]]])  # (K=1, N=2, 2): one object
    np.testing.assert_array_equal(prompts.point_labels, [[1, 0]])
    np.testing.assert_array_equal(prompts.boxes, [[2, 3, 50, 35]])
    before = len(FakePredictor.instances)
    for extra, message in ((["--point", "500,9"], "points\\[0\\]"), (["--box", "2,3,20,15", "--box", "30,10,60,40",
                           "--point", "5,5"], "different numbers of objects")):
        code, _, err = _run(["segment", image_path, *extra, "--out", tmp_path / "o"], capsys)
        assert code == 2 and re.search(message, err) and "Traceback" not in err, err
    assert len(FakePredictor.instances) == before  # rejected before any model was loaded


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "no prompt given"),
        (["--text", "nothing"], "text 'nothing' matches no object"),
        (["--text", "x", "--vocab", "cat,cat"], "duplicate names"),
        (["--reference-image", "x.png"], "must be given together"),
        (["--scribble", "missing.png"], "missing.png: file not found"),
    ],
)
def test_segment_user_errors_exit_2_without_traceback(image_path, capsys, extra, message):
    code, _, err = _run(["segment", image_path, *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_scribble_of_wrong_size(tmp_path, image_path, capsys):
    sio.save_mask_png(np.ones((10, 10), bool), tmp_path / "small.png")
    code, _, err = _run(["segment", image_path, "--scribble", tmp_path / "small.png"], capsys)
    assert code == 2 and "mask is 10x10 (HxW) but the image is 48x64" in err


def test_bad_image_and_verbose_traceback(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    code, _, err = _run(["segment", tmp_path / "bad.png", "--point", "1,1"], capsys)
    assert code == 2 and "bad.png: not an image" in err and "Traceback" not in err
    code, _, err = _run(["segment", tmp_path / "bad.png", "--point", "1,1", "--verbose"], capsys)
    assert code == 2 and "Traceback" in err and "ImageError" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "a.png", "--point", "1"], "expected 2 or 3 numbers"),
        (["segment", "a.png", "--point", "1,2,5"], "label must be 1"),
        (["segment", "a.png", "--box", "5,5,1,1"], "X0 < X1"),
        (["segment", "a.png", "--polygon", "1,1 2,2"], "at least 3"),
        (["segment", "a.png", "--format", "jpeg"], "choose from png, rle, polygon, overlay"),
        (["segment", "a.png", "--device", "tpu"], "choose auto, cpu"),
        (["panoptic", "a.png"], "--vocab"),
        (["convert", "a.pt", "b.safetensors", "--config", "c.yaml", "--variant", "v"], "not allowed with"),
        ([], "COMMAND"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and message in err


def test_help_exits_0(capsys):
    code, out, _ = _run(["segment", "--help"], capsys)
    assert code == 0 and "--reference-image" in out


def test_panoptic_text_grounding_flag(tmp_path, image_path, capsys):
    code, _, err = _run(["panoptic", image_path, "--vocab", "cat,wall", "--kind", "semantic", "--text-grounding",
                         "--out", tmp_path / "sem"], capsys)
    assert code == 0, err
    assert ("text_grounding", "semantic") in FakePredictor.instances[0].calls
    code, _, err = _run(["panoptic", image_path, "--vocab", "cat,wall", "--text-grounding", "--out", tmp_path / "p"],
                        capsys)
    assert code == 2 and "--text-grounding only applies to --kind semantic, not --kind panoptic" in err


@pytest.mark.parametrize("kind", ["panoptic", "semantic", "instance"])
def test_panoptic_writes_label_png_json_and_overlay(tmp_path, image_path, capsys, kind):
    out = tmp_path / "pan"
    code, stdout, err = _run(["panoptic", image_path, "--vocab", "cat,wall", "--kind", kind,
                              "--out", out, "--model", "seem_tiny"], capsys)
    assert code == 0, err
    fake = FakePredictor.instances[0]
    assert fake.name == "seem_tiny" and ("segment_everything", ["cat", "wall"], kind) in fake.calls
    with Image.open(out / f"photo_{kind}.png") as label_png:
        assert label_png.mode == "P" and label_png.size == (W, H)
        labels = np.asarray(label_png).copy()
    info = json.loads((out / f"photo_{kind}.json").read_text())
    assert info["kind"] == kind and info["vocabulary"] == ["cat", "wall"] and (info["height"], info["width"]) == (H, W)
    by_label = {s["label"]: s for s in info["segments"]}
    assert by_label["cat"]["area"] == 400 and by_label["cat"]["bbox"] == [30, 10, 20, 20]
    assert (labels[10:30, 30:50] == by_label["cat"]["pixel_value"]).all()
    assert sio.load_image(out / f"photo_{kind}_overlay.png").shape == (H, W, 3)
    assert "cat  score=" in stdout and "area=400 px" in stdout
    assert by_label["cat"]["score"] == {"panoptic": 0.95, "semantic": 0.75, "instance": 0.9}[kind]


def test_panoptic_coco_vocabulary(image_path, tmp_path, capsys):
    code, _, err = _run(["panoptic", image_path, "--vocab", "coco", "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    assert len(FakePredictor.instances[0].calls[0][1]) == 133


def test_precision_option_reaches_the_predictor():
    from seem.cli import build_parser
    from seem.cli import common as cli_commands

    args = build_parser().parse_args(["segment", "x.png", "--point", "1,1", "--precision", "bf16-all"])
    assert args.precision == "bf16-all"
    assert cli_commands.load_predictor(args).precision == "bf16-all"
    default = build_parser().parse_args(["segment", "x.png", "--point", "1,1"])
    assert cli_commands.load_predictor(default).precision == "fp32"
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["segment", "x.png", "--precision", "fp16"])
    assert e.value.code == 2
