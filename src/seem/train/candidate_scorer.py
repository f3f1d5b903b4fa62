"""Train a model's spatial-query candidate scorer (:mod:`seem.candidates`) on simulated clicks, its refine scorer
on the later rounds of those clicks (``--prompt refine``), or its box scorer on bounding boxes (``--prompt boxes``:
each whole object's box, one round, :func:`collect_boxes`).

    python -m seem.train.candidate_scorer [--model IN] OUT [--data ../shared/datasets] [--photos 400] [--prompt refine|boxes]

The rest of the model is frozen. On the training split of coco128, ccp and camvid (``seem.data.real_sets``: the
fixed validation part is never read), each photo's whole objects and classed regions (COCO things, CCP persons,
CamVid's street classes: :func:`~seem.data.real_sets.photo_segments` with ``ROLE_GENERIC``; a click is taken to
mean the whole object, as in GrabCut / VOC protocols; trained with parts and BSDS regions too, the scorer
preferred small masks and lost 3 points on GrabCut's first click) get the RITM click protocol for ``rounds``
rounds (:func:`seem.train.clicker.next_click`, the previous round's mask as memory, the round's mask chosen by
Eq. 5 as the model without a scorer does; the candidate scorer: 1 round, the first click, where the predictor uses
it; the refine scorer: rounds 2 and 3, each with the previous mask as memory, :data:`REFINE`). In every round all candidates
are post-processed as the predictor returns them (:meth:`seem.predictor.SeemPredictor.click_candidates`) and
their IoU with the segment is measured. The scorer is then fitted on these groups: cross-entropy between the
soft-max of its scores over an object's candidates and the soft-max of their IoUs at ``temperature`` (a soft
"pick the best"), AdamW, full-batch-shuffled minibatches. The result is the input weights plus the scorer,
written as a bundled checkpoint (:func:`seem.train.export.export_checkpoint`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from seem.candidates import SCORER_FEATURES, SCORER_PREFIXES

# whole objects and regions with a class (ROLE_GENERIC): COCO things, CCP persons, CamVid's street classes
SETS = ("coco128", "ccp", "camvid")
# the learned scorers' names (their state-dict prefixes without the dot)
SCORERS = tuple(prefix.rstrip(".") for prefix in SCORER_PREFIXES)
# --prompt -> the scorer it fits
PROMPT_SCORERS = {"clicks": "candidate_scorer", "refine": "refine_scorer", "boxes": "box_scorer"}


@dataclass(frozen=True)
class ScorerTrainConfig:
    """Collection and fitting settings (defaults: the bundled model's run)."""

    photos_per_set: int = 400
    per_photo: int = 6
    # first rounds only: where the predictor uses the scorer (fitted on 3 rounds, the held-out first-click pick
    # was 0.3 points lower, 4 seeds each) and a third of the collection time
    rounds: int = 1
    # rounds before this one are played (the protocol needs them) but not collected: the refine scorer's data
    first_round: int = 0
    min_area: int = 100
    hidden: int = 32
    epochs: int = 200
    lr: float = 1e-3
    weight_decay: float = 1e-2
    temperature: float = 0.1
    batch: int = 256
    seed: int = 0


# the refine scorer's rounds: clicks 2 and 3 (offline, fitted on them, the held-out later-click pick rose 62.1 -> 64.5 %
# mean IoU over Eq. 5's; the first click's scorer applied there lost GrabCut's mIoU@5 3.3 points)
REFINE = replace(ScorerTrainConfig(), rounds=3, first_round=1)


def eq5_pick(features: torch.Tensor) -> torch.Tensor:
    """Eq. 5's candidate in each group of ``features`` ``(..., C, F)`` (the first whose match equals its object's
    best: column 8, match minus the best, is 0), as the model without a scorer picks it."""
    return (features[..., 8] >= 0).float().argmax(-1)


def collect(predictor, records, config: ScorerTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (G, C, F), ious (G, C))``: one group per object and round from ``config.first_round`` on (0-based),
    ``C`` candidates each."""
    from seem.data.real_sets import ROLE_GENERIC, photo_segments
    from seem.postprocess import masks_with_scores
    from seem.prompts import Prompts
    from seem.train.clicker import iou, next_click

    feats, ious = [], []
    for record in records:
        predictor.set_image(record.image)
        for gt in photo_segments(record, config.min_area, config.per_photo, roles=(ROLE_GENERIC,)):
            points: list[list[float]] = []
            labels: list[int] = []
            pred, memory = np.zeros_like(gt), None
            for round_index in range(config.rounds):
                c = next_click(gt, pred)
                if c is None:
                    break
                points.append([c.x + 0.5, c.y + 0.5])
                labels.append(int(c.positive))
                cands = predictor.click_candidates(Prompts(points=points, point_labels=labels), memory)
                masks = masks_with_scores(predictor.frame, cands.logits, "bicubic", False, cands.support)[0].cpu().numpy()
                if round_index >= config.first_round:
                    feats.append(cands.features)
                    ious.append(torch.tensor([iou(m, gt) for m in masks]))
                pick = int(eq5_pick(cands.features))  # continue as the model without a scorer would
                memory, pred = cands.logits[pick][None], masks[pick]
    if not feats:  # no photo with a segment of min_area pixels
        return _no_groups(predictor)
    return torch.stack(feats), torch.stack(ious).float()


def _no_groups(predictor) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty ``(0, C, 24)`` features and ``(0, C)`` IoUs (``C``: the model's candidates per object)."""
    from seem.candidates import NUM_FEATURES

    cfg = predictor.model.config
    c = cfg.decoder.num_queries if cfg.inference.spatial_queries == "all" else cfg.decoder.query_number
    return torch.zeros(0, c, NUM_FEATURES), torch.zeros(0, c)


def collect_boxes(predictor, records, config: ScorerTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (G, C, F), ious (G, C))`` for the box scorer: one group per whole object (as :func:`collect`
    chooses them), prompted by its bounding box in one round; every candidate post-processed as the predictor
    returns a box's mask (no click fit; prompt-connected to the box) and its IoU with the object measured."""
    from seem.candidates import spatial_candidates
    from seem.data.real_sets import ROLE_GENERIC, photo_segments
    from seem.mask_ops import masks_to_boxes
    from seem.postprocess import masks_with_scores
    from seem.prompt_round import decode_round
    from seem.prompts import Prompts
    from seem.train.clicker import iou

    feats, ious = [], []
    inference = predictor.model.config.inference
    for record in records:
        predictor.set_image(record.image)
        frame, features = predictor._require_image()
        for gt in photo_segments(record, config.min_area, config.per_photo, roles=(ROLE_GENERIC,)):
            prompts = Prompts(boxes=masks_to_boxes(torch.from_numpy(gt)[None]).tolist())
            with torch.inference_mode():
                run = decode_round(predictor, prompts, None, joint_prompts=True)
                cands = spatial_candidates(run.out, features, predictor.decoding_model.decoder, prompts, frame,
                                           run.positive, inference, False)
                masks = masks_with_scores(frame, cands.logits, "bicubic", False, cands.support)[0].cpu().numpy()
            feats.append(cands.features.float().cpu())
            ious.append(torch.tensor([iou(m, gt) for m in masks]))
    if not feats:
        return _no_groups(predictor)
    return torch.stack(feats), torch.stack(ious).float()


def fit(features: torch.Tensor, ious: torch.Tensor, config: ScorerTrainConfig):
    """A :class:`~seem.candidates.CandidateScorer` fitted to ``features (G, C, F)`` / ``ious (G, C)`` (``F``: 22
    for click candidates, 17 for boxes, 15 for grounding queries, :mod:`seem.train.grounding_scorer`)."""
    from seem.candidates import CandidateScorer

    torch.manual_seed(config.seed)
    scorer = CandidateScorer(config.hidden, int(features.shape[-1]))
    flat = features.reshape(-1, features.shape[-1])
    scorer.feature_mean.copy_(flat.mean(0))
    scorer.feature_std.copy_(flat.std(0) + 1e-4)
    opt = torch.optim.AdamW(scorer.parameters(), config.lr, weight_decay=config.weight_decay)
    target = torch.softmax(ious / config.temperature, -1)
    for _ in range(config.epochs):
        for b in torch.randperm(len(features)).split(config.batch):
            loss = -(target[b] * torch.log_softmax(scorer(features[b]), -1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return scorer.eval()


def picked_iou(scorer, features: torch.Tensor, ious: torch.Tensor) -> tuple[float, float, float]:
    """Mean IoU of the scorer's pick (as inference picks: an empty candidate, feature 0 = 0, never over a
    non-empty one; all empty: Eq. 5's), of Eq. 5's pick and of the best candidate over ``G`` groups."""
    empty = features[..., 0] <= 0
    with torch.no_grad():
        scores = scorer(features).float().masked_fill(empty, -torch.inf)
    eq5 = eq5_pick(features)
    mine = torch.where(empty.all(-1), eq5, scores.argmax(-1))
    rows = torch.arange(len(ious))
    return float(ious[rows, mine].mean()), float(ious[rows, eq5].mean()), float(ious.max(-1).values.mean())


def check_counts(ap: argparse.ArgumentParser, args) -> None:
    """Refuse ``--photos`` / ``--threads`` below 1 (an argparse error, exit status 2)."""
    for name in ("photos", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")


def training_photos(ap: argparse.ArgumentParser, data: str, name: str) -> list:
    """The training split of set ``name`` under ``data``; a missing or malformed set is an argparse error."""
    from seem.data.real_sets import load_set
    from seem.errors import ConfigError

    try:
        return load_set(data, name, split="train")
    except ConfigError as e:
        ap.error(f"--data {data}: {e}")


def with_scorer_width(config, scorer: str, hidden: int):
    """``config`` (a :class:`~seem.configs.SeemConfig`) with ``scorer``'s hidden width set to ``hidden``.
    ``ValueError``: ``scorer`` not one of :data:`SCORERS`."""
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {scorer!r}")
    return replace(config, **{f"{scorer}_hidden": hidden})


def model_without_scorer(name_or_path: str | None, scorer: str = "candidate_scorer"):
    """The model of ``name_or_path`` (default: the bundled one) built and loaded without its ``scorer``
    (one of :data:`SCORERS`), whose keys are dropped: the scorer to fit
    replaces it (and an older scorer may read other features). The other scorers, if any, are kept."""
    from seem.build import build_seem
    from seem.candidates import without_scorer
    from seem.checkpoint import load_state_dict_strict, read_checkpoint, to_seem_state_dict
    from seem.hub import DEFAULT_MODEL, resolve_checkpoint

    path, config = resolve_checkpoint(name_or_path or DEFAULT_MODEL)
    model = build_seem(with_scorer_width(config, scorer, 0))
    state = to_seem_state_dict(read_checkpoint(path))
    load_state_dict_strict(model, without_scorer(state, (f"{scorer}.",)))
    return model.eval()


def _description(name_or_path: str | None, scorer: str = "candidate scorer",
                 command: str = "seem.train.candidate_scorer") -> str:
    """The output's metadata ``source``: the input's own source (or its name) + the scorer (a re-fitted scorer
    replaces the input's mention of it)."""
    from seem.checkpoint import read_safetensors_metadata
    from seem.hub import DEFAULT_MODEL, resolve_checkpoint

    path, _ = resolve_checkpoint(name_or_path or DEFAULT_MODEL)
    base = (read_safetensors_metadata(path).get("source") if path.suffix == ".safetensors" else None) or path.name
    parts = [p for p in base.split(" + ") if not p.startswith(scorer)]
    return " + ".join(parts + [f"{scorer} (python -m {command})"])


def main(argv=None) -> int:
    from seem import SeemPredictor
    from seem.checkpoint import save_safetensors
    from seem.configs import SPATIAL_QUERY_MODES
    from seem.train.export import export_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="output .safetensors (the input weights plus the scorer)")
    ap.add_argument("--model", default=None, help="input weights (default: the bundled model)")
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--photos", type=int, default=ScorerTrainConfig.photos_per_set, help="training photos per set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spatial-queries", choices=SPATIAL_QUERY_MODES, default=None,
                    help="the candidates to rank (InferenceConfig.spatial_queries; default: the model's)")
    ap.add_argument("--prompt", choices=tuple(PROMPT_SCORERS), default="clicks",
                    help="clicks: the candidate scorer (first click); refine: the refine scorer (clicks 2-3, the "
                         "previous mask as memory); boxes: the box scorer (bounding boxes)")
    args = ap.parse_args(argv)
    check_counts(ap, args)
    torch.set_num_threads(args.threads)
    config = replace(REFINE if args.prompt == "refine" else ScorerTrainConfig(), photos_per_set=args.photos)
    name = PROMPT_SCORERS[args.prompt]
    model = model_without_scorer(args.model, name)
    if args.spatial_queries:
        model.config = replace(model.config, inference=replace(model.config.inference, spatial_queries=args.spatial_queries))
    if args.prompt != "boxes" and not model.config.inference.click_fit:
        ap.error("the scorer ranks click-fitted candidates: the model's InferenceConfig.click_fit must be on")
    # the data are collected without a scorer (Eq. 5 continues the protocol)
    predictor = SeemPredictor(model, vocabulary_cache_dir=None)
    t0 = time.perf_counter()
    groups = []
    for set_name in SETS:
        records = training_photos(ap, args.data, set_name)
        rng = np.random.default_rng(config.seed)
        chosen = sorted(rng.choice(len(records), min(config.photos_per_set, len(records)), replace=False))
        groups.append((collect_boxes if args.prompt == "boxes" else collect)(predictor, [records[i] for i in chosen], config))
        print(f"{set_name}: {len(groups[-1][0])} {args.prompt} rounds ({time.perf_counter() - t0:.0f} s)", flush=True)
    features, ious = (torch.cat(x) for x in zip(*groups))
    features = features[..., : SCORER_FEATURES[name]]  # the columns the scorer reads (the box scorer: click-free)
    if not len(features):
        ap.error(f"no rounds: no whole object of at least {config.min_area} pixels in {args.data}'s training photos"
                 + (" needed a second click" if config.first_round else ""))
    scorer = fit(features, ious, config)
    scorer.name = name.replace("_", " ")
    mine, eq5, best = picked_iou(scorer, features, ious)
    print(f"training rounds: mean IoU of the scorer's / Eq. 5's / the best candidate: {mine:.3f} / {eq5:.3f} / {best:.3f}")
    setattr(model, name, scorer)
    model.config = with_scorer_width(model.config, name, config.hidden)
    command = "seem.train.candidate_scorer" + ("" if args.prompt == "clicks" else f" --prompt {args.prompt}")
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "model.safetensors"
        save_safetensors(model.state_dict(), full, config=model.config)
        export_checkpoint(full, args.target, config=model.config,
                          description=_description(args.model, scorer.name, command))
    print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
