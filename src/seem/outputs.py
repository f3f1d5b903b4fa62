"""Predictions as files and tables: mask PNGs, COCO RLE JSON, polygon JSON and overlays of a
:class:`~seem.structures.Prediction`, and the segment table of a panoptic / semantic / instance result
(what ``seem segment`` / ``seem panoptic`` write and the server's panoptic endpoint returns).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from seem import io as seem_io
from seem import visualize as seem_visualize
from seem.errors import SeemError
from seem.vocabularies import display_name


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def save_overlay(image: np.ndarray, masks: np.ndarray, labels: list[str], scores: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = [display_name(label) for label in labels]  # "wall-other-merged" -> "wall"
    Image.fromarray(seem_visualize.overlay(image, masks, shown, scores)).save(path, format="PNG")
    return path


def write_prediction(image: np.ndarray, pred: Any, formats: list[str], out: Path, image_name: str) -> list[Path]:
    """``pred`` of ``image`` in each of ``formats`` (``png``, ``rle``, ``polygon``, ``overlay``) under ``out``,
    file names starting with the stem of ``image_name``; returns the paths written."""
    stem = Path(image_name).stem
    masks = np.asarray(pred.masks, dtype=bool).reshape(-1, *image.shape[:2])
    scores = np.asarray(pred.scores, dtype=np.float64).reshape(-1)
    labels = [str(label) for label in pred.labels]
    written: list[Path] = []
    if "png" in formats:
        written += [seem_io.save_mask_png(m, out / f"{stem}_mask{i}.png") for i, m in enumerate(masks)]
    if "rle" in formats:
        path = out / f"{stem}_masks.json"
        seem_io.save_coco_json(path, masks, scores, labels, image.shape[:2], image_id=Path(image_name).name,
                               category_ids=np.asarray(pred.label_ids).reshape(-1))
        written.append(path)
    if "polygon" in formats:
        records = [
            {"label": labels[i], "score": round(float(scores[i]), 6), "area": int(m.sum()),
             "bbox": seem_io.mask_to_bbox(m), "polygons": seem_io.mask_to_polygons(m)}
            for i, m in enumerate(masks)
        ]
        written.append(write_json(out / f"{stem}_polygons.json", records))
    if "overlay" in formats:
        written.append(save_overlay(image, masks, labels, scores, out / f"{stem}_overlay.png"))
    return written


def panoptic_segments(result: Any, size: tuple[int, int]):
    """``(label_map, masks (K,H,W), entries)`` for a Panoptic-, Semantic-, Instance- or EverythingResult."""
    from seem.structures import EverythingResult, InstanceResult, PanopticResult, SemanticResult

    if isinstance(result, PanopticResult):
        label_map = np.asarray(result.segmentation)
        masks = np.stack([label_map == s.id for s in result.segments]) if result.segments else None
        entries = [
            {"pixel_value": int(s.id), "label_id": int(s.label_id), "label": s.label, "isthing": bool(s.isthing),
             "score": round(float(s.score), 6), "area": int(s.area)}
            for s in result.segments
        ]
    elif isinstance(result, SemanticResult):
        label_map = np.asarray(result.label_map)
        present = [int(c) for c in np.unique(label_map)]
        masks = np.stack([label_map == c for c in present]) if present else None
        # Per-pixel class scores (C, h, w), possibly at the resized model resolution and not summing
        # to 1 (Mask2Former semantic inference); a class's score is its mean share over its pixels.
        probs = np.asarray(result.probabilities, dtype=np.float64)
        share = probs / np.maximum(probs.sum(axis=0, keepdims=True), 1e-12)
        rows = np.minimum((np.arange(probs.shape[1]) + 0.5) * size[0] / probs.shape[1], size[0] - 1).astype(int)
        cols = np.minimum((np.arange(probs.shape[2]) + 0.5) * size[1] / probs.shape[2], size[1] - 1).astype(int)
        label_small = label_map[rows[:, None], cols[None, :]]  # nearest resize to (h, w)
        entries = [
            {"pixel_value": c, "label_id": c, "label": result.vocabulary[c], "area": int(m.sum()),
             "score": round(float(share[c][label_small == c].mean()) if (label_small == c).any() else 0.0, 6)}
            for c, m in zip(present, masks if masks is not None else [])
        ]
    elif isinstance(result, (InstanceResult, EverythingResult)):
        masks = np.asarray(result.masks, dtype=bool)
        scores = np.asarray(result.scores, dtype=np.float64).reshape(-1)
        label_map = np.zeros(size, dtype=np.int32)
        for i in np.argsort(scores, kind="stable"):  # best instance painted last, on top
            label_map[masks[i]] = i + 1
        names = result.labels or [result.vocabulary[int(c)] for c in result.label_ids]
        entries = [
            {"pixel_value": i + 1, "label_id": int(result.label_ids[i]), "label": names[i],
             "score": round(float(scores[i]), 6), "area": int(masks[i].sum()),
             "segmentation": seem_io.mask_to_rle(masks[i])}
            for i in range(len(masks))
        ]
        masks = masks if len(masks) else None
    else:
        raise SeemError(f"unexpected result type {type(result).__name__} from segment_everything")
    if masks is None:
        masks = np.zeros((0, *size), dtype=bool)
    for entry, mask in zip(entries, masks):
        entry["bbox"] = seem_io.mask_to_bbox(mask)
    return label_map, masks, entries
