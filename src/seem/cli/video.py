"""``seem video``: follow objects marked on one frame through a video (zero-shot VOS, SEEM paper §4).

Example::

    seem video clip.mp4 --frame 0 --point 320,180 --box 40,60,200,300 --out out/ --fps 10
    seem video davis/JPEGImages/480p/bear --mask bear_00000.png --mode independent --out out/bear

Objects: all ``--point`` clicks describe object 1; then each ``--box``, ``--scribble``, ``--polygon``,
``--mask`` and the ``--text`` is one more object (ids 2, 3, ... in that order), all defined on frame ``K``.
Writes ``OUT/masks/00000.png ...`` (DAVIS palette PNGs: value = object id, 0 = background) and
``OUT/overlay.mp4`` (needs PyAV: ``pip install 'seem-torch[video]'``; skipped with a note without it).

Only argparse and seem.cli.common are imported at module level; torch, the predictor and PyAV load when the
command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seem.cli.common import (
    add_model_arguments,
    add_prompt_arguments,
    non_negative_int,
    positive_float,
    positive_int,
    verbose_parent,
)

PROMPT_HELP = {
    "point": "click of object 1; LABEL 1 = positive (default), 0 = negative; repeatable",
    "box": "box (XYXY pixels), one object each; repeatable",
    "scribble": "scribble mask the size of the frames, one object each; repeatable",
    "polygon": "polygon, one object each; repeatable",
    "mask": "object mask on frame K (used as given), one object each; repeatable",
    "text": "referring text on frame K: one object",
}


def add_parser(subparsers) -> None:
    v = subparsers.add_parser(
        "video", parents=[verbose_parent()], help="follow prompted objects through a video (zero-shot VOS)",
        description="Segment objects marked on frame K in every frame of a video file or a folder of frames: "
        "the marked region is SEEM's referred-region prompt on every other frame. Coordinates are (x, y) "
        "pixels of the frames; boxes are XYXY.",
        epilog="Objects: all --point clicks are object 1; each --box, --scribble, --polygon, --mask and the "
        "--text is one more object (ids in that order). Writes OUT/masks/NNNNN.png (palette PNG, value = "
        "object id) and OUT/overlay.mp4.",
    )
    v.add_argument("input", help="video file (mp4, webm, ...) or a folder of frame images (sorted by name)")
    v.add_argument("--frame", type=non_negative_int, default=0, metavar="K",
                   help="index of the frame the prompts refer to, after --fps subsampling (default 0)")
    add_prompt_arguments(v, PROMPT_HELP)
    v.add_argument("--fps", type=positive_float, default=None, metavar="N",
                   help="subsample a video file to N frames per second (by timestamps)")
    v.add_argument("--mode", choices=("memory", "independent"), default="memory",
                   help="memory: the previous frame's mask is a memory prompt (default); independent: "
                   "every frame from the reference alone (the paper's protocol)")
    v.add_argument("--shorter-side", type=positive_int, default=None, dest="shorter_side", metavar="PX",
                   help="resize frames to this shorter side before encoding (default: the model's, 512)")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(v)


def _objects(args: argparse.Namespace, size: tuple[int, int]) -> list[dict]:
    """``add_object`` keyword arguments, one dict per object, from the command line."""
    import numpy as np

    from seem import io as seem_io
    from seem.errors import PromptError

    objects: list[dict] = []
    if args.point:
        pts = np.asarray(args.point, dtype=np.float64)
        objects.append({"points": pts[:, :2], "point_labels": pts[:, 2].astype(np.int64)})
    objects += [{"box": np.asarray(b, dtype=np.float64)} for b in args.box]
    for path in args.scribble:
        objects.append({"scribble": seem_io.load_mask(path, size=size)})
    objects += [{"polygon": np.asarray(p, dtype=np.float64)} for p in args.polygon]
    for path in args.mask:
        objects.append({"mask": seem_io.load_mask(path, size=size)})
    if args.text is not None:
        if not args.text.strip():
            raise PromptError("--text is empty")
        objects.append({"text": args.text})
    return objects


def _peak_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _progress(total: int | None, disable: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is optional (the train extra)
        return None
    return tqdm(total=total, unit="frame", disable=disable, dynamic_ncols=True)


def _open_frames(args: argparse.Namespace):
    """Check the prompts and paths, then ``(video info, first frame, the other frames)``; nothing is
    written and no model is loaded before the input is known to be usable."""
    from seem.errors import ConfigError, ImageError, PromptError
    from seem.video import probe, read_frames

    if not (args.point or args.box or args.scribble or args.polygon or args.mask or args.text is not None):
        raise PromptError("no prompt given: use --point, --box, --scribble, --polygon, --mask or --text on frame K")
    out = Path(args.out)
    source = Path(args.input).resolve()
    for produced in (out / "overlay.mp4", out / "masks"):  # never read what this run is about to overwrite
        if source == produced.resolve() or produced.resolve() in source.parents:
            raise ConfigError(f"{args.input} is inside this run's output ({produced}): choose another --out")
    info = probe(args.input, args.fps)
    n = info.num_frames  # a file's frame count is an estimate
    if n is not None and args.frame >= n and (Path(args.input).is_dir() or args.frame >= n + 2):
        raise PromptError(f"--frame {args.frame} is out of range: {args.input} has {n} frames")
    frames = read_frames(args.input, args.fps)
    first = next(frames, None)
    if first is None:
        raise ImageError(f"{args.input}: no frames")
    return info, first, frames


def _open_writer(out: Path, fps: float):
    """The overlay video writer, or None (with a note) when PyAV is missing."""
    from seem.errors import MissingDependencyError
    from seem.video import VideoWriter

    try:
        return VideoWriter(out / "overlay.mp4", fps=fps)
    except MissingDependencyError as exc:
        print(f"note: overlay.mp4 skipped: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    """``seem video``: read frames, follow the prompted objects, write label PNGs and an overlay video."""
    import numpy as np

    from seem import visualize
    from seem.cli.common import load_predictor  # looked up at call time (tests substitute it)
    from seem.video import VideoSegmenter, save_label_map

    info, first, frames = _open_frames(args)
    out = Path(args.out)
    objects = _objects(args, first.shape[:2])

    predictor = load_predictor(args)
    if args.shorter_side is not None:
        predictor.shorter_side = args.shorter_side
    segmenter = VideoSegmenter(predictor, mode=args.mode)
    for obj_id, prompts in enumerate(objects, start=1):
        segmenter.add_object(obj_id, frame_index=args.frame, **prompts)

    waiting: dict[int, np.ndarray] = {}  # frames read but not yet answered (at most K + 1)

    def remembered():
        for t, frame in enumerate(_chain(first, frames)):
            waiting[t] = frame
            yield frame

    stale = sorted((out / "masks").glob("*.png")) if (out / "masks").is_dir() else []
    for path in stale:  # masks of an earlier run into the same folder would be mistaken for this one's
        path.unlink()
    writer = _open_writer(out, info.fps)
    bar = _progress(info.num_frames, args.no_progress)
    count, start = 0, time.perf_counter()
    try:
        for t, result in segmenter.run(remembered()):
            frame = waiting.pop(t)
            save_label_map(result.label_map(), out / "masks" / f"{t:05d}.png")
            if writer is not None:
                ids = list(result.masks)
                masks = np.stack([result.masks[i] for i in ids]) if ids else np.zeros((0, *frame.shape[:2]), bool)
                writer.write(visualize.overlay(frame, masks, labels=[str(i) for i in ids]))
            count += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        frames.close()
    elapsed = time.perf_counter() - start
    rss = _peak_rss_mib()
    print(f"{count} frames, {count / max(elapsed, 1e-9):.2f} frames/s"
          + (f", peak RSS {rss:.0f} MiB" if rss is not None else ""))
    print(f"wrote {out / 'masks'}/ ({count} label PNGs)")
    if writer is not None and writer.frames:
        print(f"wrote {writer.path}")
    return 0


def _chain(first, rest):
    yield first
    yield from rest
