"""Implementations of the ``seem`` subcommands (parsing lives in :mod:`seem.cli`).

Each ``run_*`` takes the parsed ``argparse.Namespace``, writes its files under ``--out`` and returns
an exit code. User errors are raised as :class:`seem.errors.SeemError` and reported by ``main``.
The predictor, torch and checkpoint code are imported here, only when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from seem import io as seem_io
from seem import visualize as seem_visualize
from seem.errors import PromptError, SeemError
from seem.vocabularies import display_name, parse_vocabulary


# ----------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------
def load_predictor(args: argparse.Namespace) -> Any:
    """Build the predictor from ``--model``, ``--device`` and ``--threads``."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from seem import resolve_device

    device = resolve_device(args.device)
    from seem.predictor import SeemPredictor  # looked up at call time (tests substitute a fake)

    precision = getattr(args, "precision", "fp32")
    kwargs = {} if precision == "fp32" else {"precision": precision}
    return SeemPredictor.from_pretrained(args.model, device=device, **kwargs)


def _formats(groups: list[list[str]] | None) -> list[str]:
    from seem.cli import DEFAULT_FORMATS

    names = [n for group in (groups or [DEFAULT_FORMATS.split(",")]) for n in group]
    return list(dict.fromkeys(names))  # dedupe, keep order


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def _save_overlay(image: np.ndarray, masks: np.ndarray, labels: list[str], scores: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = [display_name(label) for label in labels]  # "wall-other-merged" -> "wall"
    Image.fromarray(seem_visualize.overlay(image, masks, shown, scores)).save(path, format="PNG")
    return path


def _report(written: list[Path]) -> None:
    for path in written:
        print(f"wrote {path}")


# ----------------------------------------------------------------------------------------------------
# seem segment
# ----------------------------------------------------------------------------------------------------
def collect_prompts(args: argparse.Namespace, size: tuple[int, int]) -> dict[str, Any]:
    """``predict`` keyword arguments from the command line, in the frame of the image of ``size`` (H, W)."""
    prompts: dict[str, Any] = {}
    if args.text is not None:
        if not args.text.strip():
            raise PromptError("--text is empty")
        prompts["text"] = args.text
        if getattr(args, "separate_prompts", False):
            prompts["joint_prompts"] = False
    if args.point:
        pts = np.asarray(args.point, dtype=np.float64)
        prompts["points"] = pts[:, :2].astype(np.float32)
        prompts["point_labels"] = pts[:, 2].astype(np.int64)
    if args.box:
        prompts["boxes"] = np.asarray(args.box, dtype=np.float32).reshape(-1, 4)
    if args.scribble:
        prompts["scribbles"] = [seem_io.load_mask(p, size=size) for p in args.scribble]
    if args.polygon:
        prompts["polygons"] = [np.asarray(poly, dtype=np.float32) for poly in args.polygon]
    if args.mask:
        prompts["masks"] = np.stack([seem_io.load_mask(p, size=size) for p in args.mask])
    return prompts


def _write_prediction(args, image, pred, formats: list[str]) -> list[Path]:
    out, stem = Path(args.out), Path(args.image).stem
    masks = np.asarray(pred.masks, dtype=bool).reshape(-1, *image.shape[:2])
    scores = np.asarray(pred.scores, dtype=np.float64).reshape(-1)
    labels = [str(label) for label in pred.labels]
    written: list[Path] = []
    if "png" in formats:
        written += [seem_io.save_mask_png(m, out / f"{stem}_mask{i}.png") for i, m in enumerate(masks)]
    if "rle" in formats:
        path = out / f"{stem}_masks.json"
        seem_io.save_coco_json(path, masks, scores, labels, image.shape[:2], image_id=Path(args.image).name,
                               category_ids=np.asarray(pred.label_ids).reshape(-1))
        written.append(path)
    if "polygon" in formats:
        records = [
            {"label": labels[i], "score": round(float(scores[i]), 6), "area": int(m.sum()),
             "bbox": seem_io.mask_to_bbox(m), "polygons": seem_io.mask_to_polygons(m)}
            for i, m in enumerate(masks)
        ]
        written.append(_write_json(out / f"{stem}_polygons.json", records))
    if "overlay" in formats:
        written.append(_save_overlay(image, masks, labels, scores, out / f"{stem}_overlay.png"))
    return written


def run_segment(args: argparse.Namespace) -> int:
    """``seem segment``: predict one mask per prompted object and write the chosen formats."""
    formats = _formats(args.formats)
    if (args.reference_image is None) != (args.reference_mask is None):
        raise PromptError("--reference-image and --reference-mask must be given together")
    image = seem_io.load_image(args.image)
    prompts = collect_prompts(args, image.shape[:2])
    if not prompts and args.reference_image is None:
        raise PromptError(
            "no prompt given: use --point, --box, --scribble, --polygon, --mask, --text or "
            "--reference-image/--reference-mask (or `seem panoptic` to segment everything)"
        )
    vocabulary = parse_vocabulary(args.vocab) if args.vocab is not None else None
    if args.reference_image is not None:
        ref_image = seem_io.load_image(args.reference_image)
        ref_region = seem_io.load_mask(args.reference_mask, size=ref_image.shape[:2])
        if not ref_region.any():
            raise PromptError(f"{args.reference_mask}: the reference mask is empty")

    predictor = load_predictor(args)
    if vocabulary is not None:
        predictor.set_vocabulary(vocabulary)
    if args.reference_image is not None:
        prompts["reference"] = predictor.encode_reference(ref_image, ref_region)
    predictor.set_image(image)
    pred = predictor.predict(**prompts)

    written = _write_prediction(args, image, pred, formats)
    if len(pred) == 0:
        print("no mask predicted")
    for i in range(len(pred)):
        print(f"mask {i}: {pred.labels[i]}  score={float(pred.scores[i]):.3f}  area={int(pred.masks[i].sum())} px")
    _report(written)
    return 0


# ----------------------------------------------------------------------------------------------------
# seem panoptic
# ----------------------------------------------------------------------------------------------------
def _panoptic_segments(result: Any, size: tuple[int, int]):
    """``(label_map, masks (K,H,W), entries)`` for a Panoptic-, Semantic- or InstanceResult."""
    from seem.structures import InstanceResult, PanopticResult, SemanticResult

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
    elif isinstance(result, InstanceResult):
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


def run_panoptic(args: argparse.Namespace) -> int:
    """``seem panoptic``: label every pixel (or every instance) with the vocabulary."""
    vocabulary = parse_vocabulary(args.vocab)
    image = seem_io.load_image(args.image)
    predictor = load_predictor(args)
    predictor.set_vocabulary(vocabulary)
    predictor.set_image(image)
    result = predictor.segment_everything(vocabulary=vocabulary, kind=args.kind)

    label_map, masks, entries = _panoptic_segments(result, image.shape[:2])
    out, stem = Path(args.out), Path(args.image).stem
    label_png = seem_io.save_label_png(label_map, out / f"{stem}_{args.kind}.png")
    info = {
        "image": str(args.image), "kind": args.kind, "height": int(image.shape[0]), "width": int(image.shape[1]),
        "label_png": label_png.name, "vocabulary": list(vocabulary), "segments": entries,
    }
    written = [label_png, _write_json(out / f"{stem}_{args.kind}.json", info)]
    labels = [e["label"] for e in entries]
    scores = np.array([e["score"] for e in entries], dtype=np.float64)
    written.append(_save_overlay(image, masks, labels, scores, out / f"{stem}_{args.kind}_overlay.png"))

    if not entries:
        print("no segment found")
    for e in entries:
        print(f"segment {e['pixel_value']}: {e['label']}  score={e['score']:.3f}  area={e['area']} px")
    _report(written)
    return 0


# ----------------------------------------------------------------------------------------------------
# seem convert
# ----------------------------------------------------------------------------------------------------
def run_convert(args: argparse.Namespace) -> int:
    """``seem convert``: official ``.pt`` -> our key layout, saved as safetensors with its config.

    The config comes from ``--config`` (official YAML), ``--variant`` (registry name) or, failing
    both, the released file name (``seem_focalt_v1.pt``); it is stored in the file's metadata so
    ``SeemPredictor.from_pretrained(OUT.safetensors)`` needs nothing else.
    """
    from seem import checkpoint, registry

    source, target = Path(args.checkpoint), Path(args.output)
    if source.resolve() == target.resolve():
        raise SeemError(f"{target}: the output would overwrite the input checkpoint")
    state_dict = checkpoint.read_checkpoint(source)
    converted = checkpoint.convert_official_state_dict(state_dict)
    config, origin = None, None
    if args.config is not None:
        config, origin = checkpoint.config_from_official(args.config), f"from {args.config}"
    elif args.variant is not None:
        config, origin = registry.get_variant(args.variant).config, f"variant {args.variant}"
    else:
        variant = registry.variant_for_filename(source.name)
        if variant is not None:
            config, origin = variant.config, f"variant {variant.name} (from the file name)"
    if config is not None:  # the file must fit the config: check keys and shapes on a weightless model
        import torch

        from seem.build import build_seem

        with torch.device("meta"):
            checkpoint.check_state_dict(build_seem(config), converted)
    metadata = {"format": "seem", "source": source.name}
    if args.variant is not None:
        metadata["variant"] = args.variant
    checkpoint.save_safetensors(converted, target, metadata, config=config)
    n_params = sum(int(getattr(t, "numel", lambda: 0)()) for t in converted.values())
    print(f"converted {len(converted)} tensors ({n_params:,} parameters)")
    if config is None:
        print("note: no --config or --variant given and the file name names no variant; "
              "the output carries no model config")
    else:
        print(f"config: {origin}")
    _report([target])
    return 0
