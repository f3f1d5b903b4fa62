"""The ``seem`` command line: ``seem segment | panoptic | convert | train | eval | serve | video``.

This module only parses arguments and maps errors to exit codes; the commands live in
:mod:`seem.cli_commands` and are imported when one runs, so ``import seem.cli`` stays cheap.
Coordinates on the command line are ``(x, y)`` pixels of the input image; boxes are XYXY.

Exit codes: 0 success, 1 unexpected error, 2 bad usage or a :class:`seem.errors.SeemError`
(printed as ``error: <message>``; ``--verbose`` adds the traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import traceback
from collections.abc import Sequence

FORMATS = ("png", "rle", "polygon", "overlay")
DEFAULT_FORMATS = "png,overlay"


# ----------------------------------------------------------------------------------------------------
# Argument value parsers (raise ArgumentTypeError, so argparse prints usage and exits with 2)
# ----------------------------------------------------------------------------------------------------
def _numbers(text: str, what: str, counts: Sequence[int]) -> list[float]:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: values must be numbers") from None
    if len(values) not in counts:
        expected = " or ".join(str(c) for c in counts)
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {expected} numbers, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{what} {text!r}: values must be finite")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """``"X,Y"`` or ``"X,Y,LABEL"`` -> ``(x, y, label)``; label 1 = positive (default), 0 = negative."""
    values = _numbers(text, "point", (2, 3))
    label = 1 if len(values) == 2 else values[2]
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"point {text!r}: label must be 1 (positive) or 0 (negative)")
    return values[0], values[1], int(label)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"X0,Y0,X1,Y1"`` -> an XYXY box with ``x0 < x1`` and ``y0 < y1``."""
    x0, y0, x1, y1 = _numbers(text, "box", (4,))
    if not (x0 < x1 and y0 < y1):
        raise argparse.ArgumentTypeError(f"box {text!r}: expected X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1")
    return x0, y0, x1, y1


def parse_polygon(text: str) -> list[tuple[float, float]]:
    """``"x,y x,y x,y ..."`` (at least 3 vertices) -> list of ``(x, y)``."""
    vertices = [v for v in text.split() if v]
    if len(vertices) < 3:
        raise argparse.ArgumentTypeError(f"polygon {text!r}: needs at least 3 'x,y' vertices separated by spaces")
    points = []
    for vertex in vertices:
        x, y = _numbers(vertex, "polygon vertex", (2,))
        points.append((x, y))
    return points


def parse_formats(text: str) -> list[str]:
    """``"png,overlay"`` -> ``["png", "overlay"]``, each one of :data:`FORMATS`."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"format {text!r}: choose from {', '.join(FORMATS)}")
    return names


def parse_device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"device {text!r}: choose auto, cpu, cuda, cuda:N or mps")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0")
    return value


def _positive_float(text: str) -> float:
    """A finite number > 0 (NaN and infinity refused)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
    return value


# ----------------------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------------------
def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="registry name or checkpoint path (default: the bundled model)")
    p.add_argument("--device", type=parse_device, default="auto", help="auto|cpu|cuda[:N]|mps (default: auto)")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch")
    add_precision_argument(p)
    p.add_argument("--out", default="seem_output", help="output folder (default: ./seem_output)")


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    """``--precision fp32|bf16|bf16-all`` (see :class:`seem.predictor.SeemPredictor`)."""
    p.add_argument("--precision", choices=("fp32", "bf16", "bf16-all"), default="fp32",
                   help="fp32 (default); bf16: bf16 image encoder; bf16-all: bf16 decoder too (faster prompts)")


