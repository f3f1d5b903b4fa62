"""``seem eval video``: DAVIS folders, generated clips, run_video plumbing with fake segmenters, the command."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from seem.cli import main
from seem.errors import ConfigError, PromptError
from seem.evaluation.report import format_table
from seem.evaluation.video_runner import (
    DavisDataset,
    SceneClips,
    VideoClip,
    parse_modes,
    run_video,
)

H, W = 24, 32


def _labels(seq: str, t: int) -> np.ndarray:
    """Label map of frame ``t``: seq "a" has objects 1 (moving right) and 2, and a void stripe on frames 0, 1;
    seq "b" has object 3 only."""
    m = np.zeros((H, W), np.uint8)
    if seq == "a":
        m[4:10, 2 + t:8 + t] = 1
        m[14:20, 20:28] = 2
        if t <= 1:
            m[:, 30:] = 255
    else:
        m[6:18, 10 + t:20 + t] = 3
    return m


def _palette_png(path, labels) -> None:
    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels, np.uint8).tobytes())
    img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0, 0, 0] * 250 + [224, 224, 192])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture()
def davis_root(tmp_path):
    root = tmp_path / "DAVIS"
    rng = np.random.default_rng(0)
    for seq in ("a", "b"):
        for t in range(4):
            p = root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(p)
            _palette_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", _labels(seq, t))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("b\n")
    (root / "ImageSets" / "2017" / "train.txt").write_text("a\nb\n")
    return root


# ------------------------------------------------------------------------------------------ data sets
def test_davis_folder(davis_root):
    ds = DavisDataset(davis_root)                        # default: ImageSets/2017/val.txt -> "b"
    assert len(ds) == 1 and ds.describe()["split"] == "val" and ds.describe()["num_sequences"] == 1
    clip = DavisDataset(davis_root, split="all")[0]      # every folder: "a", "b"
    assert clip.name == "a" and clip.object_ids == [1, 2] and len(clip.frames) == 4
    assert clip.frames[0].shape == (H, W, 3) and clip.frames[0].dtype == np.uint8
    for t in range(4):
        labels = _labels("a", t)
        assert set(clip.gt[t]) == {1, 2}
        assert np.array_equal(clip.gt[t][1], labels == 1) and np.array_equal(clip.gt[t][2], labels == 2)
        assert clip.gt[t][1].sum() == 36 and clip.gt[t][2].sum() == 48
    assert clip.void[2] is None and clip.void[3] is None   # 255 is void, not an object
    assert clip.void[0].sum() == clip.void[1].sum() == 2 * H and clip.void[1][:, 30:].all()
    assert not clip.gt[1][1][:, 30:].any()               # void pixels are not object pixels
    b = DavisDataset(davis_root, split="train")[1]
    assert b.name == "b" and b.object_ids == [3] and b.gt[3][3].sum() == 120
    # frames without an annotation are not scored (gt None); the first one is required
    (davis_root / "Annotations" / "480p" / "b" / "00002.png").unlink()
    b = DavisDataset(davis_root)[0]
    assert b.gt[2] is None and b.void[2] is None and b.gt[3] is not None
    (davis_root / "Annotations" / "480p" / "b" / "00000.png").unlink()
    with pytest.raises(ConfigError, match="first-frame annotation"):
        DavisDataset(davis_root)


def test_davis_errors(davis_root, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        DavisDataset(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="test-dev"):
        DavisDataset(davis_root, split="test-dev")
    with pytest.raises(ConfigError, match="JPEGImages"):
        DavisDataset(davis_root / "JPEGImages")
    with pytest.raises(ConfigError, match="Annotations"):
        (davis_root / "JPEGImages" / "Full-Resolution").mkdir()
        DavisDataset(davis_root, resolution="Full-Resolution")
    # an RGB annotation is not an index map
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(davis_root / "Annotations" / "480p" / "b" / "00001.png")
    with pytest.raises(ConfigError, match="palette"):
        DavisDataset(davis_root)[0]


def test_scene_clips():
    ds = SceneClips(num=2, size=96, num_frames=3)
    assert len(ds) == 2 and ds.describe()["last_seed"] == 1
    clip = ds[1]
    assert clip.name == "clip1" and len(clip.frames) == 3 and 1 <= len(clip.object_ids) <= 3
    assert all(i >= 1 for i in clip.object_ids)         # scene ids + 1: 0 stays background
    from seem.data.scenes import SceneConfig, SceneGenerator

    scenes = SceneGenerator(SceneConfig(size=96)).sample_clip(1, num_frames=3)
    for t, scene in enumerate(scenes):
        assert np.array_equal(clip.frames[t], scene.image)
        for obj in clip.object_ids:
            hit = [k for k, o in enumerate(scene.object_ids) if o == obj - 1 and scene.is_thing[k]]
            assert np.array_equal(clip.gt[t][obj], scene.masks[hit[0]] if hit else np.zeros((96, 96), bool))
    assert all(clip.gt[0][obj].any() for obj in clip.object_ids)   # visible on the first frame


# ------------------------------------------------------------------------------------------ run_video
class _Fake:
    """A segmenter that answers every frame with the ground truth (``oracle``) or nothing; ``fail``: raise
    after two frames; ``skip_first``: yield nothing for frame 0."""

    def __init__(self, clip: VideoClip | None, fail: bool = False, skip_first: bool = False) -> None:
        self.clip, self.fail, self.skip_first, self.added = clip, fail, skip_first, {}

    def add_object(self, obj_id, frame_index=0, *, mask=None):
        self.added[obj_id] = (frame_index, mask)

    def run(self, frames):
        for t, _ in enumerate(frames):
            if self.fail and t == 2:
                raise PromptError("segments nothing")
            if self.skip_first and t == 0:
                continue
            yield t, ({i: m for i, m in self.clip.gt[t].items()} if self.clip is not None and self.clip.gt[t] else {})


def _factory(dataset, kind="oracle", fail_on=(), skip_first=False):
    calls = []

    def make(predictor, mode):
        clip = dataset[len(calls) // len(modes)]        # clips in order, each once per mode
        calls.append((clip.name, mode))
        return _Fake(clip if kind == "oracle" else None, fail=clip.name in fail_on, skip_first=skip_first)

    modes = ["memory"]
    make.calls, make.modes = calls, modes
    return make


def test_run_video_oracle_and_empty(davis_root):
    ds = DavisDataset(davis_root, split="all")
    f = _factory(ds)
    r = run_video(None, ds, progress=False, segmenter_factory=f)
    assert f.calls == [("a", "memory"), ("b", "memory")] and r["errors"] == []
    m = r["video"]["memory"]
    assert m["J&F-Mean"] == m["J-Mean"] == m["F-Mean"] == 100.0 and m["J-Recall"] == 100.0 and m["J-Decay"] == 0.0
    assert m["num_objects"] == 3 and m["num_frames"] == 3 * 2 and m["num_frames_segmented"] == 8  # frames 1, 2 scored
    assert r["num_sequences"] == 2 and r["task"] == "video" and m["fps"] > 0 and m["missing_predictions"] == 0
    json.dumps(r)  # JSON-able
    f = _factory(ds, kind="empty")
    m = run_video(None, ds, progress=False, segmenter_factory=f)["video"]["memory"]
    assert m["J&F-Mean"] == m["J-Mean"] == m["F-Mean"] == m["J-Recall"] == 0.0
    assert m["missing_predictions"] == 3 * 4
    table = format_table(r | {"model": "fake"})
    assert "sequences evaluated: 2 of 2" in table and "J&F-Mean" in table and "100.00" in table


def test_run_video_modes_limit_errors(davis_root):
    ds = DavisDataset(davis_root, split="all")
    f = _factory(ds, fail_on=("a",))
    f.modes[:] = ["memory", "independent"]
    r = run_video(None, ds, mode="both", progress=False, segmenter_factory=f)
    assert f.calls == [("a", "memory"), ("a", "independent"), ("b", "memory"), ("b", "independent")]
    assert [e["mode"] for e in r["errors"]] == ["memory", "independent"] and r["errors"][0]["sequence"] == "a"
    for mode in ("memory", "independent"):  # only "b": the frames of "a" scored before the error are dropped
        assert r["video"][mode]["num_objects"] == 1 and r["video"][mode]["num_frames"] == 2
        assert r["video"][mode]["J&F-Mean"] == 100.0 and r["video"][mode]["num_frames_segmented"] == 4
    f = _factory(ds)
    r = run_video(None, ds, limit=1, progress=False, segmenter_factory=f)
    assert r["num_sequences"] == 1 and f.calls == [("a", "memory")]
    # a segmenter that yields no result for frame 0: still frames 1 and 2 scored (0 and N-1 from the clip length)
    r = run_video(None, ds, progress=False, segmenter_factory=_factory(ds, skip_first=True))["video"]["memory"]
    assert r["num_frames"] == 3 * 2 and r["num_frames_segmented"] == 6
    assert parse_modes("both") == ["memory", "independent"] and parse_modes(["independent"]) == ["independent"]
    with pytest.raises(ValueError):
        parse_modes("forward")


def test_run_video_void_option(davis_root):
    """A prediction wrong only inside the void stripe of frame 1 scores 100 with use_void, less without."""
    ds = DavisDataset(davis_root, split="all")

    class Spill(_Fake):
        def run(self, frames):
            for t, result in super().run(frames):
                result = dict(result)
                if t == 1:
                    result[2] = result[2] | self.clip.void[1]   # object 2 spills into the void columns
                yield t, result

    def make(predictor, mode):
        make.k += 1
        return Spill(ds[make.k - 1])

    make.k = 0
    plain = run_video(None, ds, limit=1, progress=False, segmenter_factory=make)["video"]["memory"]
    make.k = 0
    void = run_video(None, ds, limit=1, progress=False, segmenter_factory=make, use_void=True)["video"]["memory"]
    assert void["J-Mean"] == 100.0 and void["F-Mean"] == 100.0
    # object 2 (48 px) on frame 1: union 48 + 48 void px -> J = 0.5; mean over 2 frames -> 75; objects 1, 2 -> 87.5
    assert plain["J-Mean"] == pytest.approx((100.0 + 75.0) / 2) and plain["F-Mean"] < 100.0


# ------------------------------------------------------------------------------------------ command
def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_video_usage_errors(tmp_path, capsys):
    code, _, err = _run(["eval", "video", "--dataset", tmp_path / "nothing"], capsys)
    assert code == 2 and "not found" in err, err
    code, _, err = _run(["eval", "video", "--dataset", "scenes", "--mode", "sideways"], capsys)
    assert code == 2 and "invalid choice: 'sideways'" in err, err
    code, _, err = _run(["eval", "video"], capsys)
    assert code == 2 and "--dataset" in err, err


@pytest.mark.skipif(importlib.util.find_spec("seem.video") is None,
                    reason="seem.video (VideoSegmenter) is not available in this checkout")
def test_eval_video_command_scenes(tmp_path, capsys):
    out = tmp_path / "video.json"
    code, stdout, err = _run(["eval", "video", "--dataset", "scenes", "--limit", 1, "--frames", 4, "--size", 128,
                              "--mode", "both", "--out", out, "--no-progress", "--device", "cpu", "--threads", 1], capsys)
    assert code == 0, err
    assert "J&F-Mean" in stdout and "report written" in stdout
    r = json.loads(out.read_text())
    assert r["task"] == "video" and r["dataset"]["type"] == "scene_clips" and r["dataset"]["num_frames"] == 4
    assert r["num_sequences"] == 1 and r["errors"] == [] and set(r["video"]) == {"memory", "independent"}
    for m in r["video"].values():
        assert m["num_objects"] >= 1 and m["num_frames"] == 2 * m["num_objects"] and m["num_frames_segmented"] == 4
        assert all(0 <= m[k] <= 100 for k in ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "F-Recall"))
        assert m["fps"] > 0


def test_davis2016_binary_annotations_are_one_object(tmp_path):
    from PIL import Image

    from seem.evaluation.video_runner import _read_labels as read_labels

    grey = np.zeros((6, 8), np.uint8)
    grey[2:4, 3:6] = 255
    Image.fromarray(grey).save(tmp_path / "a.png")  # DAVIS 2016: grey 0 / 255, one object
    assert np.array_equal(read_labels(tmp_path / "a.png"), (grey > 0).astype(np.int64))
    grey[0, 0] = 1  # a grey index PNG with object 1 and void 255 stays as it is
    Image.fromarray(grey).save(tmp_path / "b.png")
    assert set(np.unique(read_labels(tmp_path / "b.png")).tolist()) == {0, 1, 255}
