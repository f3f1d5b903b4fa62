"""``seem panoptic``: label every pixel (or every instance) of an image with a vocabulary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seem.cli.common import add_model_arguments, report_written, verbose_parent


def add_parser(subparsers) -> None:
    pan = subparsers.add_parser("panoptic", parents=[verbose_parent()], help="segment everything in a vocabulary",
                                description="Panoptic, semantic or instance segmentation over a vocabulary.")
    pan.add_argument("image", nargs="+", metavar="IMAGE",
                     help="input image(s): files, folders, globs ('photos/*.jpg') or list files (one path a line)")
    pan.add_argument("--vocab", required=True, metavar="SPEC", help="coco | FILE (one name a line) | 'a,b,c'")
    pan.add_argument("--kind", choices=("panoptic", "semantic", "instance", "everything"), default="panoptic",
                     help="everything: class-agnostic masks of every object and region, each with its best label")
    pan.add_argument("--points-per-side", type=int, default=None, metavar="N",
                     help="--kind everything: an N x N grid of point prompts (default 16)")
    pan.add_argument("--crop-n-layers", type=int, default=None, metavar="L",
                     help="--kind everything: SAM crop layers 0-3, each crop encoded as its own image; finds "
                          "small objects, 4-20x slower (default 0)")
    pan.add_argument("--point-decoding", choices=("click", "sampled"), default=None,
                     help="--kind everything: grid points decoded as clicks (default) or by Eq. 5 (faster)")
    pan.add_argument("--skip-covered-points", action="store_true", default=None,
                     help="--kind everything: decode grid points only outside the object-query masks (faster)")
    pan.add_argument("--text-grounding", action="store_true",
                     help="--kind semantic: add each name's grounded mask (one text round per name) to its class "
                          "map; for vocabularies of classes present in the images")
    add_model_arguments(pan)


def run(args: argparse.Namespace) -> int:
    """``seem panoptic``: label every pixel (or every instance) of each image with the vocabulary."""
    from seem.cli.common import for_each_image, load_predictor  # looked up at call time (tests substitute it)
    from seem.image_sources import expand_images
    from seem.vocabularies import parse_vocabulary

    vocabulary = parse_vocabulary(args.vocab)
    _everything_config(args)  # usage errors before the model loads
    paths = expand_images(args.image)
    predictor = load_predictor(args)
    predictor.set_vocabulary(vocabulary)
    return for_each_image(paths, lambda path, image, name: _one(args, predictor, vocabulary, path, image, name))


def _everything_config(args: argparse.Namespace) -> dict:
    """The ``EverythingConfig`` fields given on the command line (``PromptError``: out of range, or with
    another ``--kind``; ``--text-grounding`` without ``--kind semantic``)."""
    from seem.automatic import EverythingConfig
    from seem.errors import PromptError

    if getattr(args, "text_grounding", False) and args.kind != "semantic":
        raise PromptError(f"--text-grounding only applies to --kind semantic, not --kind {args.kind}")
    fields = ("points_per_side", "crop_n_layers", "point_decoding", "skip_covered_points")
    given: dict[str, Any] = {k: getattr(args, k) for k in fields if getattr(args, k, None) is not None}
    if given and args.kind != "everything":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise PromptError(f"{flags} only apply to --kind everything, not --kind {args.kind}")
    EverythingConfig(**given)
    return given


def _one(args: argparse.Namespace, predictor, vocabulary: list[str], path: Path, image, name: str) -> None:
    import numpy as np

    from seem import io as seem_io
    from seem.outputs import panoptic_segments, save_overlay, write_json

    predictor.set_image(image)
    config = _everything_config(args)
    if config:
        result = predictor.segment_everything(vocabulary=vocabulary, kind=args.kind, config=config)
    elif getattr(args, "text_grounding", False):
        result = predictor.segment_everything(vocabulary=vocabulary, kind=args.kind, text_grounding=True)
    else:
        result = predictor.segment_everything(vocabulary=vocabulary, kind=args.kind)
    label_map, masks, entries = panoptic_segments(result, image.shape[:2])
    out, stem = Path(args.out), Path(name).stem
    label_png = seem_io.save_label_png(label_map, out / f"{stem}_{args.kind}.png")
    info = {
        "image": str(path), "kind": args.kind, "height": int(image.shape[0]), "width": int(image.shape[1]),
        "label_png": label_png.name, "vocabulary": list(vocabulary), "segments": entries,
    }
    written = [label_png, write_json(out / f"{stem}_{args.kind}.json", info)]
    labels = [e["label"] for e in entries]
    scores = np.array([e["score"] for e in entries], dtype=np.float64)
    written.append(save_overlay(image, masks, labels, scores, out / f"{stem}_{args.kind}_overlay.png"))
    if not entries:
        print("no segment found")
    for e in entries:
        print(f"segment {e['pixel_value']}: {e['label']}  score={e['score']:.3f}  area={e['area']} px")
    report_written(written)
