"""Video input and output: frames from a video file or a folder of images, DAVIS-style label PNGs, mp4 overlays.

Video files (mp4, webm, mov, avi, ...) are decoded with PyAV (``av`` on PyPI: FFmpeg in a wheel, no system
FFmpeg), imported only when a video file is read or written: ``pip install 'seem-torch[video]'``. Folders of
frames (``.jpg``/``.png``/...) need nothing extra. Label PNGs follow DAVIS 2017: palette PNG, index = object
id, 0 = background, the PASCAL VOC colour map (:func:`seem.io.save_label_png`).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from seem.errors import ConfigError, ImageError, require

if TYPE_CHECKING:  # PyAV is optional and imported lazily
    from av.container import OutputContainer
    from av.video.stream import VideoStream

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FOLDER_FPS = 24.0  # frame rate assumed for folders of frames (DAVIS is 24 fps)
CODECS = ("libx264", "mpeg4")  # first one the PyAV wheel can encode


def _av():
    return require("av", "video")


def _av_errors(av) -> tuple[type[BaseException], ...]:
    return (getattr(av, "FFmpegError", OSError), OSError, ValueError, IndexError)


def _check_fps(fps: float | None) -> None:
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be a positive number, got {fps!r}")


def frame_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (by suffix, case-insensitive), sorted by name.

    Raises:
        ImageError: not a folder, or no image file in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    # natural order: "2.jpg" before "10.jpg" (unpadded names, e.g. from ffmpeg's %d pattern)
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
    if not files:
        raise ImageError(f"{folder}: no frame images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video before decoding it.

    Attributes:
        num_frames: frames :func:`read_frames` will yield (an estimate for video files; ``None`` if unknown).
        fps: frames per second of the yielded frames (``fps`` when subsampled, the file's rate, or
            :data:`DEFAULT_FOLDER_FPS` for folders).
    """

    num_frames: int | None
    fps: float


def probe(source: str | Path, fps: float | None = None) -> VideoInfo:
    """Frame count (estimated) and frame rate of a video file or frame folder, without decoding frames.

    Raises:
        ImageError: missing or unreadable source. ConfigError: ``fps`` not positive, or given for a folder.
        MissingDependencyError: a video file without PyAV installed.
    """
    _check_fps(fps)
    path = Path(source)
    if path.is_dir():
        if fps is not None:
            raise ConfigError("fps subsampling needs timestamps: give a video file, not a folder of frames")
        return VideoInfo(len(frame_files(path)), DEFAULT_FOLDER_FPS)
    av = _av()
    container = _open(av, path)
    try:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if duration is None and container.duration:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        count = int(stream.frames) or (round(duration * rate) if duration and rate else None)
        if fps is not None and rate and fps >= rate:
            fps = None  # at or above the source rate: every frame is kept, at the source rate
        if fps is not None and count is not None and rate:
            count = min(count, math.ceil(count * fps / rate))
        return VideoInfo(count, float(fps or rate or DEFAULT_FOLDER_FPS))
    finally:
        container.close()


def _open(av, path: Path):
    if not path.is_file():
        raise ImageError(f"{path}: no such video file or frame folder")
    try:
        container = av.open(str(path))
    except _av_errors(av) as exc:
        raise ImageError(f"{path}: cannot read this video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise ImageError(f"{path}: the file has no video stream")
    return container


def read_frames(source: str | Path, fps: float | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or a folder of images as ``(H, W, 3)`` uint8 RGB arrays, in order.

    Args:
        source: a video file (decoded by PyAV) or a folder of frame images (sorted by file name).
        fps: keep about ``fps`` frames per second by timestamps (video files only): the first frame, then
            the first frame at or after each further ``1 / fps`` seconds. Never duplicates frames.

    A generator: frames are decoded lazily and never kept; the file is closed when it ends or is closed.

    Raises:
        ImageError: missing, unreadable or corrupt sources or frames. ConfigError: bad ``fps``.
        MissingDependencyError: a video file without PyAV (``pip install 'seem-torch[video]'``).
    """
    from seem.io import load_image

    _check_fps(fps)
    path = Path(source)
    if path.is_dir():
        if fps is not None:
            raise ConfigError("fps subsampling needs timestamps: give a video file, not a folder of frames")
        for file in frame_files(path):
            yield load_image(file)
        return
    av = _av()
    container = _open(av, path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or DEFAULT_FOLDER_FPS)
        if fps is not None and fps >= rate:
            fps = None  # nothing to drop
        next_time = None
        frames = container.decode(stream)
        index = 0
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except _av_errors(av) as exc:
                raise ImageError(f"{path}: cannot decode frame {index} ({exc})") from None
            time = frame.time if frame.time is not None else index / rate
            index += 1
            if fps is not None:
                if next_time is not None and time < next_time - 1e-6:
                    continue
                next_time = (time if next_time is None else next_time) + 1.0 / fps
                if next_time <= time + 1e-6:  # skip whole periods at once (no loop over tiny steps)
                    next_time += (math.floor((time + 1e-6 - next_time) * fps) + 1) / fps
            yield frame.to_ndarray(format="rgb24")
    finally:
        container.close()


def save_label_map(label_map: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W)`` object-id map as a DAVIS palette PNG (0 = background); see :func:`seem.io.save_label_png`."""
    from seem.io import save_label_png

    return save_label_png(label_map, path)


def available_codec() -> str:
    """The first of :data:`CODECS` this PyAV build can encode.

    Raises:
        MissingDependencyError: PyAV missing. ImageError: none of the codecs is available.
    """
    av = _av()
    for name in CODECS:
        with contextlib.suppress(Exception):  # PyAV raises UnknownCodecError / ValueError depending on version
            av.codec.Codec(name, "w")
            return name
    raise ImageError(f"this PyAV build cannot encode any of {', '.join(CODECS)}")


class VideoWriter:
    """Write ``(H, W, 3)`` uint8 RGB frames to a video file (mp4: H.264 via libx264, else MPEG-4 Part 2).

    All frames must have the size of the first; odd sizes are padded by one pixel (yuv420p needs even
    sizes). Use as a context manager, or call :meth:`close` to flush.

    Raises:
        MissingDependencyError: PyAV missing (when constructed). ImageError: wrong frames or an encoder error.
    """

    def __init__(self, path: str | Path, fps: float = DEFAULT_FOLDER_FPS) -> None:
        _check_fps(fps)
        self._av = _av()
        self.path = Path(path)
        self.codec = available_codec()
        self.fps = Fraction(fps).limit_denominator(1001)
        self._container: OutputContainer | None = None
        self._stream: VideoStream | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ImageError(f"video frames must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
        if self._size is None:
            self._start(rgb.shape[:2])
        if rgb.shape[:2] != self._size:
            raise ImageError(f"frame {self.frames} is {rgb.shape[:2]} (H, W); the video is {self._size}")
        h, w = rgb.shape[:2]
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        assert self._stream is not None and self._container is not None  # opened by _start with the first frame
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def _start(self, size: tuple[int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size = (int(size[0]), int(size[1]))
        self._container = self._av.open(str(self.path), mode="w")
        # every name in CODECS is a video codec, so PyAV returns a VideoStream
        self._stream = stream = cast("VideoStream", self._container.add_stream(self.codec, rate=self.fps))
        stream.height, stream.width = self._size[0] + self._size[0] % 2, self._size[1] + self._size[1] % 2
        stream.pix_fmt = "yuv420p"

    def close(self) -> None:
        """Flush the encoder and close the file (no file is written when no frame was)."""
        if self._container is None:
            return
        assert self._stream is not None  # opened together with the container
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
