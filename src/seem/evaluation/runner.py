"""Run a predictor over a whole data set and gather the published metrics in one JSON-able report.

* :func:`run_interactive`: the RITM / SimpleClick click protocol (:func:`~seem.evaluation.interactive.interactive_curve`:
  first click at the object's distance-transform maximum, then at the centre of the larger error region,
  all prompts plus the previous mask every round, IoU without the ignore band) on every object of an
  interactive data set (:mod:`seem.evaluation.datasets`), once per first prompt -> NoC@85/90/95, NoF@85/90,
  mIoU@1..5 and @max_clicks, timings.
* :func:`run_referring`: every referring expression -> ``predict(text=...)``; cIoU / mIoU / precision@0.5..0.9
  as SEEM's ``GroundingEvaluator`` (:mod:`~seem.evaluation.referring`).
* :func:`run_generic`: ``segment_everything`` three ways on a panoptic data set: PQ / SQ / RQ (COCO
  ``panopticapi``), semantic mIoU / fwIoU / mACC / pACC (detectron2 ``SemSegEvaluator``) against the semantic map
  of the panoptic GT (void 255), and COCO mask AP on the thing classes against the thing segments.

Predictor errors on one sample (:class:`~seem.errors.PromptError`, :class:`~seem.errors.ImageError` from
``set_image``) are recorded in ``report["errors"]`` and the sample left out; data set errors propagate.
The printed table and the JSON file of a report: :mod:`seem.evaluation.report`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from seem.evaluation.common import describe_dataset, num_samples, progress_bar, to_plain
from seem.evaluation.interactive import FIRST_PROMPTS, interactive_curve, summarize
from seem.prompts import Prompts

GENERIC_TASKS: tuple[str, ...] = ("panoptic", "semantic", "instance")


class _CountingPredictor:
    """Forwards ``predict`` and counts the calls (one call = one click round)."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.calls = 0

    def predict(self, *args, **kwargs):
        self.calls += 1
        return self.predictor.predict(*args, **kwargs)


def _set_image(predictor, image, name: str, errors: list, task: str) -> bool:
    from seem.errors import ImageError, PromptError

    try:
        predictor.set_image(image)
        return True
    except (ImageError, PromptError) as e:
        errors.append({"image": name, "task": task, "error": str(e)})
        return False


def run_interactive(predictor, dataset, first_prompts: Sequence[str] = ("point",), max_clicks: int = 20,
                    limit: int | None = None, progress: bool = True) -> dict:
    """Click protocol on every object of the first ``limit`` images of ``dataset``, once per first prompt.

    Args:
        predictor: a :class:`~seem.predictor.SeemPredictor` (anything with ``set_image`` and ``predict``).
        dataset: ``len()`` and ``ds[i] -> (name, image (H, W, 3) uint8, [(gt (H, W) bool, ignore (H, W) bool | None)])``
            (:mod:`seem.evaluation.datasets`).
        first_prompts: subset of ``point``, ``scribble``, ``polygon``, ``box``; each one is a separate run
            (the image is encoded once for all).
        max_clicks: rounds per object (NoC cap, 20 in RITM / SimpleClick / SEEM).
        limit: number of images (``None``: all).
        progress: tqdm bar (when tqdm is installed).

    Returns:
        ``{"task", "dataset", "protocol", "num_images", "interactive": {prompt: summarize() numbers (NoC in
        clicks, NoF counts, mIoU@k percent) + "num_clicks", "seconds", "seconds_per_click", "mean_curve"
        (percent per click)}, "skipped_objects", "skipped", "errors", "seconds", "seconds_encode"}``.
        Seconds are wall time: ``seconds_per_click`` = prediction time / ``predict`` calls.

    Raises:
        ValueError: an unknown first prompt, ``max_clicks < 1`` or a negative ``limit``.
    """
    from seem.errors import PromptError

    prompts = list(dict.fromkeys(first_prompts))
    bad = [p for p in prompts if p not in FIRST_PROMPTS]
    if bad or not prompts:
        raise ValueError(f"first prompts must be among {FIRST_PROMPTS}, got {list(first_prompts)}")
    if int(max_clicks) < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    n = num_samples(dataset, limit)
    counting = _CountingPredictor(predictor)
    curves: dict[str, list] = {p: [] for p in prompts}
    seconds = dict.fromkeys(prompts, 0.0)
    clicks = dict.fromkeys(prompts, 0)
    errors: list[dict] = []
    encode = 0.0
    start = time.perf_counter()
    for i in progress_bar(range(n), progress, total=n, desc="images"):
        name, image, instances = dataset[i]
        if not instances:
            continue
        t = time.perf_counter()
        ok = _set_image(predictor, image, name, errors, "interactive")
        encode += time.perf_counter() - t
        if not ok:
            continue
        for prompt in prompts:
            for j, (gt, ignore) in enumerate(instances):
                t, calls = time.perf_counter(), counting.calls
                try:
                    curves[prompt].append(interactive_curve(counting, gt, max_clicks=max_clicks, ignore=ignore,
                                                            first_prompt=prompt, rng=np.random.default_rng([i, j])))
                except PromptError as e:  # left out of the metrics and of the timings
                    errors.append({"image": name, "task": "interactive", "instance": j, "first_prompt": prompt, "error": str(e)})
                    continue
                seconds[prompt] += time.perf_counter() - t
                clicks[prompt] += counting.calls - calls
    results = {}
    for p in prompts:
        c = curves[p]
        results[p] = summarize(c, max_clicks) | {
            "num_clicks": clicks[p], "seconds": seconds[p],
            "seconds_per_click": seconds[p] / clicks[p] if clicks[p] else float("nan"),
            "mean_curve": [100.0 * float(np.mean([x[min(k, len(x) - 1)] for x in c])) for k in range(max_clicks)] if c else []}
    skipped = list(getattr(dataset, "skipped", []))
    return to_plain({
        "task": "interactive", "dataset": describe_dataset(dataset),
        "protocol": {"max_clicks": int(max_clicks), "first_prompts": prompts, "limit": limit,
                     "clicks": "RITM: first click at the GT distance-transform maximum, then the centre of the "
                               "larger error region (FN -> positive, FP -> negative); previous mask as memory",
                     "mask": "probability > 0.5", "iou": "ignore pixels excluded"},
        "num_images": n, "interactive": results, "skipped_objects": len(skipped), "skipped": skipped[:50],
        "errors": errors, "seconds": time.perf_counter() - start, "seconds_encode": encode})


