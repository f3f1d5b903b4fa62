"""Click refinement on the training sets' held-out photos: the validation split for inference settings.

    python benchmarks/eval_heldout_clicks.py [--model PATH] [--data ../shared/datasets] [--rounds 5] [--first-prompt box]

The bundled model's training draws never touch a fixed 10 % of each real set's photos (a hash of the file
name, ``seem.data.real_sets.is_validation``). This script runs the RITM click protocol
(``seem.train.clicker.simulate_clicks``: each round adds a click on the current error and sends all clicks
plus the previous mask as memory) on those photos' segments: COCO things (coco128), whole persons and their
clothing / hair / skin parts (ccp) and one annotator's regions per photo (bsds500). Inference settings such as
the click fit's prior are chosen on these numbers, never on a benchmark (GrabCut, the VOC photo). With
``--first-prompt box`` the first round is the segment's box and later rounds add clicks with the box kept
(``seem.evaluation.interactive.interactive_curve``, GrabCut's box-first protocol).

Per set it prints mIoU after each round and the share of segments whose IoU fell from round 1 to the last
(refinement that degrades). Segments smaller than ``--min-area`` pixels are skipped; at most
``--per-photo`` segments per photo (the largest first, then every ``n``-th: sizes stay mixed).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from seem import SeemPredictor, from_pretrained
from seem.data.real_sets import ROLE_GENERIC, ROLE_PART, ROLE_REGION, load_set, photo_segments
from seem.evaluation.interactive import FIRST_PROMPTS, interactive_curve
from seem.train.clicker import simulate_clicks
from seem.zoom import ZoomInPredictor

SETS = ("coco128", "ccp", "bsds500")
# --whole-objects: the segments with a class (ROLE_GENERIC: COCO things, CCP persons, CamVid's street classes),
# the validation split of the candidate scorer (seem.candidates), which is trained on those sets' other photos
WHOLE_SETS = ("coco128", "ccp", "camvid")


def evaluate(predictor: SeemPredictor | ZoomInPredictor, records, rounds: int, min_area: int, per_photo: int,
             roles: tuple[str, ...] = (ROLE_GENERIC, ROLE_PART, ROLE_REGION), first_prompt: str = "point") -> dict:
    curves = []
    for record in records:
        predictor.set_image(record.image)
        for m in photo_segments(record, min_area, per_photo, roles):
            if first_prompt == "point":
                curves.append(simulate_clicks(predictor, m, rounds))
            else:  # the box (or other region) first, then clicks with it kept (seem.evaluation.interactive)
                curves.append(interactive_curve(predictor, m, max_clicks=rounds, first_prompt=first_prompt))
    if not curves:
        return {"segments": 0}
    c = np.asarray(curves) * 100
    return {"photos": len(records), "segments": len(c),
            **{f"mIoU@{k + 1}": round(float(c[:, k].mean()), 2) for k in range(rounds)},
            "worse_than_first_%": round(float((c[:, -1] < c[:, 0] - 1).mean() * 100), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--photos", type=int, default=15, help="held-out photos per set (at most)")
    ap.add_argument("--per-photo", type=int, default=4)
    ap.add_argument("--min-area", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shorter-side", type=int, default=None, help="model input size (default: the model's own)")
    ap.add_argument("--whole-objects", action="store_true",
                    help="only segments with a class (COCO things, CCP persons, CamVid), from coco128 / ccp / camvid")
    ap.add_argument("--first-prompt", choices=FIRST_PROMPTS, default="point",
                    help="the first round's prompt: a click (default) or a region drawn from the segment, kept in "
                         "every later round with the clicks (box: InferenceConfig.box_anchor's validation)")
    ap.add_argument("--zoom-in", action="store_true", help="rounds through seem.zoom.ZoomInPredictor")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = from_pretrained(args.model) if args.model else from_pretrained()
    size = {} if args.shorter_side is None else {"shorter_side": args.shorter_side, "max_size": 2 * args.shorter_side}
    predictor = SeemPredictor(model, vocabulary_cache_dir=None, **size)
    if args.zoom_in:
        predictor = ZoomInPredictor(predictor)
    report: dict = {}
    t0 = time.perf_counter()
    roles = (ROLE_GENERIC,) if args.whole_objects else (ROLE_GENERIC, ROLE_PART, ROLE_REGION)
    for name in WHOLE_SETS if args.whole_objects else SETS:
        records = load_set(args.data, name, split="val")[: args.photos]
        report[name] = evaluate(predictor, records, args.rounds, args.min_area, args.per_photo, roles, args.first_prompt)
        print(name, json.dumps(report[name]), flush=True)
    per_set = [r for r in report.values() if r.get("segments")]
    report["mean_of_sets"] = {k: round(float(np.mean([r[k] for r in per_set])), 2)
                              for k in per_set[0] if k.startswith("mIoU@") or k == "worse_than_first_%"}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print("mean of sets", json.dumps(report["mean_of_sets"]), f"({report['seconds']} s)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
