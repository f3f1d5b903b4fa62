"""Checkpoint files: official key conversion, strict loading, safe reading, safetensors and configs.

Follows the layout of the official checkpoints (flat ``GeneralizedSEEM.state_dict()`` written by
``modeling/BaseModel.py::save_pretrained``; see ``SEEM-REFERENCE.md`` section 5) but never loads them
the official way (``utils/model.py::align_and_update_state_dicts`` silently drops mismatching keys):
here every key is renamed by one ordered table, ignorable keys are an explicit list, and loading is
strict with a readable report. Pickles are read with ``weights_only=True`` only.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from seem.config_dict import config_to_dict
from seem.configs import BACKBONE_CONFIG_TYPES, SeemConfig
from seem.errors import CheckpointError
from seem.official_config import config_from_official  # noqa: F401  (re-exported)

IGNORED_OFFICIAL_KEYS: tuple[str, ...] = (
    "criterion.empty_weight",  # training loss weight of the no-object class; not part of the model
    "dilation_kernel",  # constant 1x1x3x3 ones buffer (click dilation); recreated in code
)

# Ordered (first match wins) official prefix -> seem prefix.
_RENAME_RULES: tuple[tuple[str, str], ...] = (
    ("sem_seg_head.predictor.lang_encoder.lang_encoder.", "text_encoder.transformer."),
    ("sem_seg_head.predictor.lang_encoder.", "text_encoder."),  # lang_proj, logit_scale
    ("sem_seg_head.predictor.mask_sptial_embed.", "decoder.spatial_token_proj."),  # sic: 'sptial'
    ("sem_seg_head.predictor.", "decoder."),
    ("sem_seg_head.pixel_decoder.", "pixel_decoder."),
    ("backbone.", "backbone."),
)

SEEM_PREFIXES: tuple[str, ...] = ("backbone.", "pixel_decoder.", "text_encoder.", "decoder.", "candidate_scorer.",
                                   "grounding_scorer.", "box_scorer.", "refine_scorer.")
_WRAPPER_PREFIXES = ("module.", "model.")  # DDP, official BaseModel wrapper
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_CONTAINER_KEYS = ("model", "state_dict", "model_state_dict", "module")
_MAX_LISTED = 20


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove ``module.`` (DDP) / ``model.`` (BaseModel) prefixes shared by *every* key, repeatedly."""
    out = dict(state_dict)
    while out:
        prefix = next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in out)), None)
        if prefix is None:
            break
        out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official SEEM state dict to this package's module names (pure; tensors are not copied).

    Leading ``module.``/``model.`` prefixes are stripped, :data:`IGNORED_OFFICIAL_KEYS` are dropped and
    every other key is renamed by the first matching rule of ``_RENAME_RULES``.

    Raises:
        CheckpointError: some keys match no rule (their top-level prefixes are listed, with counts).
    """
    out: dict[str, Tensor] = {}
    unknown: Counter[str] = Counter()
    for key, value in strip_wrapper_prefixes(state_dict).items():
        if key in IGNORED_OFFICIAL_KEYS:
            continue
        for old, new in _RENAME_RULES:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            unknown[".".join(key.split(".")[:2])] += 1
    if unknown:
        listed = ", ".join(f"'{p}' ({n} keys)" for p, n in sorted(unknown.items()))
        raise CheckpointError(
            f"Unknown key prefixes in the official SEEM checkpoint: {listed}. Expected only "
            f"{', '.join(repr(old) for old, _ in _RENAME_RULES)} and {list(IGNORED_OFFICIAL_KEYS)}; "
            "is this a SEEM checkpoint (not X-Decoder or SAM)?"
        )
    return out


def to_seem_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return ``state_dict`` in this package's key names, converting it if it uses official names.

    Raises:
        CheckpointError: keys are neither official nor this package's names.
    """
    stripped = strip_wrapper_prefixes(state_dict)
    if all(k.startswith(SEEM_PREFIXES) for k in stripped):
        return stripped
    return convert_official_state_dict(stripped)


# --------------------------------------------------------------------------------------------------
# Strict loading


