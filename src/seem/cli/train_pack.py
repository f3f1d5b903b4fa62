"""``seem train-pack``: training draws of the real-photo mixture packed into one file for a lent GPU."""

from __future__ import annotations

import argparse

from seem.cli.common import non_negative_int, positive_float, verbose_parent


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-pack", parents=[verbose_parent()], help="pack real-photo training draws into one small file",
        description="Draw training samples from the real-photo mixture (CONFIG's data_root, image_size, "
        "mix weights and copy-paste probability) and store them in OUT (.npz: JPEG images, bit-packed masks, "
        "JSON labels) until it holds MAX_MIB MiB; `seem train-continue --pack OUT` trains from it.")
    p.add_argument("config", metavar="CONFIG", help="training config (JSON/YAML) with data 'mix'")
    p.add_argument("--out", required=True, help="pack file to write (.npz)")
    p.add_argument("--max-mib", type=positive_float, default=64.0, help="size budget in MiB (default 64)")
    p.add_argument("--seed-offset", type=non_negative_int, default=50_000_000,
                   help="first draw seed (default 50,000,000: draws no CPU run of 50M draws has used)")


def run(args: argparse.Namespace) -> int:
    from itertools import count
    from pathlib import Path

    from seem.data.real_mix import RealMixture
    from seem.errors import ConfigError
    from seem.train.config import TrainConfig
    from seem.train.pack import write_pack

    config = TrainConfig.from_file(args.config)
    if config.data != "mix":
        raise ConfigError(f"{args.config}: data is {config.data!r}; a pack is drawn from the 'mix' data")
    if not 0 < args.max_mib <= 4096:
        raise ConfigError(f"--max-mib must be in (0, 4096], got {args.max_mib}")
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the pack file (e.g. {out / 'pack.npz'})")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    mixture = RealMixture(config.mix_config())
    info = write_pack((mixture.sample(s) for s in count(args.seed_offset)), args.out, args.max_mib)
    print(f"wrote {info['path']}: {info['samples']} draws, {info['bytes'] / (1 << 20):.1f} MiB")
    return 0
