"""Export trained weights as a compact bundled checkpoint (``python -m seem.train.export IN OUT``).

Large floating-point tensors are stored in float16 (halving the file; the model casts them back to
float32 when loading), small ones (norms, biases, batch-norm statistics) stay float32. The registry
config of the variant is written into the safetensors metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

SMALL = 4096  # tensors with at most this many elements keep float32


def export_checkpoint(source: str | Path, target: str | Path, variant: str = "seem_tiny") -> Path:
    """Read ``source`` (a training ``model.safetensors`` or ``last.pt``), write ``target``; returns it."""
    from ..checkpoint import read_checkpoint, save_safetensors
    from ..registry import get_variant

    state = read_checkpoint(source)
    if "model" in state and isinstance(state["model"], dict):  # a training last.pt
        state = state["model"]
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.numel() > SMALL:
            v = v.to(torch.float16)
        out[k] = v.contiguous()
    return save_safetensors(out, target, {"format": "seem", "variant": variant, "source": Path(source).name},
                            config=get_variant(variant).config)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("--variant", default="seem_tiny")
    args = ap.parse_args(argv)
    path = export_checkpoint(args.source, args.target, args.variant)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
