"""Export trained weights as a compact bundled checkpoint (``python -m seem.train.export IN OUT``).

``IN`` is a training ``model.safetensors`` / ``last.pt`` or a folder of shards (``model.safetensors.index.json``,
:mod:`seem.train.shards`); with ``--shard-mib N``, ``OUT`` is a folder of shards of at most N MiB each.

Large floating-point tensors are stored in float16 (halving the file; the model casts them back to
float32 when loading), small ones (norms, biases, batch-norm statistics) stay float32. The registry
config of the variant is written into the safetensors metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

SMALL = 4096  # tensors with at most this many elements keep float32


def export_checkpoint(source: str | Path, target: str | Path, variant: str = "seem_tiny",
                      shard_mib: float | None = None) -> Path:
    """Read ``source`` (a training ``model.safetensors`` or ``last.pt``, or a shard folder / index), write
    ``target`` (a file, or with ``shard_mib`` a folder of shards and its index); returns the file or index."""
    from seem.checkpoint import read_checkpoint, save_safetensors
    from seem.registry import get_variant
    from seem.train.shards import INDEX, read_shards, write_shards

    source = Path(source)
    state = read_shards(source) if source.is_dir() or source.name == INDEX else read_checkpoint(source)
    if "model" in state and isinstance(state["model"], dict):  # a training last.pt
        state = state["model"]
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.numel() > SMALL:
            v = v.to(torch.float16)
        out[k] = v.contiguous()
    meta = {"format": "seem", "variant": variant, "source": source.name}
    if shard_mib is not None:
        return write_shards(out, target, shard_mib, meta, config=get_variant(variant).config)[-1]
    return save_safetensors(out, target, meta, config=get_variant(variant).config)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("--variant", default="seem_tiny")
    ap.add_argument("--shard-mib", type=float, default=None, help="write TARGET as a folder of shards this size")
    args = ap.parse_args(argv)
    path = export_checkpoint(args.source, args.target, args.variant, args.shard_mib)
    files = sorted(path.parent.glob("model-*.safetensors")) if args.shard_mib else [path]
    print(f"wrote {path} ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {len(files)} file(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
