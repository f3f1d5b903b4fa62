"""Which image files a command works on: files, folders, globs and list files (``seem segment | panoptic | find |
label``). Only paths are gathered here; nothing is decoded.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from seem.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LIST_SUFFIXES = (".txt", ".lst")  # list files: one image path a line
MAX_IMAGES = 1_000_000  # images of one command (a huge glob is refused before anything runs)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _from_list(path: Path) -> Iterator[Path]:
    """Paths of a list file: one a line, relative to the list's folder; blank lines and ``#`` lines skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                yield p if p.is_absolute() else Path(os.path.normpath(path.parent / p))


def _one(spec: str) -> Iterator[Path]:
    path = Path(spec)
    if path.is_dir():
        yield from sorted(p for p in path.iterdir() if p.is_file() and _is_image(p))
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        yield from _from_list(path)
    elif path.is_file():
        yield path
    elif glob.has_magic(spec):
        matches = (Path(m) for m in glob.iglob(spec, recursive=True))
        yield from sorted(itertools.islice((m for m in matches if m.is_file() and _is_image(m)), MAX_IMAGES + 1))
    else:
        raise ImageError(f"{spec}: no such file or folder, and no glob pattern")


def expand_images(specs: Sequence[str | os.PathLike], max_images: int = MAX_IMAGES) -> list[Path]:
    """The image paths named by ``specs``, in order, each once.

    Each spec is an image file (any suffix; decoding checks it), a folder (its image files, sorted by name,
    not recursive), a list file (``.txt`` / ``.lst``: one path a line, relative to the list's folder) or a glob
    (``"photos/**/*.jpg"``, sorted).

    Raises:
        ImageError: a spec that names nothing, no image at all, or more than ``max_images`` (a huge glob: the
            count is checked while the names are gathered, before anything is decoded).
    """
    seen: dict[Path, None] = {}
    for spec in specs:
        found = False
        for p in _one(str(spec)):
            found = True
            seen.setdefault(p, None)
            if len(seen) > max_images:
                raise ImageError(f"{spec}: more than {max_images:,} images; label them in several runs or narrow "
                                 "the glob")
        if not found:
            raise ImageError(f"{spec}: no image found (folders and globs take {', '.join(IMAGE_SUFFIXES)})")
    if not seen:
        raise ImageError("no image given")
    return list(seen)


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct file-name stem per path for the outputs of several images: the file's stem, or, where two
    images share a stem, the path relative to their common folder with ``/`` as ``__`` (suffix kept)."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    out = []
    for p, stem in zip(paths, stems):
        out.append(stem if stems.count(stem) == 1 else str(p.resolve().relative_to(root)).replace(os.sep, "__"))
    return out
