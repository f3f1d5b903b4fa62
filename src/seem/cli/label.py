"""``seem label``: label a folder, glob or list of images into COCO instance JSON and / or COCO panoptic PNG + JSON.

Resumable (per-image part files, written atomically; a rerun skips what exists), memory flat in the number of
images, a progress bar with images/s. Under ``torchrun --nnodes N --nproc_per_node M -m seem.cli label ...``
every rank labels its share of the images into the same output folder (a shared file system across machines)
and rank 0 merges the parts into one COCO file after a gloo barrier.
"""

from __future__ import annotations

import argparse

from seem.cli.common import add_find_arguments, add_predictor_arguments, unit_float, verbose_parent


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    if not names or any(n not in ("coco", "panoptic") for n in names):
        raise argparse.ArgumentTypeError(f"format {text!r}: choose coco, panoptic or coco,panoptic")
    return names


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("label", parents=[verbose_parent()], help="label a folder of images into COCO files",
                              description="Label images into COCO instance JSON (RLE) and / or COCO panoptic "
                              "PNG + JSON: every instance of --text phrases, or a --vocab's instances and panoptic "
                              "segments. Resumable; scales over processes and machines with torchrun.",
                              epilog="torchrun --nnodes N --nproc_per_node M -m seem.cli label SRC --text car --out "
                              "DIR: each rank labels its share, rank 0 writes the merged files.")
    p.add_argument("src", nargs="+", metavar="SRC", help="image files, folders, globs or list files")
    p.add_argument("--vocab", default=None, metavar="SPEC", help="label with a vocabulary: coco | FILE | 'a,b,c'")
    add_find_arguments(p)
    p.add_argument("--vocab-score-threshold", type=unit_float, default=0.3,
                   help="with --vocab: keep instances scoring >= this (0.3)")
    p.add_argument("--format", type=_formats, default=("coco", "panoptic"), dest="formats",
                   help="coco (instances.json), panoptic (panoptic.json + PNGs) or both (default)")
    p.add_argument("--out", required=True, help="output folder (parts/, instances.json, panoptic.json, panoptic/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-images", type=int, default=1_000_000, help="refuse more images than this (1,000,000)")
    add_predictor_arguments(p)


def build_spec(args: argparse.Namespace, config=None):
    """The :class:`~seem.labeling.records.LabelSpec` of the arguments; ``config`` (the model's
    :class:`~seem.configs.SeemConfig`) decides which vocabulary names are things, as ``segment_everything``
    does (without it: COCO's things for COCO names, else every name).

    Raises:
        PromptError: neither or both of --text and --vocab, bad phrases / names.
    """
    from seem.errors import PromptError
    from seem.find import FindConfig, check_phrases
    from seem.labeling.records import LabelSpec
    from seem.vocabularies import parse_vocabulary

    if bool(args.text) == (args.vocab is not None):
        raise PromptError("give either --text PHRASE (repeatable) or --vocab SPEC")
    find = FindConfig(args.score_threshold, args.nms_threshold, args.max_instances)
    if args.text:
        names = check_phrases(args.text, "--text")
        return LabelSpec("text", names, (True,) * len(names), args.formats, find)
    names = tuple(parse_vocabulary(args.vocab))
    from seem.everything import thing_flags  # COCO's things for COCO names, else every name is a thing

    flags = tuple(thing_flags(config, names, None)) if config is not None else (True,) * len(names)
    return LabelSpec("vocab", names, flags, args.formats, find, args.vocab_score_threshold)


def run(args: argparse.Namespace) -> int:
    """``seem label``: this rank's share, then (rank 0, after every rank) the merge."""
    from pathlib import Path

    from seem.cli.common import load_predictor
    from seem.image_sources import expand_images
    from seem.labeling.distributed import ProcessGroup, ranks_from_env
    from seem.labeling.merge import merge
    from seem.labeling.run import LabelJob, label_shard

    build_spec(args)  # phrases and names checked before the images are listed and the model loads
    images = expand_images(args.src, max_images=args.max_images)
    ranks = ranks_from_env()
    group = ProcessGroup(ranks)
    try:
        predictor = load_predictor(args)
        job = LabelJob.create(images, Path(args.out), build_spec(args, predictor.model.config))
        stats = label_shard(predictor, job, ranks, progress=not args.no_progress)
        print(f"rank {ranks.rank}/{ranks.world_size}: labelled {stats.labelled} images in {stats.seconds:.1f} s "
              f"({stats.images_per_second:.2f} images/s), {stats.skipped} already done, {stats.failed} failed")
        group.barrier()
        if ranks.is_main:
            merged = merge(job)
            for path in merged.written:
                print(f"wrote {path}")
            print(f"{merged.images} images, {merged.annotations} instance annotations"
                  + (f"; {merged.missing} images without labels (failed: rerun to retry)" if merged.missing else ""))
        return 2 if stats.failed else 0
    finally:
        group.close()
