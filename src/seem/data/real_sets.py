"""The real annotated photo sets the bundled model trains on, read once and kept compactly in memory.

Every set is COCO panoptic (``../shared/datasets/README.md``); this module knows what each set's masks
*mean* for training, which the format cannot say:

* ``coco128``: COCO things (80 names); the rest of the photo is void, so things are object-query
  (generic) targets and unlabelled pixels are simply not supervised.
* ``ccp``: Clothing Co-Parsing. The whole person is a generic target (``person``); the 58 clothing / hair /
  skin parts overlap it, so they are prompt targets and text targets (class name -> union of its parts)
  but not object-query targets.
* ``camvid``: 11 street classes, every pixel labelled: all segments are generic targets (full panoptic).
* ``bsds500``: class-agnostic "segment everything" regions, one annotator's map per draw: prompt targets only.

A record keeps the photo (uint8) and one int16 segment-index map per annotation layer (-1 = void), so
thousands of photos fit in a few hundred MB and a training draw never touches the disk twice.
The validation split is fixed per photo (a hash of its file name), so a photo and all its annotators sit
on one side; CamVid's own ``val`` file is always validation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seem.data.readers_coco import CocoPanopticReader
from seem.errors import ConfigError

ROLE_GENERIC = "generic"  # object-query target with a class label (and a prompt / text target)
ROLE_PART = "part"  # prompt and text target; overlaps a generic segment
ROLE_REGION = "region"  # class-agnostic: prompt target only


@dataclass(frozen=True)
class Layer:
    """One annotation map of a photo: ``index`` ``(H, W)`` int16, ``-1`` void, ``k`` = segment k."""

    index: np.ndarray
    names: tuple[str, ...]
    is_thing: tuple[bool, ...]
    role: str


@dataclass(frozen=True)
class PhotoRecord:
    """A photo with its annotation layers (several for CCP; one per annotator for BSDS, of which one is
    drawn per sample: ``alternatives=True``)."""

    set_name: str
    key: str
    image: np.ndarray  # (H, W, 3) uint8
    layers: tuple[Layer, ...]
    alternatives: bool = False


@dataclass(frozen=True)
class _SetSpec:
    name: str
    files: tuple[tuple[str, str, str], ...]  # (json, png dir, role) per annotation file
    alternatives: bool = False


SET_SPECS: dict[str, _SetSpec] = {
    "coco128": _SetSpec("coco128", (("panoptic_train.json", "panoptic_train", ROLE_GENERIC),)),
    "ccp": _SetSpec("ccp", (("panoptic_person.json", "panoptic_person", ROLE_GENERIC),
                            ("panoptic_parts.json", "panoptic_parts", ROLE_PART))),
    "camvid": _SetSpec("camvid", (("panoptic_train.json", "panoptic_train", ROLE_GENERIC),)),
    "camvid_val": _SetSpec("camvid", (("panoptic_val.json", "panoptic_val", ROLE_GENERIC),)),
    "bsds500": _SetSpec("bsds500", (("panoptic_all.json", "panoptic_all", ROLE_REGION),), alternatives=True),
}


def is_validation(key: str, fraction: float) -> bool:
    """Whether photo ``key`` (its file name) belongs to the fixed validation part (stable across runs)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") / 2**32 < fraction


def _index_map(masks: np.ndarray) -> np.ndarray:
    out = np.full(masks.shape[1:], -1, dtype=np.int16)
    for k in range(masks.shape[0]):
        out[masks[k]] = k
    return out


def load_set(root: str | Path, spec_name: str, split: str = "train", val_fraction: float = 0.1,
             limit: int | None = None) -> list[PhotoRecord]:
    """The photos of one set (``SET_SPECS`` name) under ``root`` (the datasets folder).

    Args:
        split: ``"train"`` (photos outside the validation part), ``"val"`` (inside it) or ``"all"``.
            ``camvid_val`` is CamVid's own validation file and is never train data.
        limit: read at most this many photos (tests, quick runs).

    Raises:
        ConfigError: the set's folder or files are missing or malformed (from the COCO reader).
    """
    if spec_name not in SET_SPECS:
        raise ConfigError(f"unknown training set {spec_name!r}; known: {sorted(SET_SPECS)}")
    if split not in ("train", "val", "all"):
        raise ConfigError(f"split must be train, val or all, got {split!r}")
    spec = SET_SPECS[spec_name]
    folder = Path(root) / spec.name
    if not folder.is_dir():
        raise ConfigError(f"training set folder {folder} not found")
    photos: dict[str, dict] = {}
    for json_name, png_dir, role in spec.files:
        reader = CocoPanopticReader(folder / "images", folder / json_name, folder / png_dir)
        for i, entry in enumerate(reader._entries):
            key = entry.image_file
            if spec_name == "camvid_val":  # its own validation file: never train data
                keep = split != "train"
            else:
                keep = split == "all" or is_validation(key, val_fraction) == (split == "val")
            if not keep or (limit is not None and key not in photos and len(photos) >= limit):
                continue
            sample = reader[i]
            slot = photos.setdefault(key, {"image": sample.image, "layers": []})
            if slot["image"].shape != sample.image.shape:
                raise ConfigError(f"{folder}: photo {key} has different sizes in {json_name}")
            slot["layers"].append(Layer(_index_map(sample.masks), tuple(sample.class_names),
                                        tuple(bool(t) for t in sample.is_thing), role))
    return [PhotoRecord(spec.name, key, v["image"], tuple(v["layers"]), spec.alternatives)
            for key, v in sorted(photos.items())]


def set_class_names(records: list[PhotoRecord], roles: tuple[str, ...] = (ROLE_GENERIC, ROLE_PART)) -> tuple[str, ...]:
    """Sorted class names that label segments of the given ``roles`` in ``records`` (regions have none)."""
    names = {n for r in records for layer in r.layers if layer.role in roles and layer.role != ROLE_REGION
             for n in layer.names}
    return tuple(sorted(names))


def photo_segments(record: PhotoRecord, min_area: int, per_photo: int,
                   roles: tuple[str, ...] = (ROLE_GENERIC, ROLE_PART, ROLE_REGION)) -> list[np.ndarray]:
    """Up to ``per_photo`` ``(H, W)`` bool masks of one photo's segments, spread over sizes: those of at least
    ``min_area`` pixels in the first two annotation layers (the first only, for sets of alternative annotators)
    whose role is in ``roles``, sorted by area, then every ``n``-th. The click-protocol photos of
    ``benchmarks/eval_heldout_clicks.py`` and :mod:`seem.train.candidate_scorer` (whole objects:
    ``roles=(ROLE_GENERIC,)``)."""
    masks = []
    for layer in record.layers[:2] if not record.alternatives else record.layers[:1]:
        if layer.role not in roles:
            continue
        ids, counts = np.unique(layer.index[layer.index >= 0], return_counts=True)
        masks += [layer.index == i for i, c in zip(ids, counts) if c >= min_area]
    masks.sort(key=lambda m: -int(m.sum()))
    step = max(1, len(masks) // per_photo)
    return masks[::step][:per_photo]
