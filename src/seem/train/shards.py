"""Weights as several safetensors files of bounded size, with a Hugging Face-style index.

A machine that may hand back only files of at most 16 MiB writes ``model-00001-of-0000N.safetensors`` ...
and ``model.safetensors.index.json`` (``{"metadata": {...}, "weight_map": {key: file}}``, the layout
``transformers`` uses); :func:`read_shards` merges them back, checking that every listed key is present once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from seem.checkpoint import read_checkpoint, save_safetensors
from seem.configs import SeemConfig
from seem.errors import CheckpointError

INDEX = "model.safetensors.index.json"
_HEADER_ROOM = 64 * 1024  # safetensors JSON header (names, shapes, offsets) and metadata, an upper bound


def shard_capacity(max_mib: float) -> int:
    """Bytes of tensor data one shard of ``max_mib`` MiB holds (its safetensors header room taken off)."""
    return int(max_mib * (1 << 20)) - _HEADER_ROOM


def write_shards(state_dict: Mapping[str, Tensor], out_dir: str | Path, max_mib: float = 16.0,
                 metadata: Mapping[str, str] | None = None, config: SeemConfig | None = None) -> list[Path]:
    """Split ``state_dict`` (in key order) into files of at most ``max_mib`` MiB each; returns the index path
    last after the shard paths.

    Raises:
        CheckpointError: a single tensor is larger than ``max_mib``.
    """
    limit = shard_capacity(max_mib)
    groups: list[dict[str, Tensor]] = [{}]
    used = 0
    for key, t in state_dict.items():
        size = t.numel() * t.element_size()
        if size > limit:
            raise CheckpointError(f"tensor {key} is {size / (1 << 20):.2f} MiB: it does not fit a {max_mib} MiB shard "
                                  f"with its header ({limit / (1 << 20):.2f} MiB of tensor data)")
        if used + size > limit and groups[-1]:
            groups.append({})
            used = 0
        groups[-1][key] = t
        used += size
    out_dir = Path(out_dir)
    n = len(groups)
    paths, weight_map = [], {}
    for i, group in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        paths.append(save_safetensors(group, out_dir / name, metadata, config=config))
        weight_map.update(dict.fromkeys(group, name))
    index = {"metadata": dict(metadata or {}), "weight_map": weight_map}
    (out_dir / INDEX).write_text(json.dumps(index, indent=1))
    return [*paths, out_dir / INDEX]


def read_shards(source: str | Path) -> dict[str, Tensor]:
    """The merged state dict of a shard index (the JSON file or the folder holding it).

    Raises:
        CheckpointError: no index, a malformed index, a missing shard, or a shard whose keys differ from
            what the index lists for it.
    """
    source = Path(source)
    index_path = source / INDEX if source.is_dir() else source
    try:
        index = json.loads(index_path.read_text())
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map must map keys to file names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index_path}: not a shard index ({exc})") from None
    state: dict[str, Tensor] = {}
    for name in dict.fromkeys(weight_map.values()):
        if Path(name).name != name:
            raise CheckpointError(f"{index_path}: shard name {name!r} must be a plain file name")
        part = read_checkpoint(index_path.parent / name)
        listed = {k for k, v in weight_map.items() if v == name}
        if set(part) != listed:
            raise CheckpointError(f"{name}: holds {len(part)} tensors, the index lists {len(listed)} for it")
        state.update(part)
    return {k: state[k] for k in weight_map}
