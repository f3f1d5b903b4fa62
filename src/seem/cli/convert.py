"""``seem convert``: an official SEEM ``.pt`` checkpoint -> safetensors in this package's key layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from seem.cli.common import report_written, verbose_parent


def add_parser(subparsers) -> None:
    conv = subparsers.add_parser("convert", parents=[verbose_parent()], help="convert an official SEEM checkpoint",
                                 description="Convert an official SEEM .pt checkpoint to safetensors.")
    conv.add_argument("checkpoint", metavar="OFFICIAL.pt")
    conv.add_argument("output", metavar="OUT.safetensors")
    which = conv.add_mutually_exclusive_group()
    which.add_argument("--config", default=None, metavar="OFFICIAL.yaml", help="official YAML config")
    which.add_argument("--variant", default=None, metavar="NAME", help="registry variant name")


def run(args: argparse.Namespace) -> int:
    """``seem convert``: official ``.pt`` -> our key layout, saved as safetensors with its config.

    The config comes from ``--config`` (official YAML), ``--variant`` (registry name) or, failing
    both, the released file name (``seem_focalt_v1.pt``); it is stored in the file's metadata so
    ``SeemPredictor.from_pretrained(OUT.safetensors)`` needs nothing else.
    """
    from seem import checkpoint, registry
    from seem.errors import SeemError

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
    report_written([target])
    return 0
