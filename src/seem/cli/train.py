"""``seem train``: train with SEEM's recipe on generated scenes, in one process or under torchrun."""

from __future__ import annotations

import argparse

from seem.cli.common import verbose_parent


def add_parser(subparsers) -> None:
    train = subparsers.add_parser(
        "train", parents=[verbose_parent()], help="train a model (one process or under torchrun)",
        description="Train with SEEM's recipe on generated scenes. CONFIG is a JSON/YAML file "
        "of seem.train.config.TrainConfig fields; options override it. Resumes from "
        "OUT_DIR/last.pt when present. Multi-process: torchrun --nproc_per_node N -m seem.cli train ...")
    train.add_argument("config", nargs="?", default=None, metavar="CONFIG", help="JSON or YAML training config")
    train.add_argument("--steps", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None, dest="batch_size")
    train.add_argument("--out-dir", default=None, dest="out_dir")
    train.add_argument("--threads", type=int, default=None)
    train.add_argument("--device", default=None, help="cpu | cuda[:N] | auto (default: the config's, cpu)")
    train.add_argument("--max-minutes", type=float, default=None, dest="max_minutes",
                       help="stop and checkpoint after this much training time")


def run(args: argparse.Namespace) -> int:
    """``seem train``: build the TrainConfig and run the engine."""
    from seem.train.config import TrainConfig
    from seem.train.engine import Trainer

    config = TrainConfig.from_file(args.config, steps=args.steps, batch_size=args.batch_size,
                                   out_dir=args.out_dir, threads=args.threads, device=args.device,
                                   max_minutes=args.max_minutes)
    Trainer(config).run()
    return 0