def _abbreviated(lines: list[str]) -> list[str]:
    shown = [f"  {line}" for line in lines[:_MAX_LISTED]]
    if len(lines) > _MAX_LISTED:
        groups = Counter(".".join(line.split(".")[:2]) for line in lines)
        by_prefix = ", ".join(f"{p} ({n})" for p, n in groups.most_common(8))
        shown.append(f"  ... and {len(lines) - _MAX_LISTED} more (by prefix: {by_prefix})")
    return shown


def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, object]:
    """Infer architecture sizes (backbone, decoder, text encoder) from key names and shapes.

    Works on this package's names (and on official ``backbone.*`` names, which are the same). The backbone
    part comes from the ``describe_shapes`` of each backbone config type (:data:`seem.configs.BACKBONE_CONFIG_TYPES`).
    Only sizes that can be read from the given keys are returned.
    """
    info: dict[str, object] = {}
    for config_type in BACKBONE_CONFIG_TYPES:
        info.update(config_type.describe_shapes(shapes))
    if "decoder.query_feat.weight" in shapes:
        info["decoder queries"], info["decoder hidden_dim"] = shapes["decoder.query_feat.weight"][:2]
    if "text_encoder.transformer.positional_embedding" in shapes:
        info["text width"] = shapes["text_encoder.transformer.positional_embedding"][1]
    return info


def describe_config(config: SeemConfig) -> dict[str, object]:
    """The sizes of :func:`describe_shapes` as a config declares them."""
    return {
        **config.backbone.describe(),
        "decoder queries": config.decoder.num_queries,
        "decoder hidden_dim": config.decoder.hidden_dim,
        "text width": config.text.width,
    }


def _variant_hint(model_shapes: dict, ckpt_shapes: dict) -> str:
    if any(k.startswith(("sem_seg_head.", "module.", "model.")) or k in IGNORED_OFFICIAL_KEYS for k in ckpt_shapes):
        return (
            "Hint: the checkpoint uses official SEEM key names; convert it first with "
            "seem.checkpoint.convert_official_state_dict() (load_pretrained_weights() does this)."
        )
    from seem.candidates import SCORER_PREFIXES

    missing = set(model_shapes) - set(ckpt_shapes)
    only_scorers = all(k.startswith(SCORER_PREFIXES) for k in missing)
    for scorer in (prefix.rstrip(".") for prefix in SCORER_PREFIXES):
        key = f"{scorer}.feature_mean"
        trainer = {"box_scorer": "candidate_scorer --prompt boxes",
                   "refine_scorer": "candidate_scorer --prompt refine"}.get(scorer, scorer)
        if key in ckpt_shapes and key in model_shapes and ckpt_shapes[key] != model_shapes[key]:
            return (f"Hint: the checkpoint's {scorer.replace('_', ' ')} reads another number of features (an older "
                    f"version); fit a new one with python -m seem.train.{trainer} --model CHECKPOINT OUT.")
        if key in missing and only_scorers:
            return (f"Hint: the checkpoint has no {scorer.replace('_', ' ')} (made before it, or without it); fit one "
                    f"with python -m seem.train.{trainer} --model CHECKPOINT OUT, or build the model with "
                    f"SeemConfig.{scorer}_hidden=0.")
    have, want = describe_shapes(ckpt_shapes), describe_shapes(model_shapes)
    diff = [k for k in have if k in want and have[k] != want[k]]
    if not diff:
        return ""
    parts = ", ".join(f"{k} {have[k]} (model: {want[k]})" for k in diff)
    hint = f"Hint: the checkpoint looks like a different model variant: checkpoint has {parts}."
    from seem.registry import iter_variants  # lazy: registry is optional for this module

    matches = [
        v.name
        for v in iter_variants()
        if all(describe_config(v.config).get(k) == val for k, val in have.items() if k in describe_config(v.config))
    ]
    if matches:
        hint += f" It matches the registered variant(s) {', '.join(matches)}; build the model with that config."
    return hint


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Load ``state_dict`` into ``model`` after :func:`check_state_dict`; then ``strict=True``."""
    check_state_dict(model, state_dict)
    model.load_state_dict(dict(state_dict), strict=True)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Check that ``state_dict`` has exactly the model's keys and shapes (works on a meta-device model).

    Raises:
        CheckpointError: missing keys, unexpected keys or shape mismatches, listed (first 20 of each,
            with counts by prefix) with a hint when the checkpoint looks unconverted or of another variant.
    """
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ckpt_shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(model_shapes) - set(ckpt_shapes))
    unexpected = sorted(set(ckpt_shapes) - set(model_shapes))
    mismatched = sorted(k for k in set(model_shapes) & set(ckpt_shapes) if model_shapes[k] != ckpt_shapes[k])
    if missing or unexpected or mismatched:
        lines = [
            f"Checkpoint does not match the model ({type(model).__name__}): {len(missing)} missing keys, "
            f"{len(unexpected)} unexpected keys, {len(mismatched)} shape mismatches."
        ]
        if missing:
            lines += ["Missing keys (in the model, not in the checkpoint):", *_abbreviated(missing)]
        if unexpected:
            lines += ["Unexpected keys (in the checkpoint, not in the model):", *_abbreviated(unexpected)]
        if mismatched:
            shapes = [f"{k}: checkpoint {list(ckpt_shapes[k])} vs model {list(model_shapes[k])}" for k in mismatched]
            lines += ["Shape mismatches:", *_abbreviated(shapes)]
        hint = _variant_hint(model_shapes, ckpt_shapes)
        if hint:
            lines.append(hint)
        raise CheckpointError("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Reading and writing files


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"Checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint path is not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint file is empty (0 bytes): {path}; delete it and download it again.")


