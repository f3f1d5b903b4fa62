"""The labelling loop of one rank: its share of the images (``index % world_size == rank``), each labelled
once, written as a part file (and a panoptic PNG) before the next; images whose part exists are skipped, so a
killed run continues where it stopped. Memory stays flat in the number of images: one image and its masks
are held at a time, the rest lives in the part files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from seem.errors import SeemError
from seem.labeling.distributed import Ranks
from seem.labeling.parts import PartStore, atomic_write_bytes
from seem.labeling.records import LabelSpec, label_image


@dataclass(frozen=True)
class LabelJob:
    """The images of a job (every rank builds the same one from the same arguments).

    Attributes:
        images: image paths, in a fixed order (image id = index + 1).
        file_names: per image its COCO ``file_name``: the path relative to the images' common folder.
        out: the output folder (shared by every rank: a shared file system across machines).
        spec: what to write.
    """

    images: tuple[Path, ...]
    file_names: tuple[str, ...]
    out: Path
    spec: LabelSpec

    @classmethod
    def create(cls, images: Sequence[Path], out: Path, spec: LabelSpec) -> LabelJob:
        root = os.path.commonpath([str(Path(p).resolve().parent) for p in images])
        names = tuple(PurePosixPath(*Path(p).resolve().relative_to(root).parts).as_posix() for p in images)
        return cls(tuple(Path(p) for p in images), names, Path(out), spec)

    def panoptic_file(self, index: int) -> str:
        """The PNG name of image ``index`` under ``OUT/panoptic/``: its file name with ``.png`` for its suffix,
        prefixed by the image id (``a.jpg`` and ``a.png`` of one folder must not share a PNG)."""
        name = PurePosixPath(self.file_names[index])
        return str(name.with_name(f"{index + 1:08d}_{name.stem}.png"))

    def shard(self, ranks: Ranks) -> range:
        return range(ranks.rank, len(self.images), ranks.world_size)

    def manifest(self) -> dict:
        """What the part files of this job depend on: the settings and the image list, in order, by their
        COCO file names (relative to the images' common folder, so ranks that mount a shared file system at
        different paths agree)."""
        return json.loads(json.dumps({"spec": dataclasses.asdict(self.spec), "images": list(self.file_names)}))

    def claim_output(self) -> None:
        """Record this job in ``OUT/job.json``, or check that the job already recorded there is this one.

        Part files are keyed by image index, so continuing another job's output (other phrases, vocabulary,
        formats or images) would label images with the wrong names or skip them.

        Raises:
            SeemError: ``OUT`` holds the parts of a job with other settings or images.
        """
        path = self.out / "job.json"
        mine = self.manifest()
        if path.is_file():
            try:
                theirs = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                theirs = None
            if theirs != mine:
                what = "images" if isinstance(theirs, dict) and theirs.get("spec") == mine["spec"] else "settings"
                raise SeemError(f"{self.out} holds the output of a seem label job with other {what} ({path}); "
                                "continue it with the same arguments, or use another --out")
            return
        parts = PartStore(self.out).dir
        if parts.is_dir() and any(parts.glob("*.json")):
            raise SeemError(f"{self.out} holds part files of an unrecorded job; use another --out")
        atomic_write_bytes(path, json.dumps(mine, indent=1).encode())


@dataclass(frozen=True)
class ShardStats:
    labelled: int
    skipped: int  # already done (part file present)
    failed: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0


def label_shard(predictor, job: LabelJob, ranks: Ranks | None = None, progress: bool = True,
                after_image: Callable[[int], None] | None = None) -> ShardStats:
    """Label this rank's images that have no part file yet.

    Args:
        predictor: a :class:`seem.SeemPredictor`. job: the images and the output. ranks: this process's share.
        progress: a tqdm bar (images, images/s) on rank 0.
        after_image: called with the index of each image once its part file is written.

    Returns:
        counts and time; an image that cannot be read or labelled prints ``error: PATH: message`` and is left
        without a part (a later run retries it).

    Raises:
        SeemError: ``job.out`` holds another job's output (:meth:`LabelJob.claim_output`).
    """
    from seem import io as seem_io

    ranks = ranks or Ranks()
    job.claim_output()
    store = PartStore(job.out)
    todo = [i for i in job.shard(ranks) if not store.done(i)]
    skipped = len(job.shard(ranks)) - len(todo)
    bar = _progress(len(todo), ranks, progress)
    failed = labelled = 0
    t0 = time.perf_counter()
    for i in todo:
        try:
            image = seem_io.load_image(job.images[i])
            record, png = label_image(predictor, image, job.spec)
        except (SeemError, OSError) as exc:
            failed += 1
            print(f"error: {job.images[i]}: {exc}", file=sys.stderr)
            bar.update(1)
            continue
        record = {"id": i + 1, "file_name": job.file_names[i], **record}
        if png is not None:
            record["panoptic_file"] = job.panoptic_file(i)
            atomic_write_bytes(job.out / "panoptic" / record["panoptic_file"], png)
        store.write(i, record)  # last: a part file means the image is done
        labelled += 1
        bar.update(1)
        if after_image is not None:
            after_image(i)
    bar.close()
    return ShardStats(labelled, skipped, failed, time.perf_counter() - t0)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, ranks: Ranks, enabled: bool):
    if not enabled or not ranks.is_main:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    desc = "label" if ranks.world_size == 1 else f"label (rank 0 of {ranks.world_size})"
    return tqdm(total=total, unit="img", desc=desc, file=sys.stderr, dynamic_ncols=True)
