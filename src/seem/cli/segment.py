"""``seem segment``: one mask per prompted object, written as PNGs, COCO RLE, polygons and an overlay."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seem.cli.common import (
    DEFAULT_FORMATS,
    FORMATS,
    add_model_arguments,
    add_prompt_arguments,
    parse_formats,
    report_written,
    verbose_parent,
)

if TYPE_CHECKING:
    from seem.prompts import Prompts

PROMPT_HELP = {
    "point": "click; LABEL 1 = positive (default), 0 = negative; repeatable",
    "box": "box (XYXY pixels); one object per box; repeatable",
    "scribble": "scribble as a mask image the size of IMAGE; repeatable",
    "polygon": "polygon vertices; repeatable",
    "mask": "mask prompt image the size of IMAGE; repeatable",
    "text": "referring text, e.g. 'the dog on the left'",
}


def add_parser(subparsers) -> None:
    seg = subparsers.add_parser(
        "segment", parents=[verbose_parent()], help="segment the prompted objects",
        description="Segment objects from prompts. Coordinates are (x, y) pixels of IMAGE; boxes are XYXY.",
        epilog="Objects: all --point clicks describe one object; each --box, --scribble, --polygon and "
        "--mask is one object. Several prompt types together describe the same objects (the k-th box "
        "with the k-th polygon ...), so their counts must agree. --text alone gives one object; the "
        "reference region adds its own.",
    )
    seg.add_argument("image", nargs="+", metavar="IMAGE",
                     help="input image(s): files, folders, globs ('photos/*.jpg') or list files (one path a line)")
    add_prompt_arguments(seg, PROMPT_HELP)
    seg.add_argument(
        "--separate-prompts",
        action="store_true",
        help="with --text and a visual prompt: keep them in separate query groups, exactly as the official v1 "
        "code (the text then does not change the mask); default: the paper's joint composition",
    )
    seg.add_argument("--reference-image", default=None, metavar="IMG", help="image holding the referred region")
    seg.add_argument("--reference-mask", default=None, metavar="MASK.png", help="region in --reference-image")
    seg.add_argument("--vocab", default=None, metavar="SPEC", help="label space: coco | FILE | 'a,b,c'")
    seg.add_argument("--format", type=parse_formats, action="append", default=None, dest="formats",
                     metavar="FMT", help=f"{'|'.join(FORMATS)}; repeatable or comma list (default: {DEFAULT_FORMATS})")
    add_model_arguments(seg)


def _formats(groups: list[list[str]] | None) -> list[str]:
    names = [n for group in (groups or [DEFAULT_FORMATS.split(",")]) for n in group]
    return list(dict.fromkeys(names))  # dedupe, keep order


def collect_prompts(args: argparse.Namespace, size: tuple[int, int]) -> Prompts:
    """The command line's prompts as one :class:`~seem.prompts.Prompts`, checked against the image of ``size``
    ``(H, W)`` before any model is loaded (points and boxes in original-image pixels).

    Raises:
        PromptError: an empty ``--text``, or a prompt that :class:`~seem.prompts.Prompts` rejects (the message
            names the field, e.g. ``points[0]``).
    """
    import numpy as np

    from seem import io as seem_io
    from seem.errors import PromptError
    from seem.prompts import Prompts
    from seem.transforms import plan_frame

    fields: dict[str, Any] = {}
    if args.text is not None:
        if not args.text.strip():
            raise PromptError("--text is empty")
        fields["text"] = args.text
    if args.point:
        pts = np.asarray(args.point, dtype=np.float64)
        fields["points"] = pts[:, :2]  # float64: a huge coordinate is "outside the image", not inf
        fields["point_labels"] = pts[:, 2].astype(np.int64)
    if args.box:
        fields["boxes"] = np.asarray(args.box, dtype=np.float64).reshape(-1, 4)
    if args.scribble:
        fields["scribbles"] = [seem_io.load_mask(p, size=size) for p in args.scribble]
    if args.polygon:
        fields["polygons"] = [np.asarray(poly, dtype=np.float32) for poly in args.polygon]
    if args.mask:
        fields["masks"] = np.stack([seem_io.load_mask(p, size=size) for p in args.mask])
    prompts = Prompts(**fields)
    prompts.to_regions(plan_frame(size, None, None, 1))  # the image-dependent checks, in the image's own frame
    return prompts


def run(args: argparse.Namespace) -> int:
    """``seem segment``: predict one mask per prompted object of each image and write the chosen formats."""
    from seem import io as seem_io
    from seem.cli.common import for_each_image, load_predictor  # looked up at call time (tests substitute it)
    from seem.errors import PromptError
    from seem.image_sources import expand_images
    from seem.outputs import write_prediction
    from seem.vocabularies import parse_vocabulary

    formats = _formats(args.formats)
    if (args.reference_image is None) != (args.reference_mask is None):
        raise PromptError("--reference-image and --reference-mask must be given together")
    paths = expand_images(args.image)
    first = seem_io.load_image(paths[0])
    prompts = collect_prompts(args, first.shape[:2])  # checked on the first image before the model loads
    if prompts.is_empty and args.reference_image is None:
        raise PromptError(
            "no prompt given: use --point, --box, --scribble, --polygon, --mask, --text or "
            "--reference-image/--reference-mask (or `seem panoptic` / `seem find` to segment everything)"
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
    reference = predictor.encode_reference(ref_image, ref_region) if args.reference_image is not None else None

    def one(path, image, name) -> None:
        image_prompts = prompts if image is first else collect_prompts(args, image.shape[:2])
        if reference is not None:
            image_prompts = dataclasses.replace(image_prompts, reference=reference)
        predictor.set_image(image)
        pred = predictor.predict(image_prompts, joint_prompts=not getattr(args, "separate_prompts", False))
        written = write_prediction(image, pred, formats, Path(args.out), name)
        if len(pred) == 0:
            print("no mask predicted")
        for i in range(len(pred)):
            print(f"mask {i}: {pred.labels[i]}  score={float(pred.scores[i]):.3f}  area={int(pred.masks[i].sum())} px")
        report_written(written)

    return for_each_image(paths, one, first=first)
