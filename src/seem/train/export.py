"""Export trained weights as a compact bundled checkpoint (``python -m seem.train.export IN [IN ...] OUT``).

``IN`` is a training ``model.safetensors`` / ``last.pt`` or a folder of shards (``model.safetensors.index.json``,
:mod:`seem.train.shards`); with ``--shard-mib N``, ``OUT`` is a folder of shards of at most N MiB each.
Several ``IN`` of one training lineage are averaged parameter by parameter (a uniform "model soup",
Wortsman et al., ICML 2022): runs fine-tuned from one another trade off differently between data sets,
and their mean often keeps the better side of each.

Large floating-point tensors are stored in float16 (halving the file; the model casts them back to
float32 when loading), small ones (norms, biases, batch-norm statistics) stay float32. The registry
config of the variant is written into the safetensors metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

SMALL = 4096  # tensors with at most this many elements keep float32


def average_states(states: list[dict[str, torch.Tensor]], weights: list[float] | None = None) -> dict[str, torch.Tensor]:
    """The parameter-wise (weighted) mean of ``states`` (float tensors averaged in float32, others taken from
    the first). ``weights`` (default uniform) are normalised to sum to 1. A zero-initialised mask position
    projection (:mod:`seem.modeling.mask_position`) that some states lack counts as zeros there: those
    states computed the same function with it at zero.

    Raises:
        CheckpointError: the states differ in other keys or in shapes (not one architecture); bad weights.
    """
    from seem.errors import CheckpointError

    if weights is None:
        weights = [1.0] * len(states)
    if len(weights) != len(states) or any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise CheckpointError(f"need one non-negative weight per source ({len(states)}), summing above 0; got {weights}")
    from seem.modeling.mask_position import POSITION_KEY, with_zero_position

    grown = {k: v for st in states for k, v in st.items() if POSITION_KEY in k}
    states = [with_zero_position(st, grown) for st in states]
    first = states[0]
    for i, other in enumerate(states[1:], 1):
        if set(other) != set(first) or any(other[k].shape != first[k].shape for k in first):
            differ = sorted(set(other) ^ set(first)) or [k for k in first if other[k].shape != first[k].shape]
            raise CheckpointError(f"source {i} has other keys or shapes than source 0 ({', '.join(differ[:6])}"
                                  f"{' ...' if len(differ) > 6 else ''}): only weights of one architecture can be averaged")
    if len(states) == 1:
        return first
    w = torch.tensor(weights, dtype=torch.float32) / sum(weights)
    return {k: ((torch.stack([s[k].float() for s in states]) * w.view(-1, *[1] * v.dim())).sum(0).to(v.dtype)
                if v.is_floating_point() else v) for k, v in first.items()}


def export_checkpoint(source: str | Path | list[str | Path], target: str | Path, variant: str = "seem_tiny",
                      shard_mib: float | None = None, config=None, weights: list[float] | None = None,
                      description: str | None = None) -> Path:
    """Read ``source`` (a training ``model.safetensors`` or ``last.pt``, or a shard folder / index; a list of
    them is averaged, with ``weights``, see :func:`average_states`), write ``target`` (a file, or with ``shard_mib`` a folder of
    shards and its index); returns the file or index. The metadata's config is ``config`` (default: the
    registry's ``variant``, today's inference settings included) with the mask position features the weights
    carry; the metadata's ``source`` is ``description`` (default: the source files' names)."""
    from seem.checkpoint import read_checkpoint, save_safetensors
    from seem.registry import get_variant
    from seem.train.shards import INDEX, read_shards, write_shards

    sources = [Path(s) for s in source] if isinstance(source, (list, tuple)) else [Path(source)]

    def load(path: Path) -> dict:
        state = read_shards(path) if path.is_dir() or path.name == INDEX else read_checkpoint(path)
        return state["model"] if "model" in state and isinstance(state["model"], dict) else state  # a last.pt

    state = average_states([load(s) for s in sources], weights)
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.numel() > SMALL:
            v = v.to(torch.float16)
        out[k] = v.contiguous()
    meta = {"format": "seem", "variant": variant,
            "source": description or " + ".join(f"{s.parent.name}/{s.name}" for s in sources)}
    config = _grown_config(config or get_variant(variant).config, out)
    if shard_mib is not None:
        return write_shards(out, target, shard_mib, meta, config=config)[-1]
    return save_safetensors(out, target, meta, config=config)


def _grown_config(config, state: dict):
    """``config`` with the mask position features the weights carry (trained with
    ``TrainConfig.mask_position_frequencies``; ``(Dm, 4 F)`` projection) and their candidate, box and grounding
    scorers (:mod:`seem.candidates`: click, box and refine; :mod:`seem.grounding_choice`), or without them when they carry none."""
    from dataclasses import replace

    weight = state.get("pixel_decoder.mask_position.proj.weight")
    frequencies = 0 if weight is None else int(weight.shape[1]) // 4
    scorer = state.get("candidate_scorer.fc1.weight")  # seem.candidates: (hidden, features)
    grounding = state.get("grounding_scorer.fc1.weight")  # seem.grounding_choice
    box = state.get("box_scorer.fc1.weight")
    refine = state.get("refine_scorer.fc1.weight")
    return replace(config, pixel_decoder=replace(config.pixel_decoder, mask_position_frequencies=frequencies),
                   candidate_scorer_hidden=0 if scorer is None else int(scorer.shape[0]),
                   grounding_scorer_hidden=0 if grounding is None else int(grounding.shape[0]),
                   box_scorer_hidden=0 if box is None else int(box.shape[0]),
                   refine_scorer_hidden=0 if refine is None else int(refine.shape[0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("source", nargs="+", help="weights to export; several are averaged (a model soup)")
    ap.add_argument("target")
    ap.add_argument("--variant", default="seem_tiny")
    ap.add_argument("--shard-mib", type=float, default=None, help="write TARGET as a folder of shards this size")
    ap.add_argument("--weights", default=None, help="comma list, one per source: a weighted soup (default: equal)")
    args = ap.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    path = export_checkpoint(args.source if len(args.source) > 1 else args.source[0], args.target, args.variant,
                             args.shard_mib, weights=weights)
    files = sorted(path.parent.glob("model-*.safetensors")) if args.shard_mib else [path]
    print(f"wrote {path} ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {len(files)} file(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
