"""``SeemPredictor.find`` on CamVid val (never trained on): mask AP50 per phrase, car recall against referring
grounding, and one call with several phrases against separate calls.

    python benchmarks/bench_find.py [--camvid ../shared/datasets/camvid] [--limit N] [--model PATH]

Prints (``--out`` also writes JSON):

* ``find("car")`` / ``find("pedestrian")`` mask AP and AP50 (pycocotools ``COCOeval`` segm, through
  ``seem.evaluation.instance_ap``), each phrase alone against the GT instances of its class; CamVid's things are
  connected components, so touching cars are one GT instance.
* recall@0.5 of GT cars: the share of cars that some returned instance covers at mask IoU >= 0.5, for ``find``
  (default thresholds) and for the single mask of referring grounding ``predict(text="car")``.
* seconds per image for ``find(["car", "pedestrian"])`` against ``find("car")`` then ``find("pedestrian")``, each
  on a freshly set image (the object-query pass is not shared between the separate calls, as for two requests
  on two predictors), and with the separate calls sharing the image's cached pass. The image encoder is not
  timed (``set_image`` is the same in every case); per image the median of 3 repeats after a warm-up call.
  One torch thread.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from seem import SeemPredictor, from_pretrained
from seem.evaluation.instance_ap import MaskAPAccumulator
from seem.mask_ops import mask_iou_matrix

PHRASES = ("car", "pedestrian")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _times(predictor: SeemPredictor, repeats: int = 3) -> dict[str, float]:
    """Median seconds of one multi-phrase call and of separate calls (cold, and sharing the cached pass), after
    one untimed warm-up call on the image."""
    predictor.find(list(PHRASES))
    runs: dict[str, list[float]] = {"one_call": [], "separate_calls": [], "separate_calls_shared_pass": []}
    for _ in range(repeats):
        predictor._everything = None
        runs["one_call"].append(_timed(lambda: predictor.find(list(PHRASES))))
        cold = 0.0
        for p in PHRASES:
            predictor._everything = None  # a fresh image: the object queries are decoded again
            cold += _timed(lambda p=p: predictor.find(p))
        runs["separate_calls"].append(cold)
        runs["separate_calls_shared_pass"].append(sum(_timed(lambda p=p: predictor.find(p)) for p in PHRASES))
    return {k: float(np.median(v)) for k, v in runs.items()}


def _recall(gt: list[np.ndarray], masks: np.ndarray) -> list[bool]:
    if not gt:
        return []
    if len(masks) == 0:
        return [False] * len(gt)
    iou = mask_iou_matrix(torch.from_numpy(np.stack(gt)), torch.from_numpy(masks))
    return (iou.max(1).values >= 0.5).tolist()


def run(predictor: SeemPredictor, root: str, limit: int | None) -> dict:
    from seem.data.readers_coco import CocoPanopticReader

    reader = CocoPanopticReader(f"{root}/images", f"{root}/panoptic_val.json", f"{root}/panoptic_val")
    n = len(reader) if limit is None else min(limit, len(reader))
    ap = {p: MaskAPAccumulator([p]) for p in PHRASES}
    recall: dict[str, list[bool]] = {"find": [], "grounding": []}
    times: dict[str, list[float]] = {}
    for i in range(n):
        sample = reader[i]
        predictor.set_image(sample.image)
        for k, v in _times(predictor).items():
            times.setdefault(k, []).append(v)
        result = predictor.find(list(PHRASES))
        for p in PHRASES:
            gt = [m for m, c in zip(sample.masks, sample.class_names) if c == p and m.any()]
            g = result[p]
            gt_arr = np.stack(gt) if gt else np.zeros((0, *sample.image.shape[:2]), dtype=bool)
            ap[p].add(i, gt_arr, [0] * len(gt), g.masks, [0] * len(g), g.scores)
            if p == "car":
                recall["find"] += _recall(gt, g.masks)
                recall["grounding"] += _recall(gt, predictor.predict(text="car").masks)
    report: dict = {"images": n}
    for p, acc in ap.items():
        s = acc.summary()
        report[f"find_{p}"] = {"AP50": round(s["AP50"], 1), "AP": round(s["AP"], 1), "gt": s["num_gt"],
                               "predictions": s["num_pred"]}
    report["car_recall@0.5"] = {k: round(float(np.mean(v)) * 100, 1) for k, v in recall.items()}
    report["cars"] = len(recall["find"])
    report["seconds_per_image"] = {k: round(float(np.mean(v)), 4) for k, v in times.items()}
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint path (default: the bundled model)")
    ap.add_argument("--camvid", default="../shared/datasets/camvid")
    ap.add_argument("--limit", type=int, default=None, help="CamVid val images (default all 101)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = from_pretrained(args.model) if args.model else from_pretrained()
    predictor = SeemPredictor(model, vocabulary_cache_dir=None)
    report = run(predictor, args.camvid, args.limit)
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