def _load_pickle(path: Path) -> object:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about legacy (non-zip) pickles before refusing them
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "global" in ln), "")
        if not detail:  # garbage and legacy pickles both end as "Unsupported operand": say both
            raise CheckpointError(
                f"Cannot read {path}: corrupt, or not a weights-only PyTorch checkpoint (pickles that hold "
                "Python objects are refused for safety). Accepted: tensor state dicts (.pt/.pth) or .safetensors."
            ) from None
        raise CheckpointError(
            f"Refused to load {path}: the file contains non-tensor Python objects ({detail}) and was refused for "
            "safety (weights-only loading; a pickle can run code). Accepted: plain tensor state dicts "
            "(.pt/.pth) or .safetensors; if you trust the file, extract its tensors yourself and save them "
            "with seem.checkpoint.save_safetensors()."
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"Cannot read {path}: corrupt or truncated checkpoint ({_first_line(exc)}).") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
            raise CheckpointError(f"{path} is not a state dict: non-tensor entries {bad[:10]}.")
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} does not hold a (non-empty) state dict but {type(obj).__name__}.")
    return {str(k): v for k, v in obj.items()}


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pt/.pth/.bin/.ckpt`` pickle (weights only, CPU).

    Containers ``{"model": ...}`` / ``{"state_dict": ...}`` are unwrapped. Keys are returned as stored.

    Raises:
        CheckpointError: missing, empty, corrupt or unsupported file, or a pickle with non-tensor
            Python objects (refused for safety; never retried with ``weights_only=False``).
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as exc:
            raise CheckpointError(f"Cannot read {path}: corrupt safetensors file ({exc}).") from None
    if suffix in _PICKLE_SUFFIXES:
        return _unwrap(_load_pickle(path), path)
    raise CheckpointError(f"Unsupported checkpoint format '{suffix}' ({path}); use .safetensors, .pt, .pth or .bin.")


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` header (empty dict if none).

    Raises:
        CheckpointError: missing, empty or corrupt file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except SafetensorError as exc:
        raise CheckpointError(f"Cannot read {path}: corrupt safetensors file ({exc}).") from None


def save_safetensors(
    state_dict: Mapping[str, Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
    *,
    config: SeemConfig | None = None,
) -> Path:
    """Write ``state_dict`` atomically to ``path``; ``config`` goes to metadata key ``"seem_config"`` (JSON).

    Tensors sharing storage are cloned (safetensors refuses shared tensors).
    """
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if config is not None:
        meta["seem_config"] = json.dumps(config_to_dict(config), sort_keys=True)
    seen: set[tuple[int, int]] = set()
    tensors: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        t = value.detach().to("cpu").contiguous()
        ident = (t.untyped_storage().data_ptr(), int(t.storage_offset()))
        tensors[key] = t.clone() if ident in seen and t.numel() else t
        seen.add(ident)
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
