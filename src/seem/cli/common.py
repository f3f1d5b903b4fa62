"""What every ``seem`` command shares: argument value parsers, argument groups and loading the predictor.

Imports argparse and the standard library only (torch and the predictor load inside :func:`load_predictor`),
so building the parser stays cheap. Every command module imports this one and library code, nothing else
of :mod:`seem.cli`.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("png", "rle", "polygon", "overlay")
DEFAULT_FORMATS = "png,overlay"
PROMPT_OPTIONS = ("point", "box", "scribble", "polygon", "mask", "text")


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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (NaN and infinity refused)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
    return value


def unit_float(text: str) -> float:
    """A number in [0, 1] (thresholds)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number in [0, 1]")
    return value


def add_find_arguments(p: argparse.ArgumentParser) -> None:
    """``--text`` (repeatable), ``--score-threshold``, ``--nms-threshold``, ``--max-instances``."""
    p.add_argument("--text", action="append", default=[], metavar="PHRASE",
                   help="a phrase to find every instance of, e.g. car; repeatable (one decoder pass for all)")
    p.add_argument("--score-threshold", type=unit_float, default=0.3, help="keep instances scoring >= this (0.3)")
    p.add_argument("--nms-threshold", type=unit_float, default=0.5, help="mask NMS IoU threshold (0.5)")
    p.add_argument("--max-instances", type=positive_int, default=100, help="at most this many per phrase (100)")


# ----------------------------------------------------------------------------------------------------
# Argument groups
# ----------------------------------------------------------------------------------------------------
def verbose_parent() -> argparse.ArgumentParser:
    """The parent parser of ``seem`` and every subcommand: ``-v/--verbose``, accepted before or after it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    return common


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    """``--precision fp32|bf16|bf16-all|int8`` (see :class:`seem.predictor.SeemPredictor`)."""
    p.add_argument("--precision", choices=("fp32", "bf16", "bf16-all", "int8"), default="fp32",
                   help="fp32 (default); bf16: bf16 image encoder; bf16-all: bf16 decoder too (faster prompts); "
                   "int8: int8 decoder weights, bf16 image cache (fastest prompts)")


def add_predictor_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--threads`` and ``--precision``: what :func:`load_predictor` reads."""
    p.add_argument("--model", default=None, help="registry name or checkpoint path (default: the bundled model)")
    p.add_argument("--device", type=parse_device, default="auto", help="auto|cpu|cuda[:N]|mps (default: auto)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    add_precision_argument(p)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The predictor's options and ``--out``, the output folder of ``segment``, ``panoptic`` and ``video``."""
    add_predictor_arguments(p)
    p.add_argument("--out", default="seem_output", help="output folder (default: ./seem_output)")


def add_prompt_arguments(p: argparse.ArgumentParser, helps: Mapping[str, str]) -> None:
    """``--point --box --scribble --polygon --mask --text``; ``helps`` holds each one's help text, as what
    makes an object differs between commands (keys: :data:`PROMPT_OPTIONS`)."""
    p.add_argument("--point", type=parse_point, action="append", default=[], metavar="X,Y[,LABEL]",
                   help=helps["point"])
    p.add_argument("--box", type=parse_box, action="append", default=[], metavar="X0,Y0,X1,Y1", help=helps["box"])
    p.add_argument("--scribble", action="append", default=[], metavar="MASK.png", help=helps["scribble"])
    p.add_argument("--polygon", type=parse_polygon, action="append", default=[], metavar='"x,y x,y x,y ..."',
                   help=helps["polygon"])
    p.add_argument("--mask", action="append", default=[], metavar="MASK.png", help=helps["mask"])
    p.add_argument("--text", default=None, help=helps["text"])


# ----------------------------------------------------------------------------------------------------
# Running a command
# ----------------------------------------------------------------------------------------------------
def load_predictor(args: argparse.Namespace) -> Any:
    """Build the predictor from ``--model``, ``--device``, ``--threads`` and ``--precision``."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from seem import resolve_device

    device = resolve_device(args.device)
    from seem.predictor import SeemPredictor  # looked up at call time (tests substitute a fake)

    precision = getattr(args, "precision", "fp32")
    kwargs = {} if precision == "fp32" else {"precision": precision}
    return SeemPredictor.from_pretrained(args.model, device=device, **kwargs)


def for_each_image(paths: Sequence[Path], fn: Callable[[Path, Any, str], None], first: Any = None) -> int:
    """Run ``fn(path, image, name)`` for each image (``image`` ``(H, W, 3)`` uint8; ``name`` a file name whose
    stem is distinct among ``paths``, for output files). ``first``: the first image, already decoded.

    With one image an error propagates (the command's exit status 2); with several, an image that fails
    (unreadable, a prompt outside it) prints ``error: PATH: message`` and the others go on. Returns 0, or 2
    when an image failed.
    """
    import sys

    from seem import io as seem_io
    from seem.errors import SeemError
    from seem.image_sources import output_stems

    names = [stem + p.suffix for stem, p in zip(output_stems(paths), paths)]
    if len(paths) == 1:
        fn(paths[0], first if first is not None else seem_io.load_image(paths[0]), names[0])
        return 0
    failed = 0
    for i, (path, name) in enumerate(zip(paths, names)):
        try:
            fn(path, first if (i == 0 and first is not None) else seem_io.load_image(path), name)
        except (SeemError, OSError) as exc:
            failed += 1
            message = str(exc)  # image errors name the file already
            print(f"error: {message}" if str(path) in message else f"error: {path}: {message}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(paths)} images failed", file=sys.stderr)
        return 2
    return 0


def report_written(written: Sequence[Path]) -> None:
    """One ``wrote PATH`` line per file written."""
    for path in written:
        print(f"wrote {path}")
