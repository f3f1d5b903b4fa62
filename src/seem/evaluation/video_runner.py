"""``seem eval video``: semi-supervised video object segmentation on DAVIS folders or generated clips.

Protocol (DAVIS 2017, Pont-Tuset et al. 2017; toolkit ``davis2017-evaluation``, task ``semi-supervised``):
every object is given by its mask on the first frame; the segmenter follows it through the clip; each
object's prediction is scored per frame with J and F (:mod:`seem.evaluation.video`) on frames ``1 .. N-2``
(the first, annotated frame and the last frame are left out, as the toolkit does), and the numbers are
means over objects.

Data sets (lazy, indexable: ``len(ds)`` clips, ``ds[i]`` -> :class:`VideoClip`):

* :class:`DavisDataset`: ``ROOT/JPEGImages/<res>/<seq>/*.jpg`` and ``ROOT/Annotations/<res>/<seq>/*.png``
  (palette / index PNGs: 0 background, 255 void, else the object id), the sequence list from
  ``ROOT/ImageSets/2017/<split>.txt``;
* :class:`SceneClips`: ``SceneGenerator(SceneConfig(size)).sample_clip(seed, num_frames)`` for seeds
  ``0 .. N-1`` (below the training seeds), the thing objects of frame 0 (at most ``max_objects``).

:func:`run_video` drives :class:`seem.video.VideoSegmenter` (modes ``memory`` / ``independent``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seem.errors import ConfigError, ImageError, PromptError
from seem.evaluation.common import describe_dataset, num_samples, progress_bar, to_plain
from seem.evaluation.video import JFAccumulator

VIDEO_MODES: tuple[str, ...] = ("memory", "independent")
VOID_LABEL = 255


@dataclass(frozen=True)
class VideoClip:
    """One clip to evaluate.

    Attributes:
        name: sequence name (``"bear"``, ``"clip3"``).
        frames: ``N`` frames, ``(H, W, 3)`` uint8 RGB.
        object_ids: the objects to follow (ints >= 1), each given on frame 0.
        gt: per frame ``{obj_id: (H, W) bool}`` (absent objects: empty masks), ``None`` for an unannotated frame.
        void: per frame ``(H, W)`` bool void pixels (label 255) or ``None``.
    """

    name: str
    frames: list
    object_ids: list
    gt: list
    void: list


def _read_labels(path: Path) -> np.ndarray:
    """``(H, W)`` int64 labels of an index PNG (palette ``P`` or grey ``L`` / ``I``); ConfigError otherwise.
    A grey PNG holding only 0 and 255 (or a 1-bit PNG) is DAVIS 2016's binary mask: object 1 on background."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode, labels = img.mode, np.asarray(img).astype(np.int64)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"annotation {path} cannot be read ({exc})") from None
    if mode not in ("P", "L", "I", "I;16", "1"):
        raise ConfigError(f"annotation {path}: mode {mode}, expected a palette (P) or grey index PNG")
    if mode == "1" or (mode == "L" and set(np.unique(labels).tolist()) <= {0, 255}):
        labels = (labels > 0).astype(np.int64)  # DAVIS 2016: a binary grey mask (0 / 255) of one object
    return labels


