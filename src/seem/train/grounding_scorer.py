"""Train a model's grounding scorer (:mod:`seem.grounding_choice`) on the class names of real photos.

    python -m seem.train.grounding_scorer [--model IN] OUT [--data ../shared/datasets] [--photos 400]

The rest of the model is frozen (its candidate scorer, if any, is kept). On the training split of coco128,
ccp and camvid (``seem.data.real_sets``: the fixed validation part is never read), every class name a photo
holds (COCO things, CCP persons and their clothing / hair / skin parts, CamVid's street classes) becomes a text
prompt whose target is the union of that class's segments, as the text evaluations score it (cIoU against the
class's pixels). Each prompt is decoded once; every grounding query's mask is made as the predictor makes a
text prompt's mask (bilinear, antialiased, at the original size) and its IoU with the target is measured.
The scorer is then fitted as the click scorer is (:func:`seem.train.candidate_scorer.fit`: soft-max of its
scores over a prompt's grounding queries towards the soft-max of their IoUs) and written with the input
weights as a bundled checkpoint (:func:`seem.train.export.export_checkpoint`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from seem.train.candidate_scorer import ScorerTrainConfig, fit, picked_iou

SETS = ("coco128", "ccp", "camvid")


def class_targets(record, min_area: int) -> dict[str, np.ndarray]:
    """``{class name: (H, W) bool union of its segments}`` of a photo's classed layers (generic and part roles;
    class-agnostic regions have no name), for the classes of at least ``min_area`` pixels."""
    from seem.data.real_sets import ROLE_GENERIC, ROLE_PART

    out: dict[str, np.ndarray] = {}
    for layer in record.layers:
        if layer.role not in (ROLE_GENERIC, ROLE_PART):
            continue
        for k, name in enumerate(layer.names):
            mask = layer.index == k
            out[name] = out[name] | mask if name in out else mask
    return {n: m for n, m in out.items() if int(m.sum()) >= min_area}


def collect(predictor, records, min_area: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (G, Q, 15), ious (G, Q))``: one group per (photo, class name) text prompt, ``Q`` grounding
    queries each."""
    from seem.grounding_choice import GROUNDING_FEATURES, grounding_candidates
    from seem.postprocess import masks_with_scores
    from seem.prompt_round import decode_round
    from seem.prompts import Prompts

    model = predictor.decoding_model
    feats, ious = [], []
    for record in records:
        predictor.set_image(record.image)
        frame, features = predictor._require_image()
        for name, target in sorted(class_targets(record, min_area).items()):
            with torch.inference_mode():
                run = decode_round(predictor, Prompts(text=name), None, joint_prompts=True)
                c = grounding_candidates(run.out, features, model.decoder, run.text, frame, model.text_encoder.logit_scale,
                                         model.config.inference.grounding_logit_scale_max)
                logits = c.logits
                feats.append(c.features[0])
                t = torch.from_numpy(target).to(logits.device)
                inter = torch.zeros(len(logits))
                union = torch.zeros(len(logits))
                for q in range(len(logits)):  # one at a time: (Q, H, W) float masks would be large
                    mask = masks_with_scores(frame, logits[q:q + 1], "bilinear", True)[0][0]
                    inter[q] = float((mask & t).sum())
                    union[q] = float((mask | t).sum())
            ious.append(inter / union.clamp(min=1))
    if not feats:
        q = predictor.model.config.decoder.num_queries
        return torch.zeros(0, q, GROUNDING_FEATURES), torch.zeros(0, q)
    return torch.stack(feats), torch.stack(ious).float()


def main(argv=None) -> int:
    from seem import SeemPredictor
    from seem.checkpoint import save_safetensors
    from seem.train.candidate_scorer import _description, check_counts, model_without_scorer, training_photos
    from seem.train.export import export_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="output .safetensors (the input weights plus the grounding scorer)")
    ap.add_argument("--model", default=None, help="input weights (default: the bundled model)")
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--photos", type=int, default=ScorerTrainConfig.photos_per_set, help="training photos per set")
    ap.add_argument("--min-area", type=int, default=16, help="smallest class area in pixels")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    check_counts(ap, args)
    torch.set_num_threads(args.threads)
    config = ScorerTrainConfig(photos_per_set=args.photos)
    model = model_without_scorer(args.model, "grounding_scorer")
    predictor = SeemPredictor(model, vocabulary_cache_dir=None)
    t0 = time.perf_counter()
    groups = []
    for name in SETS:
        records = training_photos(ap, args.data, name)
        rng = np.random.default_rng(config.seed)
        chosen = sorted(rng.choice(len(records), min(config.photos_per_set, len(records)), replace=False))
        groups.append(collect(predictor, [records[i] for i in chosen], args.min_area))
        print(f"{name}: {len(groups[-1][0])} text prompts ({time.perf_counter() - t0:.0f} s)", flush=True)
    features, ious = (torch.cat(x) for x in zip(*groups))
    if not len(features):
        ap.error(f"no text prompts: no class of at least {args.min_area} pixels in {args.data}'s training photos")
    scorer = fit(features, ious, config)
    scorer.name = "grounding scorer"
    mine, eq6, best = picked_iou(scorer, features, ious)
    print(f"training prompts: mean IoU of the scorer's / Eq. 6's / the best query: {mine:.3f} / {eq6:.3f} / {best:.3f}")
    model.grounding_scorer = scorer
    model.config = replace(model.config, grounding_scorer_hidden=config.hidden)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "model.safetensors"
        save_safetensors(model.state_dict(), full, config=model.config)
        export_checkpoint(full, args.target, config=model.config,
                          description=_description(args.model, "grounding scorer", "seem.train.grounding_scorer"))
    print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
