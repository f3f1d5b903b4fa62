"""One image -> its COCO records for ``seem label``: instance annotations (COCO RLE) and a panoptic segmentation
(COCO panoptic PNG: segment id ``= R + 256 G + 256^2 B``, plus ``segments_info``).

Two sources of labels: phrases (``mode="text"``: every instance of each phrase, :meth:`seem.SeemPredictor.find`;
the panoptic map paints the instances, best on top) or a vocabulary (``mode="vocab"``: SEEM's instance and
panoptic inference over the names, :meth:`seem.SeemPredictor.segment_everything`). Category ``k`` of the names
is COCO category id ``k + 1``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seem import io as seem_io
from seem.errors import PromptError
from seem.find import FindConfig

FORMATS = ("coco", "panoptic")


@dataclass(frozen=True)
class LabelSpec:
    """What ``seem label`` writes for each image.

    Attributes:
        mode: ``"text"`` (``names`` are phrases) or ``"vocab"`` (``names`` are a class vocabulary).
        names: the categories, in order (id = index + 1).
        thing_flags: per name, whether it is a countable thing (text mode: all).
        formats: subset of :data:`FORMATS`: ``"coco"`` instance JSON, ``"panoptic"`` PNG + JSON.
        find: thresholds of text mode. score_threshold: vocabulary mode keeps instances scoring >= this.
    """

    mode: str
    names: tuple[str, ...]
    thing_flags: tuple[bool, ...]
    formats: tuple[str, ...] = FORMATS
    find: FindConfig = field(default_factory=FindConfig)
    score_threshold: float = 0.3

    def __post_init__(self) -> None:
        if self.mode not in ("text", "vocab"):
            raise PromptError(f"mode must be text or vocab, got {self.mode!r}")
        if not self.formats or any(f not in FORMATS for f in self.formats):
            raise PromptError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats}")
        if len(self.thing_flags) != len(self.names):
            raise PromptError("one thing flag per name")

    def categories(self) -> list[dict[str, Any]]:
        return [{"id": k + 1, "name": n, "supercategory": "", "isthing": int(t)}
                for k, (n, t) in enumerate(zip(self.names, self.thing_flags))]


def _annotation(mask: np.ndarray, category: int, score: float) -> dict[str, Any]:
    return {"category_id": int(category), "segmentation": seem_io.mask_to_rle(mask), "area": int(mask.sum()),
            "bbox": [float(v) for v in seem_io.mask_to_bbox(mask)], "iscrowd": 0, "score": round(float(score), 6)}


def _instances(predictor, spec: LabelSpec) -> list[tuple[np.ndarray, int, float]]:
    """``(mask (H, W) bool, category id, score)`` of every instance, in the order they are written."""
    if spec.mode == "text":
        c = spec.find
        result = predictor.find(list(spec.names), score_threshold=c.score_threshold, nms_threshold=c.nms_threshold,
                                max_instances=c.max_instances)
        return [(g.masks[i], k + 1, float(g.scores[i])) for k, g in enumerate(result) for i in range(len(g))]
    things = [n for n, t in zip(spec.names, spec.thing_flags) if t]
    inst = predictor.segment_everything(list(spec.names), kind="instance", thing_classes=things)
    return [(inst.masks[i], int(inst.label_ids[i]) + 1, float(inst.scores[i])) for i in range(len(inst.scores))
            if inst.scores[i] >= spec.score_threshold]


def _panoptic_map(predictor, spec: LabelSpec, instances, size: tuple[int, int]):
    """``(segment map (H, W) int32, segments_info)``: vocabulary mode from panoptic inference, text mode by
    painting the instances (lowest score first, so the best is on top)."""
    segments = []
    if spec.mode == "vocab":
        things = [n for n, t in zip(spec.names, spec.thing_flags) if t]
        pano = predictor.segment_everything(list(spec.names), kind="panoptic", thing_classes=things)
        seg = np.asarray(pano.segmentation, dtype=np.int32)
        cats = {s.id: s.label_id + 1 for s in pano.segments}
    else:
        seg = np.zeros(size, dtype=np.int32)
        order = sorted(range(len(instances)), key=lambda i: (instances[i][2], -i))
        for i in order:
            seg[instances[i][0]] = i + 1
        cats = {i + 1: inst[1] for i, inst in enumerate(instances)}
    for sid in sorted(cats):
        m = seg == sid
        if m.any():
            segments.append({"id": int(sid), "category_id": int(cats[sid]), "iscrowd": 0, "area": int(m.sum()),
                             "bbox": [float(v) for v in seem_io.mask_to_bbox(m)]})
    return seg, segments


def panoptic_png(segmentation: np.ndarray) -> bytes:
    """COCO panoptic PNG bytes of an ``(H, W)`` int segment-id map (id = R + 256 G + 256^2 B)."""
    from PIL import Image

    ids = segmentation.astype(np.uint32)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def label_image(predictor, image: np.ndarray, spec: LabelSpec) -> tuple[dict[str, Any], bytes | None]:
    """The part record of one image (``annotations`` and/or ``segments_info``; image fields are the caller's)
    and its panoptic PNG bytes (None without the panoptic format). ``image``: ``(H, W, 3)`` uint8 RGB."""
    predictor.set_image(image)
    size = image.shape[:2]
    instances = _instances(predictor, spec) if ("coco" in spec.formats or spec.mode == "text") else []
    record: dict[str, Any] = {"height": int(size[0]), "width": int(size[1])}
    if "coco" in spec.formats:
        record["annotations"] = [_annotation(m, c, s) for m, c, s in instances]
    png = None
    if "panoptic" in spec.formats:
        seg, record["segments_info"] = _panoptic_map(predictor, spec, instances, size)
        png = panoptic_png(seg)
    return record, png
