"""``seem eval interactive | referring | panoptic | video``: one command from a data set to a metrics table and report.

* ``interactive``: the RITM / SimpleClick click protocol (NoC@85/90/95, NoF, mIoU@k) on generated scenes, a
  RITM folder (GrabCut / Berkeley / DAVIS layout, 128 = ignore band) or COCO instances;
* ``referring``: cIoU / mIoU / precision@0.5..0.9 on generated scenes or a RefCOCO split;
* ``panoptic``: PQ / SQ / RQ, semantic mIoU and COCO mask AP on generated scenes or COCO panoptic;
* ``video``: DAVIS 2017 semi-supervised J&F (first-frame masks given) on generated clips or a DAVIS folder.

Examples::

    seem eval interactive --dataset ../shared/benchmarks/grabcut --max-clicks 20 --out grabcut.json
    seem eval interactive --dataset scenes --limit 50 --first-prompt all
    seem eval interactive --images val2017 --annotations instances_val2017.json --limit 100
    seem eval referring --images train2014 --annotations refcoco/instances.json --refs "refcoco/refs(unc).p" --split val
    seem eval panoptic --images val2017 --panoptic-json panoptic_val2017.json --panoptic-dir panoptic_val2017
    seem eval video --dataset scenes --limit 20 --mode both
    seem eval video --dataset DAVIS --split val --out davis17_val.json

Only argparse and seem.cli.common are imported here at module level; data sets, the predictor and torch load
when a command runs.
"""

from __future__ import annotations

import argparse

from seem.cli.common import add_predictor_arguments, non_negative_int, positive_int, verbose_parent

DEFAULT_SCENES = 200  # scenes evaluated with --dataset scenes and no --limit (seeds 0..199)
DEFAULT_CLIPS = 20  # clips evaluated with ``seem eval video --dataset scenes`` and no --limit


def parse_first_prompts(text: str) -> list[str]:
    """``point``, ``all`` or a comma list of ``point,scribble,polygon,box`` -> list of first prompts."""
    from seem.evaluation.interactive import FIRST_PROMPTS

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(FIRST_PROMPTS)
    bad = [n for n in names if n not in FIRST_PROMPTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"first prompt {text!r}: choose all or a comma list of {', '.join(FIRST_PROMPTS)}")
    return list(dict.fromkeys(names))


def _tasks(text: str) -> list[str]:
    from seem.evaluation.runner import GENERIC_TASKS

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names or any(n not in GENERIC_TASKS for n in names):
        raise argparse.ArgumentTypeError(f"tasks {text!r}: a comma list of {', '.join(GENERIC_TASKS)}")
    return list(dict.fromkeys(names))