def build_parser() -> argparse.ArgumentParser:
    """The ``seem`` argument parser (built on demand, never at import)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")

    parser = argparse.ArgumentParser(
        prog="seem", description="SEEM: segment an image from text, clicks, boxes, scribbles, "
        "polygons, masks or a region in another image.", parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    seg = sub.add_parser(
        "segment", parents=[common], help="segment the prompted objects",
        description="Segment objects from prompts. Coordinates are (x, y) pixels of IMAGE; boxes are XYXY.",
        epilog="Objects: all --point clicks describe one object; each --box, --scribble, --polygon and "
        "--mask is one object. Several prompt types together describe the same objects (the k-th box "
        "with the k-th polygon ...), so their counts must agree. --text alone gives one object; the "
        "reference region adds its own.",
    )
    seg.add_argument("image", help="input image file")
    seg.add_argument("--point", type=parse_point, action="append", default=[], metavar="X,Y[,LABEL]",
                     help="click; LABEL 1 = positive (default), 0 = negative; repeatable")
    seg.add_argument("--box", type=parse_box, action="append", default=[], metavar="X0,Y0,X1,Y1",
                     help="box (XYXY pixels); one object per box; repeatable")
    seg.add_argument("--scribble", action="append", default=[], metavar="MASK.png",
                     help="scribble as a mask image the size of IMAGE; repeatable")
    seg.add_argument("--polygon", type=parse_polygon, action="append", default=[], metavar='"x,y x,y x,y ..."',
                     help="polygon vertices; repeatable")
    seg.add_argument("--mask", action="append", default=[], metavar="MASK.png",
                     help="mask prompt image the size of IMAGE; repeatable")
    seg.add_argument("--text", default=None, help="referring text, e.g. 'the dog on the left'")
    seg.add_argument(
        "--separate-prompts",
        action="store_true",
        help="with --text and a visual prompt: keep them in separate query groups, exactly as the official v1 "
        "code (the text then does not change the mask); default: the paper's joint composition",
    )
    seg.add_argument("--reference-image", default=None, metavar="IMG", help="image holding the referred region")
    seg.add_argument("--reference-mask", default=None, metavar="MASK.png", help="region in --reference-image")
    seg.add_argument("--vocab", default=None, metavar="SPEC", help="label space: coco | FILE | 'a,b,c'")
    seg.add_argument("--format", type=parse_formats, action="append", default=None, dest="formats",
                     metavar="FMT", help=f"{'|'.join(FORMATS)}; repeatable or comma list (default: {DEFAULT_FORMATS})")
    _add_model_arguments(seg)

    pan = sub.add_parser("panoptic", parents=[common], help="segment everything in a vocabulary",
                         description="Panoptic, semantic or instance segmentation over a vocabulary.")
    pan.add_argument("image", help="input image file")
    pan.add_argument("--vocab", required=True, metavar="SPEC", help="coco | FILE (one name a line) | 'a,b,c'")
    pan.add_argument("--kind", choices=("panoptic", "semantic", "instance"), default="panoptic")
    _add_model_arguments(pan)

    conv = sub.add_parser("convert", parents=[common], help="convert an official SEEM checkpoint",
                          description="Convert an official SEEM .pt checkpoint to safetensors.")
    conv.add_argument("checkpoint", metavar="OFFICIAL.pt")
    conv.add_argument("output", metavar="OUT.safetensors")
    which = conv.add_mutually_exclusive_group()
    which.add_argument("--config", default=None, metavar="OFFICIAL.yaml", help="official YAML config")
    which.add_argument("--variant", default=None, metavar="NAME", help="registry variant name")

    train = sub.add_parser("train", parents=[common], help="train a model (one process or under torchrun)",
                           description="Train with SEEM's recipe on generated scenes. CONFIG is a JSON/YAML file "
                           "of seem.train.config.TrainConfig fields; options override it. Resumes from "
                           "OUT_DIR/last.pt when present. Multi-process: torchrun --nproc_per_node N -m seem.cli train ...")
    train.add_argument("config", nargs="?", default=None, metavar="CONFIG", help="JSON or YAML training config")
    train.add_argument("--steps", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None, dest="batch_size")
    train.add_argument("--out-dir", default=None, dest="out_dir")
    train.add_argument("--threads", type=int, default=None)

    # ``seem eval interactive|referring|panoptic`` (cli_eval imports argparse only)
    from seem.cli_eval import add_eval_parser

    add_eval_parser(sub, common)

    # ``seem serve`` (the parser imports argparse only; FastAPI is imported when it runs)
    from seem.server.serve import add_serve_parser

    add_serve_parser(sub, common)

    # ``seem video`` (cli_video imports argparse only; torch and PyAV load when it runs)
    from seem.cli_video import add_video_parser

    add_video_parser(sub, common)
    return parser


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> int:
    """``seem train``: build the TrainConfig and run the engine."""
    from seem.train.config import TrainConfig
    from seem.train.engine import Trainer

    config = TrainConfig.from_file(args.config, steps=args.steps, batch_size=args.batch_size,
                                   out_dir=args.out_dir, threads=args.threads)
    Trainer(config).run()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """``seem serve``: the HTTP API (see :mod:`seem.server`)."""
    from seem.server.serve import run_serve as serve

    return serve(args)


def _dispatch(args: argparse.Namespace) -> int:
    from seem import cli_commands, cli_eval, cli_video

    commands = {
        "segment": cli_commands.run_segment,
        "panoptic": cli_commands.run_panoptic,
        "convert": cli_commands.run_convert,
        "train": run_train,
        "eval": cli_eval.run_eval,
        "serve": run_serve,
        "video": cli_video.run_video,
    }
    return commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``seem`` command; returns the process exit code (see the module docstring)."""
    from seem.errors import SeemError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    verbose = getattr(args, "verbose", False)
    try:
        return _dispatch(args)
    except (SeemError, OSError) as exc:  # files the user named: missing, unwritable, not a directory, ...
        if verbose:
            traceback.print_exc()
        message = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{exc.filename}: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
