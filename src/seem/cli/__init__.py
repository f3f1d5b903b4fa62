"""The ``seem`` command line: ``seem segment | panoptic | find | label | convert | train | train-pack | train-continue | eval | serve | video | export``.

Each command is a module of this package with ``add_parser(subparsers)`` and ``run(args) -> int``; they
import :mod:`seem.cli.common` and library code only, and load the heavy parts (predictor, torch, FastAPI)
inside ``run``, so ``import seem.cli`` and ``seem --help`` stay cheap. This module builds the top parser
from :data:`COMMANDS` and maps errors to exit codes. Coordinates on the command line are ``(x, y)`` pixels
of the input image; boxes are XYXY.

Exit codes: 0 success, 1 unexpected error, 2 bad usage or a :class:`seem.errors.SeemError`
(printed as ``error: <message>``; ``--verbose`` adds the traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from seem.cli import (
    convert,
    evaluate,
    export,
    find,
    label,
    panoptic,
    segment,
    serve,
    train,
    train_continue,
    train_pack,
    video,
)
from seem.cli.common import verbose_parent

# command name -> module, in the order ``seem --help`` lists them
COMMANDS = {
    "segment": segment,
    "panoptic": panoptic,
    "find": find,
    "label": label,
    "convert": convert,
    "train": train,
    "train-pack": train_pack,
    "train-continue": train_continue,
    "eval": evaluate,
    "serve": serve,
    "video": video,
    "export": export,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``seem`` argument parser (built on demand, never at import)."""
    parser = argparse.ArgumentParser(
        prog="seem", description="SEEM: segment an image from text, clicks, boxes, scribbles, "
        "polygons, masks or a region in another image.", parents=[verbose_parent()],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``seem`` command; returns the process exit code (see the module docstring)."""
    from seem.errors import SeemError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    verbose = getattr(args, "verbose", False)
    try:
        return COMMANDS[args.command].run(args)
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