def _scene_size(text: str) -> int:
    """Side of generated scenes: 64..4096 pixels (the scene engine needs room for its objects)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 64 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"scene size must be 64..4096 pixels, got {value}")
    return value


def _add_run_arguments(p: argparse.ArgumentParser, size: int = 320, unit: str = "images",
                       default_num: int = DEFAULT_SCENES) -> None:
    """What every task takes: how many samples, the scene size, the predictor, the report file, the bar."""
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help=f"evaluate the first N {unit} (scenes: seeds 0..N-1, default {default_num})")
    p.add_argument("--size", type=_scene_size, default=size, help=f"side of generated scenes in pixels, 64..4096 "
                   f"(default {size})")
    add_predictor_arguments(p)
    p.add_argument("--out", default=None, metavar="REPORT.json", help="write the JSON report here (default: print only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(subparsers) -> None:
    """Add ``eval`` and its tasks to the ``seem`` subparsers."""
    common = verbose_parent()
    ev = subparsers.add_parser("eval", parents=[common], help="evaluate a model on a benchmark",
                               description="Evaluate a model on a data set: prints a metrics table, --out writes a JSON report.")
    tasks = ev.add_subparsers(dest="eval_task", metavar="TASK")
    tasks.required = True

    inter = tasks.add_parser("interactive", parents=[common], help="click protocol: NoC@85/90/95, NoF, mIoU@k",
                             description="RITM / SimpleClick click protocol: first prompt, then each click at the centre "
                             "of the larger error region, previous mask as memory; NoC capped at --max-clicks.")
    inter.add_argument("--dataset", default=None, metavar="scenes|PATH",
                       help="'scenes' (generated) or a RITM folder: images/ (or data_GT/, img/) + masks/ (or boundary_GT/, gt/)")
    inter.add_argument("--images", default=None, metavar="DIR", help="COCO image folder (with --annotations)")
    inter.add_argument("--annotations", default=None, metavar="instances.json", help="COCO instances JSON")
    inter.add_argument("--min-area", type=float, default=0, help="COCO: leave out instances below this area (pixels)")
    inter.add_argument("--first-prompt", type=parse_first_prompts, default=["point"], dest="first_prompts",
                       metavar="point|scribble|polygon|box|all", help="first prompt(s), comma list (default: point)")
    inter.add_argument("--max-clicks", type=positive_int, default=20, help="clicks per object, NoC cap (default 20)")
    inter.add_argument("--ignore-value", type=int, default=128,
                       help="RITM folder: mask value of ignored pixels (default 128, GrabCut's band; -1: none)")
    inter.add_argument("--zoom-in", action="store_true",
                       help="decode each round on a crop around the object (seem.zoom; RITM's ZoomIn)")
    inter.add_argument("--per-scene", type=non_negative_int, default=3, help="scenes: things per scene (0: all; default 3)")
    _add_run_arguments(inter)

    ref = tasks.add_parser("referring", parents=[common], help="referring text: cIoU, mIoU, precision@0.5..0.9",
                           description="Each referring expression -> predict(text=...); cIoU, mIoU and precision@t.")
    ref.add_argument("--dataset", default=None, choices=["scenes"], help="generated scenes (else --images/--annotations/--refs)")
    ref.add_argument("--images", default=None, metavar="DIR", help="RefCOCO image folder (COCO train2014)")
    ref.add_argument("--annotations", default=None, metavar="instances.json", help="RefCOCO instances JSON")
    ref.add_argument("--refs", default=None, metavar="refs.p", help="refs pickle or JSON")
    ref.add_argument("--split", default="val", help="refs split (default val)")
    _add_run_arguments(ref)

    pan = tasks.add_parser("panoptic", parents=[common], help="segment everything: PQ, semantic mIoU, mask AP",
                           description="segment_everything over the data set's classes: PQ/SQ/RQ, semantic mIoU/fwIoU/"
                           "mACC/pACC against the panoptic GT (void 255), COCO mask AP on thing classes.")
    pan.add_argument("--dataset", default=None, choices=["scenes"], help="generated scenes (else --images/--panoptic-*)")
    pan.add_argument("--images", default=None, metavar="DIR", help="COCO image folder")
    pan.add_argument("--panoptic-json", default=None, metavar="J", help="COCO panoptic JSON")
    pan.add_argument("--panoptic-dir", default=None, metavar="D", help="folder of the panoptic PNGs")
    pan.add_argument("--tasks", type=_tasks, default=["panoptic", "semantic", "instance"],
                     help="comma list of panoptic,semantic,instance (default: all)")
    pan.add_argument("--text-grounding", action="store_true",
                     help="semantic: add each class name's grounded mask to its class map (seem.grounded_semantic)")
    _add_run_arguments(pan)

    vid = tasks.add_parser("video", parents=[common], help="video objects from first-frame masks: J&F (DAVIS 2017)",
                           description="Semi-supervised video object segmentation: each object's first-frame mask is "
                           "given, seem.video.VideoSegmenter follows it; J (IoU), F (boundary) mean / recall / decay "
                           "over frames 1..N-2, means over objects, in percent (DAVIS 2017 protocol).")
    vid.add_argument("--dataset", required=True, metavar="scenes|DAVIS_ROOT",
                     help="'scenes' (generated clips) or a DAVIS folder (JPEGImages/ + Annotations/)")
    vid.add_argument("--mode", choices=["memory", "independent", "both"], default="memory",
                     help="segmenter mode: previous mask as memory, frames independent, or both (default memory)")
    vid.add_argument("--frames", type=positive_int, default=20, help="scenes: frames per clip (default 20)")
    vid.add_argument("--per-clip", type=non_negative_int, default=3, help="scenes: objects per clip (0: all; default 3)")
    vid.add_argument("--split", default=None,
                     help="DAVIS: ImageSets/2017/SPLIT.txt (default val when present, else every sequence; 'all')")
    vid.add_argument("--resolution", default="480p", help="DAVIS: 480p or Full-Resolution (default 480p)")
    vid.add_argument("--void", action="store_true",
                     help="leave void pixels (label 255) out of J and F (default: background, as davis2017-evaluation)")
    _add_run_arguments(vid, size=256, unit="sequences", default_num=DEFAULT_CLIPS)


def _require(args: argparse.Namespace, names: list[str], what: str) -> None:
    from seem.errors import ConfigError

    missing = ["--" + n.replace("_", "-") for n in names if getattr(args, n) is None]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)} (or --dataset scenes)")


def build_dataset(args: argparse.Namespace):
    """The data set of a parsed ``seem eval`` command, and the ``limit`` left for the runner."""
    from seem.errors import ConfigError
    from seem.evaluation import datasets

    task = args.eval_task
    if task == "video":
        from seem.evaluation import video_runner

        if args.dataset == "scenes":
            return video_runner.SceneClips(args.limit or DEFAULT_CLIPS, args.size, args.frames,
                                           max_objects=args.per_clip or None), None
        return video_runner.DavisDataset(args.dataset, args.split, args.resolution), args.limit
    if args.dataset == "scenes":
        if any(getattr(args, k, None) is not None for k in ("images", "annotations", "refs", "panoptic_json", "panoptic_dir")):
            raise ConfigError("--dataset scenes takes no --images / --annotations / --refs / --panoptic-* files")
        num = args.limit or DEFAULT_SCENES
        if task == "interactive":
            return datasets.SceneInstancesDataset(num, args.size, max_objects=args.per_scene or None), None
        return datasets.SceneSamples(num, args.size), None
    if task == "interactive":
        if args.annotations is not None or args.images is not None:
            if args.dataset is not None:
                raise ConfigError("give either --dataset PATH or --images with --annotations, not both")
            _require(args, ["images", "annotations"], "a COCO instances evaluation")
            return datasets.CocoInstancesDataset(args.images, args.annotations, args.min_area), args.limit
        if args.dataset is None:
            raise ConfigError("give --dataset scenes, --dataset PATH (a RITM folder) or --images with --annotations")
        return datasets.RitmFolderDataset(args.dataset, args.ignore_value), args.limit
    if task == "referring":
        from seem.data.readers_refcoco import RefCocoReader

        _require(args, ["images", "annotations", "refs"], "a RefCOCO evaluation")
        return RefCocoReader(args.images, args.annotations, args.refs, split=args.split), args.limit
    from seem.data.readers_coco import CocoPanopticReader

    _require(args, ["images", "panoptic_json", "panoptic_dir"], "a COCO panoptic evaluation")
    return CocoPanopticReader(args.images, args.panoptic_json, args.panoptic_dir), args.limit


def run(args: argparse.Namespace) -> int:
    """``seem eval TASK``: build the data set (before the model, so bad paths fail fast), run, print, save."""
    import seem
    from seem.cli.common import load_predictor  # looked up at call time (tests substitute it)
    from seem.evaluation import runner
    from seem.evaluation.report import format_table, nothing_evaluated, write_report

    if getattr(args, "text_grounding", False) and "semantic" not in args.tasks:
        from seem.errors import ConfigError

        raise ConfigError("--text-grounding applies to the semantic task: add semantic to --tasks")
    dataset, limit = build_dataset(args)
    predictor = load_predictor(args)
    progress = not args.no_progress
    if args.eval_task == "interactive":
        if args.zoom_in:
            from seem.zoom import ZoomInPredictor

            predictor = ZoomInPredictor(predictor)
        report = runner.run_interactive(predictor, dataset, args.first_prompts, args.max_clicks, limit, progress)
        if args.zoom_in:
            report["zoom_in"] = {"crops_encoded": predictor.crops_encoded}
    elif args.eval_task == "referring":
        report = runner.run_referring(predictor, dataset, limit, progress)
    elif args.eval_task == "video":
        from seem.evaluation.video_runner import run_video

        report = run_video(predictor, dataset, mode=args.mode, limit=limit, progress=progress, use_void=args.void)
    else:
        report = runner.run_generic(predictor, dataset, limit, progress, tasks=args.tasks,
                                    text_grounding=args.text_grounding)
    report = {"model": args.model or seem.DEFAULT_MODEL, "device": str(getattr(predictor, "device", args.device)),
              "precision": args.precision} | report
    print(format_table(report))
    nothing = nothing_evaluated(report)
    if args.out:
        path = write_report(report, args.out)
        print(f"report written to {path}")
    if nothing:
        from seem.errors import SeemError

        raise SeemError(f"nothing could be evaluated ({nothing}); see the errors above")
    return 0
