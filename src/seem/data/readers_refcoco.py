"""RefCOCO / RefCOCO+ / RefCOCOg in the layout of the ``refer`` API, read safely (no code-running pickles)."""

from __future__ import annotations

import builtins
import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seem.data.readers_common import (
    PathLike,
    check_size,
    existing_dir,
    existing_file,
    field,
    load_json,
    normalize_index,
    read_image,
    stack_masks,
)
from seem.data.sample import Sample
from seem.errors import ConfigError, require
from seem.vocabularies import display_name

# The only globals a refs file may name. The official files need none (their dicts, lists, strings and
# numbers are plain pickle opcodes); these cover other writers of the same plain structure.
_SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool"})


class _BuiltinsOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and scalars; refuses every other global *before* it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _to_text(obj: Any) -> Any:
    """Python 2 pickles hold byte strings: make them str (UTF-8, else Latin-1), recursively."""
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return obj.decode("latin-1")
    if isinstance(obj, dict):
        return {_to_text(k): _to_text(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_text(v) for v in obj)
    return obj


def load_refs(path: PathLike) -> list[dict]:
    """Read a refs file: the official ``refs(unc).p`` pickle (Python 2 or 3) or a JSON list of the same dicts.

    The pickle is read by an unpickler that allows only builtin containers and scalars
    (dict/list/tuple/set/str/int/float/bool), so a tampered file cannot run code: any other global
    (``os.system``, a class, ...) is refused before it is imported or called. JSON is recognised by its
    first non-blank byte (``[``), whatever the file is called.

    Raises:
        ConfigError: the file is missing, not a pickle/JSON, refused as unsafe, or not a list of dicts.
    """
    path = existing_file(path, "refs file")
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head[:1] in (b"[", b"{"):
        refs = load_json(path, "refs file")
    else:
        try:
            with open(path, "rb") as f:
                refs = _BuiltinsOnlyUnpickler(f, encoding="bytes").load()
        except pickle.UnpicklingError as exc:
            if "is not allowed" in str(exc):
                raise ConfigError(
                    f"refs file {path}: refused to unpickle it ({exc}); a refs pickle may hold only dicts, lists, "
                    "strings and numbers, and anything else could run code. Convert a trusted file to JSON."
                ) from None
            raise ConfigError(f"refs file {path}: not a valid pickle or JSON file ({exc})") from None
        except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
            raise ConfigError(
                f"refs file {path}: not a valid pickle or JSON file ({type(exc).__name__}: {exc})"
            ) from None
        refs = _to_text(refs)
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ConfigError(f"refs file {path}: expected a list of ref dicts, got {type(refs).__name__}")
    return refs


@dataclass(frozen=True)
class _Entry:
    image_key: Any  # the COCO image id as in the JSON
    ann_ids: tuple[Any, ...]  # referred instances, in order of first reference
    expressions: tuple[tuple[str, int], ...]  # sentence -> index into ann_ids


class RefCocoReader:
    """Lazy, indexable reader of a RefCOCO-family split: **one** :class:`Sample` **per image**.

    Each sample holds every instance of the image that a ref of ``split`` refers to (in order of first
    reference) and all their sentences as ``expressions``, ``(sentence, index into masks)``. One sample
    per image (rather than per ref) decodes each image once and gives the trainer several expressions to
    sample from, as SEEM's grounding data does. Samples are ordered by the image's first ref in the file.

    Layout (``refer`` API, e.g. ``refcoco/refs(unc).p`` + ``refcoco/instances.json``)::

        image_dir/<images[].file_name>            COCO train2014 images
        instances_json = COCO instances: {"images": [{"id", "file_name", "height", "width"}],
            "annotations": [{"id", "image_id", "category_id", "segmentation"}],  # polygons or RLE
            "categories": [{"id", "name"}]}       # ("isthing" honoured if present, else True)
        refs = [{"ref_id", "ann_id", "image_id", "split", "sentences": [{"sent": "man on the left"}]}, ...]

    Args:
        refs_pickle_or_json: the refs file, pickle or JSON (see :func:`load_refs`; pickles are read safely).
        split: keep refs whose ``split`` equals this (``"train"``, ``"val"``, ``"testA"``, ``"test"``, ...);
            ``None`` keeps all.
        clean_names: apply :func:`seem.vocabularies.display_name` to category names.

    Raises:
        ConfigError: a file is missing or malformed, unsafe pickle, a ref names an ``ann_id`` absent from the
            instances, or its ``image_id`` disagrees with the annotation's; no ref has ``split``.
        ImageError (on ``reader[i]``): the image is missing or corrupt, or not the size the JSON says.
    """

    def __init__(
        self,
        image_dir: PathLike,
        instances_json: PathLike,
        refs_pickle_or_json: PathLike,
        split: str | None = "val",
        *,
        clean_names: bool = True,
    ) -> None:
        self.image_dir = existing_dir(image_dir, "RefCOCO image directory")
        self.instances_json = Path(instances_json)
        self.split = split
        data = load_json(self.instances_json, "COCO instances JSON")
        src = str(self.instances_json)
        if not isinstance(data, dict):
            raise ConfigError(f"{src}: expected a JSON object with images/annotations/categories")
        self._categories: dict[int, tuple[str, bool]] = {}
        for k, c in enumerate(field(data, "categories", list, src)):
            name = field(c, "name", str, f"{src}: categories[{k}]")
            thing = bool(c.get("isthing", True))
            self._categories[field(c, "id", int, f"{src}: categories[{k}]")] = (
                display_name(name) if clean_names else name,
                thing,
            )
        self._images: dict[Any, tuple[str, int, int]] = {}
        for k, im in enumerate(field(data, "images", list, src)):
            where = f"{src}: images[{k}]"
            key = field(im, "id", (int, str), where)
            self._images[key] = (
                field(im, "file_name", str, where),
                field(im, "height", int, where),
                field(im, "width", int, where),
            )
        self._anns: dict[Any, dict] = {}
        for k, a in enumerate(field(data, "annotations", list, src)):
            where = f"{src}: annotations[{k}]"
            self._anns[field(a, "id", (int, str), where)] = {
                "image_id": field(a, "image_id", (int, str), where),
                "category_id": field(a, "category_id", int, where),
                "segmentation": field(a, "segmentation", (list, dict), where),
            }
        self._entries = self._index(load_refs(refs_pickle_or_json), str(refs_pickle_or_json))

    def _index(self, refs: list[dict], src: str) -> list[_Entry]:
        by_image: dict[Any, tuple[list, list]] = {}  # image id -> (ann ids, expressions)
        seen_splits = set()
        for k, ref in enumerate(refs):
            where = f"{src}: refs[{k}]"
            seen_splits.add(ref.get("split"))
            if self.split is not None and ref.get("split") != self.split:
                continue
            ann_id = field(ref, "ann_id", (int, str), where)
            ann = self._anns.get(ann_id)
            if ann is None:
                raise ConfigError(f"{where}: ann_id {ann_id!r} is not an annotation of {self.instances_json}")
            image_id = ref.get("image_id", ann["image_id"])
            if image_id != ann["image_id"]:
                raise ConfigError(
                    f"{where}: image_id {image_id!r} but annotation {ann_id!r} is on image {ann['image_id']!r}"
                )
            if image_id not in self._images:
                raise ConfigError(
                    f"{where}: image {image_id!r} is not in the 'images' of {self.instances_json}"
                )
            if ann["category_id"] not in self._categories:
                raise ConfigError(
                    f"{self.instances_json}: annotation {ann_id!r} has unknown category_id {ann['category_id']}"
                )
            ann_ids, exprs = by_image.setdefault(image_id, ([], []))
            if ann_id not in ann_ids:
                ann_ids.append(ann_id)
            idx = ann_ids.index(ann_id)
            for j, s in enumerate(field(ref, "sentences", list, where)):
                text = field(s, "sent", str, f"{where}.sentences[{j}]").strip()
                if text and (text, idx) not in exprs:
                    exprs.append((text, idx))
        if self.split is not None and not by_image:
            found = sorted(str(s) for s in seen_splits)
            raise ConfigError(f"{src}: no ref has split {self.split!r}; the file has splits {found}")
        return [_Entry(key, tuple(a), tuple(e)) for key, (a, e) in by_image.items()]

    @property
    def class_names(self) -> tuple[str, ...]:
        """All category names of the instances JSON, in its order (cleaned if ``clean_names``)."""
        return tuple(name for name, _ in self._categories.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Sample:
        e = self._entries[normalize_index(index, len(self), type(self).__name__)]
        file_name, h, w = self._images[e.image_key]
        image_id = str(e.image_key)
        image = read_image(self.image_dir / file_name, image_id)
        check_size(
            image.shape[:2], (h, w), f"image {self.image_dir / file_name} (size from the instances JSON)"
        )
        anns = [self._anns[a] for a in e.ann_ids]
        masks = [
            _decode_segmentation(a["segmentation"], h, w, f"annotation {aid!r}")
            for aid, a in zip(e.ann_ids, anns)
        ]
        cats = [self._categories[a["category_id"]] for a in anns]
        return Sample(
            image=image,
            masks=stack_masks(masks, (h, w)),
            class_names=[name for name, _ in cats],
            is_thing=np.array([thing for _, thing in cats], dtype=bool),
            expressions=list(e.expressions),
            image_id=image_id,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.instances_json)!r}, split={self.split!r}, {len(self)} images)"
        )