def run_referring(predictor, dataset, limit: int | None = None, progress: bool = True) -> dict:
    """Every expression of the first ``limit`` samples -> ``predict(text=...).masks[0]`` against its mask.

    Args:
        dataset: indexable :class:`~seem.data.sample.Sample` records with ``expressions`` (``(text, mask
            index)``): :class:`~seem.data.readers_refcoco.RefCocoReader` or
            :class:`~seem.evaluation.datasets.SceneSamples`.

    Returns:
        ``{"task", "dataset", "num_images", "referring": {num, cIoU, mIoU, precision@0.5..0.9 (percent)},
        "errors", "seconds", "seconds_per_expression"}``.
    """
    from seem.errors import PromptError
    from seem.evaluation.referring import ReferringAccumulator

    n = num_samples(dataset, limit)
    acc = ReferringAccumulator()
    errors: list[dict] = []
    start = time.perf_counter()
    for i in progress_bar(range(n), progress, total=n, desc="images"):
        sample = dataset[i]
        if not sample.expressions or not _set_image(predictor, sample.image, sample.image_id, errors, "referring"):
            continue
        for text, k in sample.expressions:
            try:
                pred = predictor.predict(Prompts(text=text))
            except PromptError as e:
                errors.append({"image": sample.image_id, "task": "referring", "text": text, "error": str(e)})
                continue
            acc.add(pred.masks[0], sample.masks[k])
    seconds = time.perf_counter() - start
    summary = acc.summary()
    return to_plain({"task": "referring", "dataset": describe_dataset(dataset), "num_images": n, "referring": summary,
                   "errors": errors, "seconds": seconds,
                   "seconds_per_expression": seconds / summary["num"] if summary["num"] else float("nan")})


def _metric_accumulators(tasks, names, is_thing, void) -> tuple[dict, dict]:
    """Accumulators of the requested tasks; a task whose optional dependency is missing is skipped."""
    from seem.evaluation.panoptic import PQAccumulator

    accs: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    things = [n for n, t in zip(names, is_thing) if t]
    for task in tasks:
        try:
            if task == "panoptic":
                accs[task] = PQAccumulator(is_thing, names)
            elif task == "semantic":
                from seem.evaluation.semantic import SemanticAccumulator

                accs[task] = SemanticAccumulator(len(names), ignore_index=void, class_names=list(names))
            elif task == "instance":
                if not things:
                    skipped[task] = "no thing class"
                    continue
                from seem.errors import require
                from seem.evaluation.instance_ap import MaskAPAccumulator

                require("pycocotools.cocoeval", "io")  # needed by add() / summary(): check before the run
                accs[task] = MaskAPAccumulator(things)
            else:
                raise ValueError(f"unknown task {task!r}; choose among {GENERIC_TASKS}")
        except ImportError as e:
            if str(getattr(e, "name", None) or "").startswith("seem"):
                raise
            skipped[task] = str(e)
            warnings.warn(f"{task} metrics skipped: {e}", stacklevel=3)
    return accs, skipped


