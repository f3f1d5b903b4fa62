"""``seem train-continue``: continue training from a pack for a fixed time, then write weight shards."""

from __future__ import annotations

import argparse

from seem.cli.common import verbose_parent

DEFAULT_INIT = "bundled"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-continue", parents=[verbose_parent()], help="train from a pack for N minutes, write weight shards",
        description="Continue training (default: from the bundled seem_tiny weights) on the draws of a pack "
        "written by `seem train-pack`, for --minutes of wall-clock time on --device (a CUDA GPU when there is "
        "one), then write the weights to --shards as safetensors files of at most --shard-mib MiB. Merge and "
        "check them on the CPU with `python -m seem.train.export SHARDS OUT.safetensors` and "
        "benchmarks/eval_bundled.py; keep them only if they are better.")
    p.add_argument("--pack", required=True, help="pack file from `seem train-pack`")
    p.add_argument("--config", default=None, help="training config (JSON/YAML); options below override it")
    p.add_argument("--init", default=DEFAULT_INIT, help="weights to start from (default: the bundled model)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time (default 8)")
    p.add_argument("--device", default="auto", help="auto | cuda[:N] | cpu (default auto)")
    p.add_argument("--out-dir", default="runs/continue", help="checkpoints and metrics (resumes from here)")
    p.add_argument("--shards", required=True, help="folder for the weight shards and their index")
    p.add_argument("--shard-mib", type=float, default=16.0, help="largest shard in MiB (default 16)")


def run(args: argparse.Namespace) -> int:
    from importlib import resources
    from pathlib import Path

    from seem.errors import ConfigError
    from seem.train.config import TrainConfig
    from seem.train.engine import Trainer
    from seem.train.export import export_checkpoint

    if args.minutes <= 0:
        raise ConfigError(f"--minutes must be positive, got {args.minutes}")
    init = str(resources.files("seem") / "assets" / "seem_tiny.safetensors") if args.init == DEFAULT_INIT \
        else args.init
    base = TrainConfig.from_file(args.config) if args.config else TrainConfig(
        steps=1_000_000, batch_size=16, lr=1e-4, warmup_steps=20, milestones=(), bf16=True, max_objects=4,
        max_sentences=3, checkpoint_every=50)
    config = TrainConfig.from_file(None, **{**base.to_dict(), "init": init, "data": "pack", "pack": args.pack,
                                            "device": args.device, "max_minutes": args.minutes,
                                            "out_dir": args.out_dir})
    trainer = Trainer(config)
    trainer.run()
    index = export_checkpoint(Path(args.out_dir) / "model.safetensors", args.shards, config.model,
                              shard_mib=args.shard_mib)
    print(f"trained to step {trainer.step} on {trainer.device}; wrote {index}")
    return 0