def _decode_segmentation(seg: list | dict, h: int, w: int, what: str) -> np.ndarray:
    """A COCO ``segmentation`` (polygons ``[[x0, y0, ...], ...]``, RLE with list or string counts) -> (H, W) bool."""
    mask_utils = require("pycocotools.mask", "io")
    try:
        with warnings.catch_warnings():  # pycocotools' Cython code trips a NumPy 2 copy= deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            if isinstance(seg, list):  # polygons, in pixels of the original image
                polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
                if not polys:
                    raise ValueError("no polygon with at least 3 points")
                limit = 4.0 * max(h, w)  # pycocotools rasterises unchecked: NaN / huge values crash it
                for p in polys:
                    if len(p) % 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) and abs(v) <= limit
                                             for v in p):
                        raise ValueError(f"polygons need an even number of finite coordinates within +-{limit:g}")
                rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
            else:
                if [int(v) for v in seg["size"]] != [h, w]:
                    raise ValueError(f"RLE size {seg['size']} is not the image's [{h}, {w}]")
                counts = seg["counts"]
                if isinstance(counts, list):  # uncompressed RLE: validated and decoded by seem.io
                    from seem.errors import ImageError
                    from seem.io import rle_to_mask

                    try:
                        return rle_to_mask({"size": [h, w], "counts": counts})
                    except ImageError as exc:
                        raise ValueError(str(exc)) from None
                else:
                    rle = {
                        "size": [h, w],
                        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
                    }
            return mask_utils.decode(rle).astype(bool)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ConfigError(f"{what}: invalid segmentation ({exc})") from None
