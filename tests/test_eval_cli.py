"""``seem eval``: interactive data sets (RITM folders, COCO instances), the runners and the command end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from seem.cli import main
from seem.errors import ConfigError, PromptError
from seem.evaluation.datasets import CocoInstancesDataset, RitmFolderDataset
from seem.evaluation.report import format_table
from seem.evaluation.runner import run_interactive

from conftest import prompts_as_kwargs


def _png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _image(h=8, w=10) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _band_mask() -> np.ndarray:
    """8x10: 255 object rows 2..4 / cols 2..5, a 128 band around it, 0 elsewhere, plus 200 (object) and 100
    (background) pixels."""
    m = np.zeros((8, 10), np.uint8)
    m[1:6, 1:7] = 128
    m[2:5, 2:6] = 255
    m[7, 9], m[7, 0] = 200, 100
    return m


# ------------------------------------------------------------------------------------------ (a) RITM folders
def test_ignore_band_and_layouts(tmp_path):
    m = _band_mask()
    _png(tmp_path / "gc" / "images" / "a.png", _image())
    _png(tmp_path / "gc" / "masks" / "a.png", m)
    ds = RitmFolderDataset(tmp_path / "gc")
    assert len(ds) == 1 and ds.describe()["ignore_value"] == 128
    name, image, [(gt, ignore)] = ds[0]
    assert name == "a" and image.shape == (8, 10, 3) and image.dtype == np.uint8
    assert gt.dtype == bool and np.array_equal(gt, (m == 255) | (m == 200)) and gt.sum() == 13
    assert np.array_equal(ignore, m == 128) and ignore.sum() == 30 - 12
    # no ignore band: 128 > 127 is object; the band value is configurable
    gt2, ignore2 = RitmFolderDataset(tmp_path / "gc", ignore_value=-1)[0][2][0]
    assert ignore2 is None and gt2.sum() == 13 + 18
    # GrabCut's original layout (data_GT / boundary_GT, .bmp masks, colour mask -> channel 0)
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = m, 255 - m
    _png(tmp_path / "orig" / "data_GT" / "b.jpg", _image())
    (tmp_path / "orig" / "boundary_GT").mkdir()
    Image.fromarray(rgb).save(tmp_path / "orig" / "boundary_GT" / "b.bmp")
    gt3, ignore3 = RitmFolderDataset(tmp_path / "orig")[0][2][0]
    assert np.array_equal(gt3, gt) and np.array_equal(ignore3, ignore)
    # DAVIS layout: img / gt; a mask without a band gives ignore None
    _png(tmp_path / "davis" / "img" / "c.jpg", _image())
    _png(tmp_path / "davis" / "gt" / "c.png", (m == 255) * 255)
    assert RitmFolderDataset(tmp_path / "davis")[0][2][0][1] is None


def test_numbered_instance_masks(tmp_path):
    root = tmp_path / "d"
    for stem in ("a", "c", "c_1"):
        _png(root / "images" / f"{stem}.jpg", _image())
    for _k, (name, rows) in enumerate([("a_1", 0), ("a_2", 1), ("a_10", 2), ("c_1", 3), ("c_2", 4)]):
        m = np.zeros((8, 10), np.uint8)
        m[rows, :] = 255
        _png(root / "masks" / f"{name}.png", m)
    ds = RitmFolderDataset(root)
    items = {ds[i][0]: ds[i][2] for i in range(len(ds))}
    assert [int(np.flatnonzero(g.any(1))[0]) for g, _ in items["a"]] == [0, 1, 2]  # order of k: 1, 2, 10
    assert [int(np.flatnonzero(g.any(1))[0]) for g, _ in items["c"]] == [4]  # c_1.png belongs to image c_1
    assert [int(np.flatnonzero(g.any(1))[0]) for g, _ in items["c_1"]] == [3]


def test_ritm_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        RitmFolderDataset(tmp_path / "missing")
    (tmp_path / "x" / "masks").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no image directory"):
        RitmFolderDataset(tmp_path / "x")
    (tmp_path / "y" / "images").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no mask directory"):
        RitmFolderDataset(tmp_path / "y")
    (tmp_path / "x" / "images").mkdir()
    with pytest.raises(ConfigError, match="no image"):
        RitmFolderDataset(tmp_path / "x")
    _png(tmp_path / "x" / "images" / "a.png", _image())
    _png(tmp_path / "x" / "images" / "b.png", _image())
    _png(tmp_path / "x" / "masks" / "a.png", _band_mask())
    with pytest.raises(ConfigError, match=r"no mask .* 1 image\(s\) .*b\.png"):
        RitmFolderDataset(tmp_path / "x")
    _png(tmp_path / "x" / "masks" / "b.png", np.zeros((8, 11)))
    ds = RitmFolderDataset(tmp_path / "x")
    with pytest.raises(ConfigError, match="8x11 .* 8x10"):
        ds[1]
    _png(tmp_path / "x" / "masks" / "b.png", np.where(_band_mask() == 128, 128, 0))  # band only: empty object
    with pytest.warns(UserWarning, match="no pixels"):
        assert ds[1][2] == []
    assert ds.skipped == ["b#0"]
    with pytest.warns(UserWarning, match="no pixels"):
        report = run_interactive(_FixedPredictor(np.ones((8, 10), bool)), ds, max_clicks=1, progress=False)
    assert report["skipped_objects"] == 2 and report["interactive"]["point"]["num_instances"] == 1


def test_coco_instances(tmp_path):
    pytest.importorskip("pycocotools")
    _png(tmp_path / "im" / "1.jpg", _image(20, 30))
    _png(tmp_path / "im" / "2.jpg", _image(20, 30))
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]  # 10x10 pixels
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": square, "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": square, "area": 100, "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3, 0, 3]], "area": 9, "iscrowd": 0}]
    path = tmp_path / "inst.json"
    path.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg", "height": 20, "width": 30} for i in (1, 2)],
                                "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    ds = CocoInstancesDataset(tmp_path / "im", path)
    assert len(ds) == 2
    name, image, [(gt, ignore)] = ds[0]  # the crowd annotation is left out
    assert name == "1" and image.shape == (20, 30, 3) and ignore is None and gt[2:12, 2:12].all() and gt.sum() == 100
    assert len(CocoInstancesDataset(tmp_path / "im", path, min_area=50)) == 1
    with pytest.raises(ConfigError, match="no non-crowd instance"):
        CocoInstancesDataset(tmp_path / "im", path, min_area=1000)


def test_coco_instances_with_hostile_values_fail_cleanly(tmp_path):
    pytest.importorskip("pycocotools")
    _png(tmp_path / "im" / "1.jpg", _image(20, 30))

    def dataset(ann: dict):
        path = tmp_path / "inst.json"
        path.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.jpg", "height": 20, "width": 30}],
                                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0} | ann],
                                    "categories": [{"id": 1, "name": "thing"}]}))
        return CocoInstancesDataset(tmp_path / "im", path)

    with pytest.raises(ConfigError, match="'area' must be a number"):
        dataset({"segmentation": [[2, 2, 12, 2, 12, 12]], "area": "big"})
    # NaN / enormous polygon coordinates must not reach pycocotools' rasteriser (it would kill the process)
    for poly in ([2, 2, float("nan"), 2, 12, 12], [2, 2, 1e300, 2, 12, 12], [2, 2, 12, 2, 12]):
        ds = dataset({"segmentation": [poly + [5, 5]] if len(poly) == 5 else [poly], "area": 10})
        with pytest.raises(ConfigError, match="invalid segmentation"):
            ds[0]
    ds = dataset({"segmentation": {"size": [20, 30], "counts": [600] + [2**62] * 3}, "area": 10})
    with pytest.raises(ConfigError, match="invalid segmentation"):
        ds[0]


# ------------------------------------------------------------------------------------------ (b) runner
class _FixedPredictor:
    """Always answers ``mask``; records the calls. Raises PromptError on an all-black image."""

    def __init__(self, mask):
        self.mask = mask
        self.calls: list[dict] = []

    def set_image(self, image):
        self.image = image

    def predict(self, prompts=None, **kwargs):
        if not self.image.any():
            raise PromptError("rejected")
        self.calls.append(prompts_as_kwargs(prompts, **kwargs))
        return SimpleNamespace(masks=self.mask[None])


def test_run_interactive_by_hand():
    gt = np.zeros((10, 10), bool)
    gt[2:6, 2:6] = True  # 16 px
    pred = np.zeros((10, 10), bool)
    pred[1:7, 1:7] = True  # 36 px: gt dilated by one pixel
    ring = pred & ~gt
    image = np.full((10, 10, 3), 7, np.uint8)
    bad = np.zeros((10, 10, 3), np.uint8)
    # object 1: the ring is ignored -> IoU 1 at once, no error left -> a single predict call
    # object 2: no ignore -> IoU 16/36 every round (the predictor never changes its mind)
    dataset = [("one", image, [(gt, ring), (gt, None)]), ("rejected", bad, [(gt, None)])]
    p = _FixedPredictor(pred)
    r = run_interactive(p, dataset, first_prompts=("point", "box"), max_clicks=3, progress=False)
    point = r["interactive"]["point"]
    assert point["num_instances"] == 2 and point["num_clicks"] == 1 + 3
    assert point["NoC@85"] == pytest.approx((1 + 3) / 2) and point["NoF@85"] == 1 and point["NoF@90"] == 1
    assert point["mIoU@1"] == pytest.approx(100 * (1 + 16 / 36) / 2)
    assert point["mIoU@3"] == pytest.approx(point["mIoU@1"]) and len(point["mean_curve"]) == 3
    assert point["seconds_per_click"] >= 0 and r["interactive"]["box"]["NoC@90"] == point["NoC@90"]
    assert any("boxes" in c for c in p.calls) and p.calls[0]["points"] == [[3.5, 3.5]]  # DT max of the GT (first of the 4 ties), centred
    # later rounds send every click so far and the previous prediction as memory
    assert p.calls[2]["memory"] is not None and len(p.calls[2]["points"]) == 2 and p.calls[2]["point_labels"] == [1, 0]
    assert [e["image"] for e in r["errors"]] == ["rejected", "rejected"] and r["num_images"] == 2
    json.dumps(r)
    table = format_table(r)
    assert "NoC@85" in table and "box" in table and "2 samples rejected" in table
    with pytest.raises(ValueError, match="first prompts"):
        run_interactive(p, dataset, first_prompts=("lasso",))
    assert run_interactive(p, dataset, limit=0, progress=False)["interactive"]["point"]["num_instances"] == 0


# ------------------------------------------------------------------------------------------ (c, d) command line
@pytest.fixture(scope="module")
def ritm_scenes(tmp_path_factory):
    """A RITM folder from 2 generated scenes: each thing (at most 2 per scene) as NAME_k.png with a 128 band."""
    from scipy.ndimage import binary_dilation, binary_erosion

    from seem.data.scenes import SceneConfig, SceneGenerator

    root = tmp_path_factory.mktemp("ritm")
    gen = SceneGenerator(SceneConfig(size=128))
    count = 0
    for seed in range(2):
        scene = gen.sample(seed)
        _png(root / "images" / f"scene{seed}.png", scene.image)
        for k, i in enumerate(np.flatnonzero(scene.is_thing)[:2]):
            m = scene.masks[i]
            band = binary_dilation(m) & ~binary_erosion(m)
            _png(root / "masks" / f"scene{seed}_{k}.png", np.where(band, 128, np.where(m, 255, 0)))
            count += 1
    return root, count


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_interactive_command(ritm_scenes, tmp_path, capsys):
    root, count = ritm_scenes
    out = tmp_path / "r" / "report.json"
    code, stdout, err = _run(["eval", "interactive", "--dataset", root, "--max-clicks", 2, "--out", out,
                              "--no-progress", "--device", "cpu", "--threads", 1], capsys)
    assert code == 0, err
    assert "NoC@85" in stdout and "report written" in stdout
    r = json.loads(out.read_text())
    assert r["model"] == "seem_tiny" and r["task"] == "interactive" and r["dataset"]["type"] == "ritm_folder"
    assert r["protocol"]["max_clicks"] == 2 and r["protocol"]["first_prompts"] == ["point"] and r["num_images"] == 2
    point = r["interactive"]["point"]
    assert point["num_instances"] == count and r["errors"] == [] and r["skipped_objects"] == 0
    assert count <= point["num_clicks"] <= 2 * count and r["seconds"] > 0 and point["seconds_per_click"] > 0
    for t in (85, 90, 95):
        assert 1 <= point[f"NoC@{t}"] <= 2
    assert 0 <= point["NoF@85"] <= point["NoF@90"] <= count
    assert 30 < point["mIoU@1"] <= 100 and 0 <= point["mIoU@2"] <= 100  # the bundled model: ~73 % on scenes


def test_eval_referring_and_panoptic_commands(tmp_path, capsys):
    out = tmp_path / "ref.json"
    code, stdout, err = _run(["eval", "referring", "--dataset", "scenes", "--limit", 1, "--size", 128, "--out", out,
                              "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    r = json.loads(out.read_text())["referring"]
    assert r["num"] >= 1 and 0 <= r["cIoU"] <= 100 and 0 <= r["mIoU"] <= 100
    assert all(0 <= r[f"precision@{t}"] <= 100 for t in (0.5, 0.6, 0.7, 0.8, 0.9))

    out = tmp_path / "pan.json"
    code, stdout, err = _run(["eval", "panoptic", "--dataset", "scenes", "--limit", 1, "--size", 128, "--out", out,
                              "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["num_images"] == 1 and r["dataset"]["first_seed"] == r["dataset"]["last_seed"] == 0
    assert all(0 <= r["panoptic"][k] <= 100 for k in ("PQ", "SQ", "RQ")) and r["panoptic"]["num_classes"] >= 1
    assert all(0 <= r["semantic"][k] <= 100 for k in ("mIoU", "fwIoU", "mACC", "pACC"))
    assert "PQ" in stdout and "mIoU" in stdout
    pytest.importorskip("pycocotools")
    assert r["skipped_tasks"] == {} and r["instance"]["num_gt"] >= 1
    assert all(0 <= r["instance"][k] <= 100 for k in ("AP", "AP50", "AP75")) and "AP50" in stdout


@pytest.mark.parametrize("argv, message", [
    (["eval", "interactive"], "give --dataset scenes"),
    (["eval", "interactive", "--dataset", "{tmp}/nothing"], "not found"),
    (["eval", "interactive", "--images", "{tmp}"], "needs --annotations"),
    (["eval", "referring", "--images", "{tmp}"], "needs --annotations, --refs"),
    (["eval", "panoptic", "--dataset", "scenes", "--images", "{tmp}"], "takes no --images"),
    (["eval", "panoptic", "--dataset", "scenes", "--tasks", "panoptic", "--text-grounding"],
     "--text-grounding applies to the semantic task"),
])
def test_eval_usage_errors(argv, message, tmp_path, capsys):
    code, _, err = _run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2 and err.startswith("error: ") and message in err, err
