"""``seem train-continue``: continue training from a pack for a fixed time, then write weight shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from seem.cli.common import parse_device, positive_float, verbose_parent

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
    p.add_argument("--minutes", type=positive_float, default=8.0, help="training time (default 8)")
    p.add_argument("--device", type=parse_device, default="auto", help="auto | cuda[:N] | cpu (default auto)")
    p.add_argument("--out-dir", default="runs/continue", help="checkpoints and metrics (resumes from here)")
    p.add_argument("--shards", required=True, help="folder for the weight shards and their index")
    p.add_argument("--shard-mib", type=positive_float, default=16.0, help="largest shard in MiB (default 16)")


def _largest_export_bytes(variant: str) -> tuple[str, int]:
    """Name and exported size (float16 as :func:`seem.train.export.export_checkpoint` writes) of the
    variant's largest tensor, from a model built on the meta device (no memory, no weights)."""
    import torch

    from seem.build import build_seem
    from seem.registry import get_variant
    from seem.train.export import SMALL

    with torch.device("meta"):
        state = build_seem(get_variant(variant).config).state_dict()

    def nbytes(t: torch.Tensor) -> int:
        return t.numel() * (2 if t.is_floating_point() and t.numel() > SMALL else t.element_size())

    key = max(state, key=lambda k: nbytes(state[k]))
    return key, nbytes(state[key])


def _check_outputs(args: argparse.Namespace, variant: str) -> None:
    """Everything that would fail after training (shard size, output folders) fails before it."""
    from seem.errors import ConfigError
    from seem.train.shards import shard_capacity

    key, size = _largest_export_bytes(variant)
    capacity = shard_capacity(args.shard_mib)
    if size > capacity:
        raise ConfigError(f"--shard-mib {args.shard_mib}: tensor {key} alone is {size / (1 << 20):.2f} MiB and a "
                          f"shard holds {max(capacity, 0) / (1 << 20):.2f} MiB of tensor data; raise --shard-mib")
    for flag, folder in (("--shards", Path(args.shards)), ("--out-dir", Path(args.out_dir))):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{flag} {folder}: exists and is not a folder")
        parent = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        if not parent.is_dir():
            raise ConfigError(f"{flag} {folder}: {parent} is not a folder")
    if not Path(args.pack).is_file():
        raise ConfigError(f"--pack {args.pack}: file not found")


def run(args: argparse.Namespace) -> int:
    from importlib import resources

    from seem.train.config import TrainConfig
    from seem.train.engine import Trainer
    from seem.train.export import export_checkpoint

    init = str(resources.files("seem") / "assets" / "seem_tiny.safetensors") if args.init == DEFAULT_INIT \
        else args.init
    base = TrainConfig.from_file(args.config) if args.config else TrainConfig(
        steps=1_000_000, batch_size=16, lr=1e-4, warmup_steps=20, milestones=(), bf16=True, max_objects=4,
        max_sentences=3, checkpoint_every=50)
    config = TrainConfig.from_file(None, **{**base.to_dict(), "init": init, "data": "pack", "pack": args.pack,
                                            "device": args.device, "max_minutes": args.minutes,
                                            "out_dir": args.out_dir})
    _check_outputs(args, config.model)
    trainer = Trainer(config)
    trainer.run()
    index = export_checkpoint(Path(args.out_dir) / "model.safetensors", args.shards, config.model,
                              shard_mib=args.shard_mib)
    print(f"trained to step {trainer.step} on {trainer.device}; wrote {index}")
    return 0
