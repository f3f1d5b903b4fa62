"""Zero-shot video object segmentation with SEEM (paper §4; official demo ``referring_image``).

* :class:`VideoSegmenter`: objects marked on a reference frame by any prompt are followed frame by frame,
  streaming, with the referred-region prompt (and, in ``"memory"`` mode, the previous frame's mask).
* :mod:`seem.video.io`: frames from video files (PyAV, ``pip install 'seem-torch[video]'``) or folders,
  DAVIS-style label PNGs, mp4 overlays.

Importing this package loads numpy and torch only (PyAV is imported when a video file is read or written).
"""

from __future__ import annotations

from seem.video.io import VideoInfo, VideoWriter, probe, read_frames, save_label_map
from seem.video.segmenter import MODES, FrameResult, VideoSegmenter, concat_references, reference_from_current

__all__ = [
    "MODES",
    "FrameResult",
    "VideoInfo",
    "VideoSegmenter",
    "VideoWriter",
    "concat_references",
    "probe",
    "read_frames",
    "reference_from_current",
    "save_label_map",
]
