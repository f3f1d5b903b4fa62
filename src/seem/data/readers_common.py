"""Helpers shared by the dataset readers: annotation files, images and masks with errors that name the file.

Error policy of every reader: a problem with an *annotation* (a missing or malformed JSON / pickle /
class list, an unknown category or annotation id, a layout that cannot be parsed) raises
:class:`~seem.errors.ConfigError`; a problem with *pixels* (a missing or corrupt image or mask file, sizes
that disagree) raises :class:`~seem.errors.ImageError`. Both are ``SeemError`` and ``ValueError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from seem.errors import ConfigError, ImageError
from seem.io import load_image

PathLike = str | os.PathLike


def existing_dir(path: PathLike, what: str) -> Path:
    """``path`` as a Path; ConfigError if it is not an existing directory."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{what} {path}: {'is not a directory' if path.exists() else 'not found'}")
    return path


def existing_file(path: PathLike, what: str) -> Path:
    """``path`` as a Path; ConfigError if it is not an existing, non-empty file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: {'is not a file' if path.exists() else 'not found'}")
    if path.stat().st_size == 0:
        raise ConfigError(f"{what} {path}: file is empty (0 bytes)")
    return path


def load_json(path: PathLike, what: str) -> Any:
    """Parse a UTF-8 JSON file; ConfigError naming the file (and line/column) if it is missing or malformed."""
    path = existing_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what} {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc})") from None


def field(obj: Any, key: str, types: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]``, checked to be a dict entry of the given type(s); ConfigError saying what is wrong where."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ConfigError(f"{where}: missing key '{key}'")
    value = obj[key]
    bad_bool = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
    if not isinstance(value, types) or bad_bool:
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ConfigError(f"{where}: '{key}' must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def read_image(path: Path, image_id: str) -> np.ndarray:
    """The image of sample ``image_id`` as ``(H, W, 3)`` uint8 RGB (EXIF-upright); ImageError if unusable."""
    if not path.is_file():
        raise ImageError(f"image of sample {image_id!r}: {path} not found")
    try:
        return load_image(path)
    except ImageError as exc:
        raise ImageError(f"image of sample {image_id!r}: {exc}") from None


def check_size(mask_hw: tuple[int, int], image_hw: tuple[int, int], what: str) -> None:
    """ImageError if a mask's ``(H, W)`` differs from its image's."""
    if tuple(mask_hw) != tuple(image_hw):
        raise ImageError(
            f"{what} is {mask_hw[0]}x{mask_hw[1]} (HxW) but its image is {image_hw[0]}x{image_hw[1]}; they must match"
        )


def stack_masks(masks: list[np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    """``(N, H, W)`` bool from a list of ``(H, W)`` masks (``(0, H, W)`` when the list is empty)."""
    if not masks:
        return np.zeros((0, *hw), dtype=bool)
    return np.stack(masks).astype(bool, copy=False)


def normalize_index(index: int, length: int, name: str) -> int:
    """Normalise a (possibly negative) sample index, or raise IndexError like a list does."""
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise TypeError(f"{name} indices must be integers, not {type(index).__name__}")
    i = int(index) + (length if index < 0 else 0)
    if not 0 <= i < length:
        raise IndexError(f"{name} index {index} out of range for {length} samples")
    return i
