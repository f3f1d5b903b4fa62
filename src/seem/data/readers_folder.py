"""Your own data as a folder of images and binary mask PNGs, with a class list or a JSON sidecar per image."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from seem.data.readers_common import (
    PathLike,
    existing_dir,
    existing_file,
    field,
    load_json,
    normalize_index,
    read_image,
    stack_masks,
)
from seem.data.sample import Sample
from seem.errors import ConfigError, ImageError
from seem.io import load_mask

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_INDEX = re.compile(r"(\d+)(?:_(\d+))?")  # "<k>" or "<k>_<j>"


@dataclass(frozen=True)
class _Segment:
    file: str  # relative to masks/, POSIX separators
    class_name: str
    is_thing: bool
    expressions: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    stem: str
    image_file: str  # relative to images/
    segments: tuple[_Segment, ...]


class MaskFolderReader:
    """Lazy, indexable reader of a folder of images and per-segment binary masks; ``reader[i]`` is a :class:`Sample`.

    Layout::

        root/
          classes.txt              class list: the k-th name (blank lines and "#" lines skipped) is class k,
                                   counting from 0; used when ``classes`` is not given
          images/<stem>.jpg        one image per stem: .jpg, .jpeg or .png (any case); other files ignored
          masks/                   for each image, either a sidecar JSON ...
            <stem>.json              {"segments": [{"file": "<stem>/dog.png", "class": "dog",
                                                    "expressions": ["the dog on the left"], "isthing": true}]}
                                   ... or class-index masks, flat or in a folder per image:
            <stem>_<k>.png           a segment of class k
            <stem>_<k>_<j>.png       instance j of class k (several objects of one class)
            <stem>/<k>.png, <stem>/<k>_<j>.png   the same, nested (use this when stems contain "_<digits>")

    A mask PNG is True where any channel is nonzero, or where alpha > 0 if it has transparency
    (:func:`seem.io.load_mask`); it must have its image's size.

    Sidecar: ``"file"`` is relative to ``masks/`` (no absolute paths, no ``..``); ``"class"`` is a name, or
    an int index into the class list; ``"expressions"`` (optional) are referring expressions for that
    segment; ``"isthing"`` (optional) overrides ``stuff``. With a class list, names must be in it; without
    one, any name is accepted. ``{"segments": []}`` marks an image with nothing annotated. When a stem has a
    sidecar, its class-index mask files are not read. Files a sidecar names may have any name under
    ``masks/``; every other PNG there must follow the class-index naming of an existing image (so a typo
    in a stem is an error, not a silently dropped mask).

    Order: samples by stem (sorted as strings); segments in sidecar order, else by ``(k, j)`` with a
    plain ``<k>`` before ``<k>_0``. ``image_id`` is the stem. The folder is scanned and sidecars parsed once,
    here; pixels are read on ``reader[i]``.

    Args:
        root: the dataset folder.
        classes: class names, a path to a class-list file, or None for ``root/classes.txt`` if it exists
            (needed by class-index masks; optional with sidecars).
        stuff: class names whose segments get ``is_thing=False``; all others are things.

    Raises:
        ConfigError: missing ``images/`` or ``masks/``, a malformed sidecar or class list, two images with one
            stem, a mask file that matches no image (or two), a class index outside the class list, an image
            with neither masks nor a sidecar.
        ImageError (on ``reader[i]``): an image or mask file is missing, corrupt, or of another size.
    """

    def __init__(
        self,
        root: PathLike,
        classes: Sequence[str] | PathLike | None = None,
        *,
        stuff: Iterable[str] = (),
    ) -> None:
        self.root = existing_dir(root, "mask folder dataset")
        self.image_dir = existing_dir(self.root / "images", "image folder")
        self.mask_dir = existing_dir(self.root / "masks", "mask folder")
        self.classes = _read_classes(classes, self.root)
        self.stuff = frozenset(stuff)
        images = self._scan_images()
        sidecars = {
            stem: self._parse_sidecar(self.mask_dir / f"{stem}.json")
            for stem in images
            if (self.mask_dir / f"{stem}.json").is_file()
        }
        referenced = {seg.file for segments in sidecars.values() for seg in segments}
        indexed = self._scan_index_masks(images, referenced)
        entries = []
        for stem, image_file in sorted(images.items()):
            if stem in sidecars:
                segments = sidecars[stem]
            elif stem in indexed:
                segments = self._indexed_segments(stem, indexed[stem])
            else:
                raise ConfigError(
                    f"image {self.image_dir / image_file} has no masks: expected masks/{stem}_<k>.png, "
                    f'masks/{stem}/<k>.png or masks/{stem}.json (write {{"segments": []}} there for an image '
                    "with nothing annotated)"
                )
            entries.append(_Entry(stem, image_file, segments))
        self._entries = entries

    # ------------------------------------------------------------------------------------ scanning
    def _scan_images(self) -> dict[str, str]:
        images: dict[str, str] = {}
        for path in self.image_dir.iterdir():
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                if path.stem in images:
                    raise ConfigError(
                        f"{self.image_dir}: two images with stem {path.stem!r} ({images[path.stem]}, {path.name})"
                    )
                images[path.stem] = path.name
        return images

    def _scan_index_masks(
        self, images: dict[str, str], referenced: set[str]
    ) -> dict[str, dict[tuple[int, int], str]]:
        """stem -> {(k, j): mask file relative to masks/}; j = -1 for a plain ``<k>``. Files named by a
        sidecar (``referenced``) are skipped; any other PNG must name its image and class."""
        found: dict[str, dict[tuple[int, int], str]] = {}

        def add(stem: str, key: tuple[int, int], rel: str) -> None:
            if key in found.setdefault(stem, {}):
                raise ConfigError(
                    f"{self.mask_dir}: {found[stem][key]} and {rel} are the same segment of {stem!r}"
                )
            found[stem][key] = rel

        for path in sorted(self.mask_dir.iterdir()):
            if path.is_dir():
                if path.name not in images:
                    if not any(r.startswith(f"{path.name}/") for r in referenced):
                        raise ConfigError(f"mask folder {path} matches no image in {self.image_dir}")
                    continue
                for mask in sorted(path.iterdir()):
                    rel = f"{path.name}/{mask.name}"
                    if mask.is_file() and mask.suffix.lower() == ".png" and rel not in referenced:
                        m = _INDEX.fullmatch(mask.stem)
                        if m is None:
                            raise ConfigError(
                                f"mask {mask}: name must be <k>.png or <k>_<j>.png (k: class index)"
                            )
                        add(path.name, (int(m[1]), int(m[2] or -1)), rel)
            elif path.suffix.lower() == ".json":
                if path.stem not in images:
                    raise ConfigError(f"sidecar {path} matches no image in {self.image_dir}")
            elif path.suffix.lower() == ".png" and path.name not in referenced:
                matches = [(stem, key) for stem, key in _split_flat(path.stem) if stem in images]
                if not matches:
                    raise ConfigError(
                        f"mask {path} matches no image: expected <stem>_<k>.png or <stem>_<k>_<j>.png "
                        f"for an image <stem> in {self.image_dir}"
                    )
                if len(matches) > 1:
                    names = " or ".join(repr(s) for s, _ in matches)
                    raise ConfigError(
                        f"mask {path} is ambiguous (image {names}); use masks/<stem>/<k>.png instead"
                    )
                add(matches[0][0], matches[0][1], path.name)
        return found

    def _class_name(self, k: int, where: str) -> str:
        if self.classes is None:
            raise ConfigError(
                f"{where}: class index {k} needs a class list (pass classes= or write root/classes.txt)"
            )
        if not 0 <= k < len(self.classes):
            raise ConfigError(
                f"{where}: class index {k} is outside the class list (0..{len(self.classes) - 1})"
            )
        return self.classes[k]

    def _indexed_segments(self, stem: str, masks: dict[tuple[int, int], str]) -> tuple[_Segment, ...]:
        segments = []
        for (k, _), rel in sorted(masks.items()):
            name = self._class_name(k, f"mask {self.mask_dir / rel}")
            segments.append(_Segment(rel, name, name not in self.stuff, ()))
        return tuple(segments)

    def _parse_sidecar(self, path: Path) -> tuple[_Segment, ...]:
        data = load_json(path, "sidecar")
        segments = []
        for i, seg in enumerate(field(data, "segments", list, str(path))):
            where = f"{path}: segments[{i}]"
            rel = field(seg, "file", str, where)
            parts = PurePosixPath(rel.replace("\\", "/"))
            if parts.is_absolute() or ".." in parts.parts or not parts.parts or Path(rel).is_absolute():
                raise ConfigError(
                    f"{where}: file {rel!r} must be a path relative to {self.mask_dir}, without '..'"
                )
            cls = field(seg, "class", (str, int), where)
            if isinstance(cls, int):
                name = self._class_name(cls, where)
            elif not cls.strip():
                raise ConfigError(f"{where}: blank class name")
            elif self.classes is not None and cls not in self.classes:
                raise ConfigError(
                    f"{where}: class {cls!r} is not in the class list {list(self.classes)[:20]}"
                )
            else:
                name = cls
            exprs = seg.get("expressions", [])
            if not isinstance(exprs, list) or not all(isinstance(e, str) and e.strip() for e in exprs):
                raise ConfigError(f"{where}: 'expressions' must be a list of non-blank strings")
            thing = field(seg, "isthing", bool, where) if "isthing" in seg else name not in self.stuff
            segments.append(_Segment(parts.as_posix(), name, thing, tuple(e.strip() for e in exprs)))
        return tuple(segments)

    # ------------------------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Sample:
        e = self._entries[normalize_index(index, len(self), type(self).__name__)]
        image = read_image(self.image_dir / e.image_file, e.stem)
        hw = image.shape[:2]
        masks = []
        for seg in e.segments:
            path = self.mask_dir / seg.file
            if not path.is_file():
                raise ImageError(f"mask of sample {e.stem!r}: {path} not found")
            masks.append(load_mask(path, size=hw))
        return Sample(
            image=image,
            masks=stack_masks(masks, hw),
            class_names=[s.class_name for s in e.segments],
            is_thing=np.array([s.is_thing for s in e.segments], dtype=bool),
            expressions=[(text, i) for i, s in enumerate(e.segments) for text in s.expressions],
            image_id=e.stem,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self)} images)"


def _split_flat(name: str) -> list[tuple[str, tuple[int, int]]]:
    """Candidate ``(stem, (k, j))`` readings of a flat mask name ``<stem>_<k>`` or ``<stem>_<k>_<j>``."""
    out = []
    parts = name.split("_")
    if len(parts) >= 2 and parts[-1].isdigit() and parts[-1].isascii():
        out.append(("_".join(parts[:-1]), (int(parts[-1]), -1)))
    if len(parts) >= 3 and all(p.isdigit() and p.isascii() for p in parts[-2:]):
        out.append(("_".join(parts[:-2]), (int(parts[-2]), int(parts[-1]))))
    return [(stem, key) for stem, key in out if stem]


def _read_classes(classes: Sequence[str] | PathLike | None, root: Path) -> tuple[str, ...] | None:
    if classes is None:
        default = root / "classes.txt"
        if not default.is_file():
            return None
        classes = default
    if isinstance(classes, (str, Path)) or hasattr(classes, "__fspath__"):
        path = existing_file(classes, "class list")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"class list {path}: cannot be read ({exc})") from None
        names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        where = f"class list {path}"
    else:
        names = list(classes)
        where = "classes"
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"{where}: names must be non-blank strings, got {names[:20]!r}")
        names = [n.strip() for n in names]
    if not names:
        raise ConfigError(f"{where}: is empty")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: duplicate names {dupes}")
    return tuple(names)
