"""Part files -> one COCO file per format, streamed (memory flat in the number of images): ``OUT/instances.json``
(COCO instance segmentation, RLE masks, ``score`` per annotation) and ``OUT/panoptic.json`` (COCO panoptic,
PNGs under ``OUT/panoptic/``). Each is written to a temporary file and moved into place, so a reader never sees
half a file. Image ids are the image's index + 1 and annotation ids count from 1 in image order, so the output
does not depend on how many processes labelled the images.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from seem.labeling.parts import PartStore
from seem.labeling.run import LabelJob

INFO = {"description": "labelled by seem (SEEM)", "version": "1.0"}


@dataclass(frozen=True)
class MergeStats:
    images: int
    missing: int  # images without a part file (failed or not labelled yet): left out of the output
    annotations: int
    written: tuple[Path, ...]


def _parts(job: LabelJob, store: PartStore) -> Iterator[dict[str, Any]]:
    for i in range(len(job.images)):
        if store.path(i).is_file():
            yield store.read(i)


def _dump(f: IO[str], value: Any) -> None:
    f.write(json.dumps(value, separators=(",", ":")))


def _write_list(f: IO[str], items: Iterator[Any]) -> int:
    f.write("[")
    n = 0
    for item in items:
        if n:
            f.write(",\n")
        _dump(f, item)
        n += 1
    f.write("]")
    return n


def _stream(path: Path, sections: list[tuple[str, Any]]) -> dict[str, int]:
    """Write a JSON object whose values are lists (given as iterators, streamed) or plain values."""
    counts = {}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("{")
            for k, (key, value) in enumerate(sections):
                f.write(("," if k else "") + json.dumps(key) + ":")
                if isinstance(value, Iterator):
                    counts[key] = _write_list(f, value)
                else:
                    _dump(f, value)
            f.write("}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts


def _image(part: dict[str, Any]) -> dict[str, Any]:
    return {k: part[k] for k in ("id", "file_name", "height", "width")}


def _annotations(job: LabelJob, store: PartStore) -> Iterator[dict[str, Any]]:
    next_id = 1
    for part in _parts(job, store):
        for ann in part.get("annotations", []):
            yield {"id": next_id, "image_id": part["id"], **ann}
            next_id += 1


def _panoptic_annotations(job: LabelJob, store: PartStore) -> Iterator[dict[str, Any]]:
    for part in _parts(job, store):
        yield {"image_id": part["id"], "file_name": part["panoptic_file"], "segments_info": part["segments_info"]}


def merge(job: LabelJob) -> MergeStats:
    """Write the COCO files of ``job`` from its part files (run once, after every rank finished)."""
    store = PartStore(job.out)
    present = sum(1 for i in range(len(job.images)) if store.path(i).is_file())
    categories = job.spec.categories()
    written, annotations = [], 0
    if "coco" in job.spec.formats:
        path = job.out / "instances.json"
        counts = _stream(path, [("info", INFO), ("images", (_image(p) for p in _parts(job, store))),
                                ("annotations", _annotations(job, store)),
                                ("categories", [{k: c[k] for k in ("id", "name", "supercategory")} for c in categories])])
        annotations = counts["annotations"]
        written.append(path)
    if "panoptic" in job.spec.formats:
        path = job.out / "panoptic.json"
        _stream(path, [("info", INFO), ("images", (_image(p) for p in _parts(job, store))),
                       ("annotations", _panoptic_annotations(job, store)), ("categories", categories)])
        written.append(path)
    return MergeStats(present, len(job.images) - present, annotations, tuple(written))