class DavisDataset:
    """DAVIS 2016 / 2017 folders for the semi-supervised protocol.

    Args:
        root: folder with ``JPEGImages/`` and ``Annotations/``.
        split: ``None``: ``ImageSets/2017/val.txt`` when it exists, else every sequence folder; ``"all"``: every
            sequence folder of ``Annotations/<resolution>``; another name: ``ImageSets/2017/<split>.txt``.
        resolution: sub-folder (``480p`` or ``Full-Resolution``).

    Objects are the labels of the first annotation except 0 and 255; a frame without an annotation PNG is
    not scored. Raises ConfigError (missing folders / list / frames / first annotation, size mismatch) and
    ImageError (unreadable file, on ``ds[i]``).
    """

    def __init__(self, root, split: str | None = None, resolution: str = "480p") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"DAVIS folder {self.root}: {'is not a directory' if self.root.exists() else 'not found'}")
        self.image_dir = self.root / "JPEGImages" / resolution
        self.mask_dir = self.root / "Annotations" / resolution
        for d in (self.image_dir, self.mask_dir):
            if not d.is_dir():
                raise ConfigError(f"DAVIS folder {self.root}: no {d.relative_to(self.root)}/ directory")
        listing = self.root / "ImageSets" / "2017" / f"{split or 'val'}.txt"
        if split is None and not listing.is_file() or split == "all":
            self.split = "all"
            names = sorted(p.name for p in self.mask_dir.iterdir() if p.is_dir())
        else:
            if not listing.is_file():
                raise ConfigError(f"split {split!r}: {listing} not found")
            self.split = split or "val"
            names = list(dict.fromkeys(line.strip() for line in listing.read_text().splitlines() if line.strip()))
        if not names:
            raise ConfigError(f"DAVIS folder {self.root}: no sequence (split {self.split})")
        self.sequences: list[tuple[str, list[Path]]] = []
        for name in names:
            frames = sorted(p for p in (self.image_dir / name).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            if not frames:
                raise ConfigError(f"sequence {name!r}: no frame in {self.image_dir / name}")
            if not (self.mask_dir / name / (frames[0].stem + ".png")).is_file():
                raise ConfigError(f"sequence {name!r}: no first-frame annotation {self.mask_dir / name / frames[0].stem}.png")
            self.sequences.append((name, frames))

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> VideoClip:
        from seem.data.readers_common import normalize_index, read_image

        name, paths = self.sequences[normalize_index(index, len(self), type(self).__name__)]
        frames = [read_image(p, f"{name}/{p.stem}") for p in paths]
        gt: list[dict[int, np.ndarray] | None] = []
        void: list[np.ndarray | None] = []
        ids: list[int] | None = None
        for p, frame in zip(paths, frames):
            mpath = self.mask_dir / name / (p.stem + ".png")
            if not mpath.is_file():
                gt.append(None)
                void.append(None)
                continue
            labels = _read_labels(mpath)
            if labels.shape != frame.shape[:2]:
                raise ConfigError(f"annotation {mpath} is {labels.shape[0]}x{labels.shape[1]} but its frame is "
                                  f"{frame.shape[0]}x{frame.shape[1]} (HxW)")
            if ids is None:
                ids = [int(i) for i in np.unique(labels) if i not in (0, VOID_LABEL)]
            gt.append({i: labels == i for i in ids})
            v = labels == VOID_LABEL
            void.append(v if v.any() else None)
        assert ids is not None  # __init__ checked that frame 0 is annotated: the loop read its ids
        return VideoClip(name, frames, ids, gt, void)

    def describe(self) -> dict:
        return {"type": "davis", "root": str(self.root), "split": self.split, "resolution": self.image_dir.name,
                "num_sequences": len(self)}


class SceneClips:
    """Generated clips of moving objects: seeds ``start .. start + num - 1``, ``num_frames`` frames of
    ``size`` pixels; the objects are the things of frame 0 (at most ``max_objects``, picked as
    :func:`~seem.evaluation.scenes_eval.chosen_things`), renumbered ``scene object id + 1`` (ids >= 1)."""

    def __init__(self, num: int = 20, size: int = 256, num_frames: int = 20, start: int = 0,
                 max_objects: int | None = 3) -> None:
        from seem.data.scenes import SceneConfig, SceneGenerator

        if int(num) < 1 or int(num_frames) < 1:
            raise ConfigError(f"need >= 1 clip and >= 1 frame, got {num} clips of {num_frames} frames")
        self.num, self.size, self.num_frames, self.start = int(num), int(size), int(num_frames), int(start)
        self.max_objects = max_objects
        self.generator = SceneGenerator(SceneConfig(size=self.size))

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> VideoClip:
        from seem.data.readers_common import normalize_index
        from seem.evaluation.scenes_eval import chosen_things

        seed = self.start + normalize_index(index, len(self), type(self).__name__)
        clip = self.generator.sample_clip(seed, num_frames=self.num_frames)
        first = clip[0]
        ids = [int(first.object_ids[k]) for k in chosen_things(first, seed, self.max_objects)]
        gt = []
        for scene in clip:
            where = {int(o): k for k, o in enumerate(scene.object_ids) if scene.is_thing[k]}
            empty = np.zeros(scene.image.shape[:2], bool)
            gt.append({i + 1: (scene.masks[where[i]] if i in where else empty) for i in ids})
        return VideoClip(f"clip{seed}", [s.image for s in clip], [i + 1 for i in ids], gt, [None] * len(clip))

    def describe(self) -> dict:
        return {"type": "scene_clips", "num_sequences": self.num, "first_seed": self.start,
                "last_seed": self.start + self.num - 1, "size": self.size, "num_frames": self.num_frames,
                "max_objects_per_clip": self.max_objects}


def parse_modes(mode: str | Sequence[str]) -> list[str]:
    """``"memory"``, ``"independent"``, ``"both"`` or a sequence of modes -> list of modes (ValueError else)."""
    names = list(VIDEO_MODES) if mode == "both" else [mode] if isinstance(mode, str) else list(mode)
    bad = [m for m in names if m not in VIDEO_MODES]
    if bad or not names:
        raise ValueError(f"mode must be 'both' or among {VIDEO_MODES}, got {mode!r}")
    return list(dict.fromkeys(names))


def _video_segmenter(predictor, mode: str):
    try:
        from seem.video import VideoSegmenter
    except ImportError:  # the package without its __init__ re-export
        from seem.video.segmenter import VideoSegmenter
    return VideoSegmenter(predictor, mode=mode)


def run_video(predictor, dataset, mode: str | Sequence[str] = "memory", limit: int | None = None,
              progress: bool = True, use_void: bool = False, exclude_first_last: bool = True,
              segmenter_factory: Callable | None = None) -> dict:
    """Semi-supervised VOS on the first ``limit`` clips of ``dataset``, once per mode.

    Args:
        predictor: a :class:`~seem.predictor.SeemPredictor`, handed to the segmenter.
        dataset: ``len()`` and ``ds[i]`` -> :class:`VideoClip` (:class:`DavisDataset`, :class:`SceneClips`).
        mode: ``memory``, ``independent``, ``both`` or a list of modes.
        limit: number of clips (``None``: all).
        use_void: leave void pixels (label 255) out of J and F. ``False`` (default) reproduces
            davis2017-evaluation, which turns 255 into background before scoring.
        exclude_first_last: score frames ``1 .. N-2`` only (the DAVIS protocol).
        segmenter_factory: ``(predictor, mode) -> segmenter`` with ``add_object(obj_id, frame_index=0, mask=...)``
            and ``run(frames)`` yielding ``(frame_index, result)``, ``result.masks`` (or ``result``) a
            ``{obj_id: (H, W) bool}`` mapping; default :class:`seem.video.VideoSegmenter`.

    Returns:
        ``{"task": "video", "dataset", "protocol", "num_sequences", "video": {mode: JFAccumulator.summary()
        (percent) + "num_frames_segmented", "seconds_segment", "fps", "missing_predictions"}, "errors",
        "seconds"}``. ``fps`` = frames segmented (all objects of a frame together) / wall seconds inside
        ``run`` (scoring excluded). A clip whose segmenter raises PromptError / ImageError is recorded in
        ``errors`` and left out of that mode.
    """
    modes = parse_modes(mode)
    factory = segmenter_factory or _video_segmenter
    n = num_samples(dataset, limit)
    accs = {m: JFAccumulator(exclude_first_last=exclude_first_last) for m in modes}
    stats = {m: {"num_frames_segmented": 0, "seconds_segment": 0.0, "missing_predictions": 0} for m in modes}
    errors: list[dict] = []
    start = time.perf_counter()
    for i in progress_bar(range(n), progress, total=n, desc="clips"):
        clip = dataset[i]
        if not clip.object_ids:
            errors.append({"sequence": clip.name, "error": "no object on the first frame"})
            continue
        for m in modes:
            acc, st = accs[m], stats[m]
            acc.set_length(clip.name, len(clip.frames))
            try:
                frames_done, seconds, missing = _score_clip(factory(predictor, m), clip, acc, use_void)
            except (PromptError, ImageError) as e:
                acc.discard(clip.name)
                errors.append({"sequence": clip.name, "mode": m, "error": str(e)})
                continue
            st["num_frames_segmented"] += frames_done
            st["seconds_segment"] += seconds
            st["missing_predictions"] += missing
    results = {}
    for m in modes:
        st = stats[m]
        fps = st["num_frames_segmented"] / st["seconds_segment"] if st["seconds_segment"] > 0 else float("nan")
        results[m] = accs[m].summary() | st | {"fps": fps}
    return to_plain({
        "task": "video", "dataset": describe_dataset(dataset),
        "protocol": {"task": "semi-supervised (first-frame masks given)", "modes": modes, "limit": limit,
                     "frames_scored": "1..N-2 (first and last frame excluded)" if exclude_first_last else "all",
                     "void": "excluded from J and F" if use_void else "scored as background (davis2017-evaluation)",
                     "bound_th": accs[modes[0]].bound_th},
        "num_sequences": n, "video": results, "errors": errors, "seconds": time.perf_counter() - start})


def _score_clip(seg, clip: VideoClip, acc: JFAccumulator, use_void: bool) -> tuple[int, float, int]:
    """Follow ``clip``'s first-frame objects with the segmenter ``seg``, scoring every annotated frame into
    ``acc`` -> ``(frames segmented, seconds inside the segmenter, objects it gave no mask for)``."""
    seconds, frames_done, missing = 0.0, 0, 0
    for obj in clip.object_ids:
        seg.add_object(obj, frame_index=0, mask=clip.gt[0][obj])
    t = time.perf_counter()
    for k, result in seg.run(clip.frames):
        seconds += time.perf_counter() - t
        frames_done += 1
        masks = getattr(result, "masks", result)
        if clip.gt[k] is not None:
            void = clip.void[k] if use_void else None
            for obj in clip.object_ids:
                gt = clip.gt[k][obj]
                pred = masks.get(obj)
                if pred is None:
                    missing += 1
                    pred = np.zeros(gt.shape, bool)
                acc.add(clip.name, obj, k, np.asarray(pred, bool), gt, void)
        t = time.perf_counter()
    return frames_done, seconds, missing
