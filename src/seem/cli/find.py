"""``seem find``: every instance of one or more phrases in each image (:meth:`seem.SeemPredictor.find`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from seem.cli.common import add_find_arguments, add_model_arguments, report_written, verbose_parent


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("find", parents=[verbose_parent()], help="find every instance of phrases",
                              description="Every instance of each --text phrase in each image: masks, scores and "
                              "boxes, from one decoder pass for all phrases.")
    p.add_argument("image", nargs="+", metavar="IMAGE",
                   help="input image(s): files, folders, globs ('photos/*.jpg') or list files (one path a line)")
    add_find_arguments(p)
    add_model_arguments(p)


def find_record(result) -> list[dict]:
    """The JSON groups of a :class:`seem.structures.FindResult`: per phrase its instances with COCO RLE,
    ``bbox`` ``[x, y, w, h]`` pixels, area and score."""
    from seem import io as seem_io

    groups = []
    for g in result:
        instances = [{"score": round(float(g.scores[i]), 6), "area": int(g.masks[i].sum()),
                      "bbox": seem_io.mask_to_bbox(g.masks[i]), "segmentation": seem_io.mask_to_rle(g.masks[i])}
                     for i in range(len(g))]
        groups.append({"phrase": g.phrase, "instances": instances})
    return groups


def run(args: argparse.Namespace) -> int:
    """``seem find``: write ``STEM_find.json`` and ``STEM_find_overlay.png`` per image."""
    from seem.cli.common import for_each_image, load_predictor  # looked up at call time (tests substitute it)
    from seem.errors import PromptError
    from seem.find import check_phrases
    from seem.image_sources import expand_images

    if not args.text:
        raise PromptError("no phrase given: pass --text PHRASE (repeatable)")
    phrases = list(check_phrases(args.text, "--text"))
    paths = expand_images(args.image)
    predictor = load_predictor(args)
    return for_each_image(paths, lambda path, image, name: _one(args, predictor, phrases, path, image, name))


def _one(args: argparse.Namespace, predictor, phrases: list[str], path: Path, image, name: str) -> None:
    import numpy as np

    from seem.outputs import save_overlay, write_json

    predictor.set_image(image)
    result = predictor.find(phrases, score_threshold=args.score_threshold, nms_threshold=args.nms_threshold,
                            max_instances=args.max_instances)
    out, stem = Path(args.out), Path(name).stem
    info = {"image": str(path), "height": int(image.shape[0]), "width": int(image.shape[1]),
            "phrases": find_record(result)}
    masks = [m for g in result for m in g.masks]
    labels = [g.phrase for g in result for _ in range(len(g))]
    scores = np.array([s for g in result for s in g.scores], dtype=np.float64)
    stacked = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), dtype=bool)
    written = [write_json(out / f"{stem}_find.json", info),
               save_overlay(image, stacked, labels, scores, out / f"{stem}_find_overlay.png")]
    for g in result:
        print(f"{g.phrase}: {len(g)} instance(s)" + "".join(f"  {s:.3f}" for s in g.scores[:10]))
    report_written(written)