def run_generic(predictor, dataset, limit: int | None = None, progress: bool = True,
                tasks: Sequence[str] = GENERIC_TASKS, text_grounding: bool = False) -> dict:
    """Panoptic, semantic and instance segmentation of the first ``limit`` samples over the data set's classes.

    Args:
        dataset: indexable :class:`~seem.data.sample.Sample` records whose ``masks`` are disjoint panoptic
            segments, with ``class_names`` and ``thing_flags`` (the label space, the vocabulary given to
            ``segment_everything``): :class:`~seem.data.readers_coco.CocoPanopticReader` or
            :class:`~seem.evaluation.datasets.SceneSamples`.
        tasks: subset of ``panoptic`` (PQ), ``semantic`` (GT: class id per pixel, 255 where no segment) and
            ``instance`` (mask AP over thing classes; skipped with a warning when its dependency is missing).
        text_grounding: semantic maps with each class name also grounded (``segment_everything``'s option of
            that name, :mod:`seem.grounded_semantic`); the report records it.

    Returns:
        ``{"task", "dataset", "num_images", "panoptic": {PQ, SQ, RQ (+ _th / _st, percent), per_class},
        "semantic": {mIoU, fwIoU, mACC, pACC (percent), per_class}, "instance": {AP, AP50, AP75, APs, APm, APl
        (percent), ...}, "skipped_tasks", "errors", "seconds", "seconds_per_image"}``.
    """
    from seem.errors import PromptError

    names = [str(n) for n in dataset.class_names]
    is_thing = [bool(t) for t in dataset.thing_flags]
    thing_names = [n for n, t in zip(names, is_thing) if t]
    index = {n: k for k, n in enumerate(names)}
    to_thing = {index[n]: k for k, n in enumerate(thing_names)}
    void = max(255, len(names))  # 255 unless it is a class id
    accs, skipped = _metric_accumulators(list(dict.fromkeys(tasks)), names, is_thing, void)
    n = num_samples(dataset, limit)
    errors: list[dict] = []
    start = time.perf_counter()
    for i in progress_bar(range(n), progress, total=n, desc="images"):
        s = dataset[i]
        if not _set_image(predictor, s.image, s.image_id, errors, "generic"):
            continue
        unknown = sorted(set(s.class_names) - set(index))
        if unknown:
            raise ValueError(f"sample {s.image_id!r}: classes {unknown} are not in the data set's class list")
        ids = np.asarray([index[c] for c in s.class_names], dtype=np.int64)
        for task, acc in accs.items():
            try:
                grounded = {"text_grounding": True} if text_grounding and task == "semantic" else {}
                r = predictor.segment_everything(names, task, thing_classes=thing_names, **grounded)
            except PromptError as e:
                errors.append({"image": s.image_id, "task": task, "error": str(e)})
                continue
            if task == "panoptic":
                acc.add(r.segmentation, r.segments, s.masks, ids)
            elif task == "semantic":
                gt = np.full(s.image.shape[:2], void, dtype=np.int64)
                for m, c in zip(s.masks, ids):
                    gt[m] = c
                acc.add(np.asarray(r.label_map), gt)
            else:
                gt_sel = [k for k, c in enumerate(ids) if int(c) in to_thing]
                keep = [k for k, c in enumerate(np.asarray(r.label_ids)) if int(c) in to_thing]
                pred = np.asarray(r.masks)[keep].astype(bool) if keep else np.zeros((0, *s.image.shape[:2]), bool)
                acc.add(i, s.masks[gt_sel], [to_thing[int(ids[k])] for k in gt_sel], pred,
                        [to_thing[int(r.label_ids[k])] for k in keep], np.asarray(r.scores, dtype=np.float64)[keep])
    report: dict = {"task": "generic", "dataset": describe_dataset(dataset), "num_images": n,
                    "text_grounding": bool(text_grounding)}
    for task, acc in accs.items():
        try:
            report[task] = acc.summary()
        except ImportError as e:  # an accumulator that imports its dependency only to summarise
            skipped[task] = str(e)
            continue
        if task in ("panoptic", "semantic"):
            report[task]["per_class"] = acc.per_class()
    seconds = time.perf_counter() - start
    report |= {"skipped_tasks": skipped, "errors": errors, "seconds": seconds,
               "seconds_per_image": seconds / n if n else float("nan")}
    return to_plain(report)
