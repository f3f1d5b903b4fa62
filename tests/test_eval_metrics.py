"""Semantic (detectron2 SemSegEvaluator) and COCO mask AP metrics on hand-computed cases."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from seem.evaluation.instance_ap import MaskAPAccumulator, mask_ap
from seem.evaluation.semantic import SemanticAccumulator, semantic_metrics

# ------------------------------------------------------------------------------------ semantic
GT = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 2, 2]])
PRED = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [2, 0, 1, 2], [2, 2, 2, 2]])
# Counting the 14 non-ignored pixels by hand (rows pred, columns gt):
#            gt0 gt1 gt2 | pos_pred
#   pred0     3   1   1  |   5
#   pred1     1   3   0  |   4
#   pred2     0   0   5  |   5
#   pos_gt    4   4   6  |  14
# IoU = 3/(4+5-3) = 1/2, 3/(4+4-3) = 3/5, 5/(6+5-5) = 5/6;  ACC = 3/4, 3/4, 5/6
HAND = {"mIoU": 100 * (1 / 2 + 3 / 5 + 5 / 6) / 3,                  # 64.44
        "fwIoU": 100 * (4 * (1 / 2) + 4 * (3 / 5) + 6 * (5 / 6)) / 14,  # 67.14
        "mACC": 100 * (3 / 4 + 3 / 4 + 5 / 6) / 3,                  # 77.78
        "pACC": 100 * 11 / 14}                                       # 78.57


def _check(summary, want):
    for key, value in want.items():
        assert summary[key] == pytest.approx(value, abs=1e-9), key


def test_semantic_hand_case():
    acc = SemanticAccumulator(3, class_names=["a", "b", "c"])
    acc.add(PRED, GT)
    np.testing.assert_array_equal(acc.confusion_matrix, [[3, 1, 1], [1, 3, 0], [0, 0, 5]])
    _check(acc.summary(), {**HAND, "num_images": 1})
    per = acc.per_class()
    assert [p["name"] for p in per] == ["a", "b", "c"]
    np.testing.assert_allclose([p["IoU"] for p in per], [50, 60, 100 * 5 / 6])
    np.testing.assert_allclose([p["ACC"] for p in per], [75, 75, 100 * 5 / 6])


def test_semantic_ignore_pixels_excluded():
    for fill in (0, 1, 2):  # whatever is predicted at the two ignored pixels changes nothing
        _check(semantic_metrics([np.where(GT == 255, fill, PRED)], [GT], 3), HAND)
    # A different ignore id: 255 is then an invalid GT id, 7 is ignored.
    _check(semantic_metrics([PRED], [np.where(GT == 255, 7, GT)], 3, ignore_index=7), HAND)
    with pytest.raises(ValueError, match="ignore_index 7"):
        semantic_metrics([PRED], [GT], 3, ignore_index=7)


def test_semantic_absent_classes_excluded_from_means():
    # Class 3 is in neither GT nor prediction: same means, nan per-class values.
    acc = SemanticAccumulator(4)
    acc.add(PRED, GT)
    _check(acc.summary(), HAND)
    assert math.isnan(acc.per_class()[3]["IoU"]) and math.isnan(acc.per_class()[3]["ACC"])
    # Class 3 predicted on one gt-2 pixel but never in GT: left out of the means (detectron2's
    # iou_valid = acc_valid & union > 0), while class 2 loses that pixel: IoU 4/6, ACC 4/6.
    acc = SemanticAccumulator(4)
    acc.add(np.where(np.arange(16).reshape(4, 4) == 15, 3, PRED), GT)  # pixel (3, 3): gt 2, pred 3
    s = acc.summary()
    assert s["mIoU"] == pytest.approx(100 * (1 / 2 + 3 / 5 + 4 / 6) / 3)
    assert s["mACC"] == pytest.approx(100 * (3 / 4 + 3 / 4 + 4 / 6) / 3)
    assert s["pACC"] == pytest.approx(100 * 10 / 14)
    assert math.isnan(acc.per_class()[3]["IoU"])


def test_semantic_accumulates_over_images_and_matches_bruteforce():
    rng = np.random.default_rng(0)
    c = 5
    preds = [rng.integers(0, c, (7, 9)) for _ in range(3)]
    gts = [np.where(rng.random((7, 9)) < 0.1, 255, rng.integers(0, c - 1, (7, 9))) for _ in range(3)]
    s = semantic_metrics(preds, gts, c)
    assert s["num_images"] == 3
    p, g = np.concatenate([x.ravel() for x in preds]), np.concatenate([x.ravel() for x in gts])
    p, g = p[g != 255], g[g != 255]
    present = [k for k in range(c) if (g == k).any()]  # class 4 never in GT: excluded
    assert present == [0, 1, 2, 3]
    ious = [((p == k) & (g == k)).sum() / ((p == k) | (g == k)).sum() for k in present]
    accs = [((p == k) & (g == k)).sum() / (g == k).sum() for k in present]
    weights = [(g == k).sum() / g.size for k in present]
    _check(s, {"mIoU": 100 * np.mean(ious), "mACC": 100 * np.mean(accs), "pACC": 100 * np.mean(p == g),
               "fwIoU": 100 * np.dot(ious, weights)})


def test_semantic_errors_and_empty():
    acc = SemanticAccumulator(3)
    for pred, gt, message in [(PRED, np.zeros((4, 5), int), r"\(4, 4\).*\(4, 5\)"),
                              (np.full((4, 4), 3), GT, "predicted ids"), (np.full((4, 4), -1), GT, "predicted ids"),
                              (PRED, np.where(GT == 255, 3, GT), "GT ids"), (PRED.astype(float), GT, "integer")]:
        with pytest.raises(ValueError, match=message):
            acc.add(pred, gt)
    assert acc.num_images == 0
    s = acc.summary()
    assert all(math.isnan(s[k]) for k in ("mIoU", "fwIoU", "mACC", "pACC"))
    acc.add(PRED, np.full((4, 4), 255))  # all ignored: still no GT pixel
    assert math.isnan(acc.summary()["mIoU"]) and acc.summary()["num_images"] == 1


# ------------------------------------------------------------------------------------ mask AP
def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _ap(gt_masks, gt_cls, pred_masks, pred_cls, scores, names=("a",), **kw):
    pytest.importorskip("pycocotools")
    acc = MaskAPAccumulator(list(names))
    acc.add(1, np.stack(gt_masks), gt_cls, np.stack(pred_masks) if pred_masks else np.zeros((0, 16, 16), bool),
            pred_cls, scores, **kw)
    return acc.summary()


def test_ap_perfect_prediction():
    g = [_box(16, 16, 0, 4, 0, 4), _box(16, 16, 8, 16, 8, 16)]
    s = _ap(g, [0, 1], g[::-1], [1, 0], [0.3, 0.9], names=("a", "b"))
    for key in ("AP", "AP50", "AP75", "APs"):
        assert s[key] == pytest.approx(100.0), key
    assert math.isnan(s["APm"]) and math.isnan(s["APl"])  # all GT are small (< 32^2 pixels)
    assert [p["AP"] for p in s["per_class"]] == pytest.approx([100.0, 100.0])
    assert (s["num_images"], s["num_gt"], s["num_pred"]) == (1, 2, 2)


# GT 2x6 = 12 pixels, prediction its first 7: IoU 7/12 = 0.583, thresholds .50 and .55 of the ten pass -> 2/10.
# GT 2x5 = 10 pixels, prediction its first 6: IoU exactly 0.6; COCOeval matches when IoU >= threshold and
# np.linspace(.5, .95, 10)[2] == 0.6, so .50, .55 and .60 pass -> 3/10.
@pytest.mark.parametrize("gt_width, n_pred, want_ap", [(6, 7, 20.0), (5, 6, 30.0)])
def test_ap_single_match_partial_iou(gt_width, n_pred, want_ap):
    gt = _box(16, 16, 0, 2, 0, gt_width)
    pred = np.zeros_like(gt)
    pred[np.nonzero(gt)[0][:n_pred], np.nonzero(gt)[1][:n_pred]] = True
    s = _ap([gt], [0], [pred], [0], [0.9])
    # One GT, one detection: per threshold precision is 1 (matched) or 0 at every recall point.
    assert s["AP50"] == pytest.approx(100.0)
    assert s["AP75"] == pytest.approx(0.0)
    assert s["AP"] == pytest.approx(want_ap)


def test_ap_false_positive_above_true_positive():
    # Three GT; detections by score: TP (0.9), FP (0.8, on empty background), TP (0.7); third GT missed.
    g = [_box(16, 16, 0, 3, 0, 3), _box(16, 16, 0, 3, 5, 8), _box(16, 16, 5, 8, 0, 3)]
    fp = _box(16, 16, 12, 15, 12, 15)
    # recall after each detection: 1/3, 1/3, 2/3; precision 1, 1/2, 2/3 -> interpolated (max to the right)
    # 1, 2/3, 2/3. Of COCO's 101 recall points 0.00..1.00: 0.00-0.33 (34 points) -> 1, 0.34-0.66 (33) -> 2/3,
    # 0.67-1.00 (34) unreached -> 0.  AP50 = (34 + 33 * 2/3) / 101 = 56/101.
    s = _ap(g, [0, 0, 0], [g[0], fp, g[1]], [0, 0, 0], [0.9, 0.8, 0.7])
    assert s["AP50"] == pytest.approx(100 * 56 / 101)
    assert s["AP"] == pytest.approx(100 * 56 / 101)  # masks are exact: every threshold alike
    # Per class (100 detections per image; with 1, recall would stop at 1/3: 34/101).
    assert s["per_class"][0]["AP"] == pytest.approx(100 * 56 / 101)
    # Without the false positive: 67 points at precision 1 -> 67/101.
    s = _ap(g, [0, 0, 0], [g[0], g[1]], [0, 0], [0.9, 0.7])
    assert s["AP50"] == pytest.approx(100 * 67 / 101)


def test_ap_crowd_region_ignores_detection():
    # A detection inside a crowd region (IoU with a crowd region = intersection / detection area = 1) is
    # ignored; were the region an ordinary GT, the detection (IoU 4/64 with it) would be a false positive at
    # the top score and the region a missed GT.
    g = [_box(16, 16, 0, 4, 0, 4), _box(16, 16, 8, 16, 8, 16)]
    preds = [g[0], _box(16, 16, 9, 11, 9, 11)]
    s = _ap(g, [0, 0], preds, [0, 0], [0.8, 0.9], gt_iscrowd=[False, True])
    assert s["AP50"] == pytest.approx(100.0)
    s = _ap(g, [0, 0], preds, [0, 0], [0.8, 0.9])
    # By score: FP then TP, 2 GT: recall 0, 1/2; precision 0, 1/2 -> interpolated 1/2 up to recall 0.5
    # (51 points), 0 above.
    assert s["AP50"] == pytest.approx(100 * 0.5 * 51 / 101)


def test_ap_edge_cases():
    g = [_box(16, 16, 0, 4, 0, 4)]
    s = _ap(g, [0], [], [], [], names=("a", "b"))  # no prediction at all
    assert s["AP"] == 0.0 and s["AP50"] == 0.0 and s["num_pred"] == 0
    assert s["per_class"][0]["AP"] == 0.0 and math.isnan(s["per_class"][1]["AP"])  # class b has no GT
    acc = MaskAPAccumulator(["a"])
    acc.add(3, np.zeros((0, 8, 8), bool), [], _box(8, 8, 0, 2, 0, 2)[None], [0], [0.5])  # no GT at all
    s = acc.summary()
    assert all(math.isnan(s[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
    assert (s["num_images"], s["num_gt"], s["num_pred"]) == (1, 0, 1)
    assert math.isnan(MaskAPAccumulator(["a"]).summary()["AP"])


def test_ap_validation_errors():
    pytest.importorskip("pycocotools")
    acc = MaskAPAccumulator(["a", "b"])
    g, p = np.zeros((1, 8, 8), bool), np.zeros((2, 8, 8), bool)
    acc.add(1, g, [0], p, [0, 1], [0.5, 0.4])
    ok = {"image_id": 2, "gt_masks": g, "gt_classes": [0], "pred_masks": p, "pred_classes": [0, 1],
          "pred_scores": [0.5, 0.4]}
    for change, message in [({"image_id": 1}, "image_id 1"), ({"pred_masks": np.zeros((2, 8, 9), bool)}, "pixels"),
                            ({"pred_scores": [0.5]}, "pred_scores has 1 entries for 2 masks"),
                            ({"gt_classes": [0, 1]}, "gt_classes has 2 entries"), ({"gt_iscrowd": []}, "gt_iscrowd"),
                            ({"pred_classes": [0, 2]}, "pred_classes must lie"), ({"gt_masks": g[0]}, r"\(N, H, W\)"),
                            ({"pred_scores": [0.5, float("nan")]}, "finite")]:
        with pytest.raises(ValueError, match=message):
            acc.add(**{**ok, **change})
    assert acc.num_images == 1


def test_ap_missing_pycocotools_message(monkeypatch):
    for name in ("pycocotools", "pycocotools.mask", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)
    acc = MaskAPAccumulator(["a"])
    for call in (lambda: acc.add(1, np.ones((1, 4, 4), bool), [0], np.ones((1, 4, 4), bool), [0], [1.0]),
                 acc.summary):
        with pytest.raises(ImportError, match=r"pip install 'seem-torch\[io\]'"):
            call()


def test_ap_matches_direct_pycocotools_from_json_files(tmp_path):
    pytest.importorskip("pycocotools")
    import pycocotools.mask as mu
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m):
        r = mu.encode(np.asfortranarray(m.astype(np.uint8)))
        return {"size": r["size"], "counts": r["counts"].decode()}

    rng, names, h, w = np.random.default_rng(1), ["a", "b", "c"], 96, 128
    samples, images, anns, dets = [], [], [], []
    for img_id in (5, 9, 12, 40):
        gt, pred = [], []  # (mask, class) / (mask, class, score)
        for _ in range(int(rng.integers(1, 6))):
            y, x, c = int(rng.integers(0, h - 45)), int(rng.integers(0, w - 45)), int(rng.integers(0, 3))
            gt.append((_box(h, w, y, y + int(rng.integers(3, 45)), x, x + int(rng.integers(3, 45))), c))
            if rng.random() < 0.8:  # a jittered detection, sometimes of the wrong class
                shift = (int(rng.integers(-4, 5)), int(rng.integers(-4, 5)))
                pred.append((np.roll(gt[-1][0], shift, axis=(0, 1)), c if rng.random() < 0.8 else
                             int(rng.integers(0, 3)), float(rng.random())))
        pred += [(rng.random((h, w)) < 0.05, int(rng.integers(0, 3)), float(rng.random()))  # false positives
                 for _ in range(int(rng.integers(0, 3)))]
        samples.append({"image_id": img_id, "gt_masks": np.stack([g[0] for g in gt]),
                        "gt_classes": [g[1] for g in gt], "pred_masks": np.stack([d[0] for d in pred]),
                        "pred_classes": [d[1] for d in pred], "pred_scores": [d[2] for d in pred]})
        images.append({"id": img_id, "height": h, "width": w, "file_name": f"{img_id}.png"})
        # Category ids 10, 20, 30: non-contiguous on purpose; areas and boxes computed here, not by the module.
        anns += [{"id": len(anns) + i + 1, "image_id": img_id, "category_id": 10 * (c + 1), "iscrowd": 0,
                  "segmentation": rle(m), "area": int(m.sum()), "bbox": [float(v) for v in (
                      np.nonzero(m.any(0))[0][0], np.nonzero(m.any(1))[0][0], m.any(0).sum(), m.any(1).sum())]}
                 for i, (m, c) in enumerate(gt)]
        dets += [{"image_id": img_id, "category_id": 10 * (c + 1), "score": s, "segmentation": rle(m)}
                 for m, c, s in pred]
    gt_file, dt_file = tmp_path / "gt.json", tmp_path / "dt.json"
    cats = [{"id": 10 * (i + 1), "name": n} for i, n in enumerate(names)]
    gt_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    dt_file.write_text(json.dumps(dets))
    gt = COCO(str(gt_file))
    ev = COCOeval(gt, gt.loadRes(str(dt_file)), "segm")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    want = [100 * v if v > -1 else math.nan for v in ev.stats[:6]]
    assert 0 < want[0] < 100 and not math.isnan(want[4])  # a non-trivial case, with medium objects

    s = mask_ap(samples, names)
    got = [s[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
    np.testing.assert_allclose(got, want, atol=1e-9, equal_nan=True)
    assert (s["num_images"], s["num_gt"], s["num_pred"]) == (4, len(anns), len(dets))
    for k, entry in enumerate(s["per_class"]):
        p = ev.eval["precision"][:, :, k, 0, -1]
        assert entry["AP"] == pytest.approx(100 * p[p > -1].mean())
