"""Find checkpoints by registry name or path; download from the Hugging Face Hub and cache them converted.

A registry name (:mod:`seem.registry`) is downloaded once with ``huggingface_hub.hf_hub_download``
(its own cache and progress bar), converted to this package's key names and written to
``<cache>/seem/<name>.safetensors`` with the config in its metadata, so later loads read safetensors
and never unpickle again. Local files work offline. Nothing here runs at import.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from seem.checkpoint import (
    config_from_official,
    load_state_dict_strict,
    read_checkpoint,
    read_safetensors_metadata,
    save_safetensors,
    to_seem_state_dict,
)
from seem.config_dict import config_from_dict
from seem.configs import SeemConfig
from seem.device import resolve_device
from seem.errors import CheckpointError, ConfigError, require
from seem.registry import PretrainedVariant, get_variant, list_models, variant_for_filename

if TYPE_CHECKING:
    from seem.modeling.seem import Seem

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_CONFIG_KEY = "seem_config"


def default_cache_root() -> Path:
    """``$SEEM_CACHE_DIR``, else ``$XDG_CACHE_HOME``, else ``~/.cache``; converted files go to ``<root>/seem``."""
    for env in ("SEEM_CACHE_DIR", "XDG_CACHE_HOME"):
        if os.environ.get(env):
            return Path(os.environ[env]).expanduser()
    return Path.home() / ".cache"


def converted_cache_path(name: str, cache_dir: str | os.PathLike | None = None, revision: str | None = None) -> Path:
    """Where the converted ``.safetensors`` of registry variant ``name`` is (or will be) cached."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    tag = "" if revision in (None, "main") else "@" + re.sub(r"[^A-Za-z0-9._-]", "_", revision)
    return root / "seem" / f"{name}{tag}.safetensors"


def _local_path(name_or_path: str | os.PathLike) -> Path | None:
    """A local path if ``name_or_path`` looks like one (else ``None``: a registry name)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"Expected a model name or a checkpoint path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if isinstance(name_or_path, str) and text in list_models() and not path.is_file():
        return None
    looks_like_path = (
        not isinstance(name_or_path, str) or os.sep in text or "/" in text or path.suffix.lower() in CHECKPOINT_SUFFIXES
    )
    if not (looks_like_path or path.exists()):
        return None
    if not path.exists():
        raise CheckpointError(f"Checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint path is not a file: {path}")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"Unsupported checkpoint format '{path.suffix}' ({path}); use one of {CHECKPOINT_SUFFIXES}")
    return path


def _config_of_local(path: Path) -> SeemConfig:
    """Config of a local file: safetensors metadata, else a sibling official YAML, else a known file name."""
    if path.suffix.lower() == ".safetensors":
        meta = read_safetensors_metadata(path)
        if _CONFIG_KEY in meta:
            try:
                return config_from_dict(json.loads(meta[_CONFIG_KEY]))
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"Corrupt '{_CONFIG_KEY}' metadata in {path}: {exc}") from None
    for sibling in (path.with_suffix(".yaml"), path.with_suffix(".yml"), path.parent / "config.yaml"):
        if sibling.is_file():
            try:
                return config_from_official(sibling)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (read from {sibling}, found next to {path.name})") from None
    variant = variant_for_filename(path.name)
    if variant is not None:
        return variant.config
    raise ConfigError(
        f"Cannot tell which SEEM variant {path} holds: pass config=..., put its official YAML next to it "
        f"as {path.with_suffix('.yaml').name} or config.yaml, or keep the released file name "
        "(e.g. seem_focalt_v1.pt)."
    )


def _download(variant: PretrainedVariant, cache_dir: str | os.PathLike | None, revision: str | None) -> Path:
    hf = require("huggingface_hub", "hub")
    hf_errors = require("huggingface_hub.utils", "hub")  # error classes in every version >= 0.20

    where = f"'{variant.hub_filename}' of https://huggingface.co/{variant.hub_repo}"
    try:
        return Path(
            hf.hf_hub_download(
                repo_id=variant.hub_repo,
                filename=variant.hub_filename,
                revision=revision,
                cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            )
        )
    except hf_errors.LocalEntryNotFoundError:
        raise CheckpointError(
            f"Cannot get {where}: it is not in the Hugging Face cache and cannot be downloaded (offline, "
            "HF_HUB_OFFLINE=1, or no network). Download it elsewhere and pass its local path instead."
        ) from None
    except (hf_errors.HfHubHTTPError, hf_errors.EntryNotFoundError, OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot download {where} (revision {revision or 'main'}): {exc}") from None


def _resolve_variant(variant: PretrainedVariant, cache_dir: str | os.PathLike | None, revision: str | None) -> Path:
    if variant.package_file is not None:  # bundled weights (e.g. a future seem_tiny): no download
        path = Path(str(resources.files("seem").joinpath(variant.package_file)))
        if not path.is_file():
            raise CheckpointError(f"The bundled checkpoint of '{variant.name}' is missing from the package: {path}")
        return path
    if variant.hub_filename is None:
        raise CheckpointError(f"Variant '{variant.name}' has no released checkpoint.")
    converted = converted_cache_path(variant.name, cache_dir, revision)
    if converted.is_file():
        try:
            read_safetensors_metadata(converted)  # header check only; a broken cache is rebuilt
            return converted
        except CheckpointError:
            converted.unlink()
    raw = _download(variant, cache_dir, revision)
    state = to_seem_state_dict(read_checkpoint(raw))
    meta = {"seem_variant": variant.name, "source": f"hf://{variant.hub_repo}/{variant.hub_filename}"}
    meta["revision"] = revision or "main"
    return save_safetensors(state, converted, meta, config=variant.config)


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    *,
    config: SeemConfig | None = None,
) -> tuple[Path, SeemConfig]:
    """The local checkpoint file and the config of a registry name or a path.

    * Path (``.safetensors``/``.pt``/``.pth``/``.bin``): used as is, offline. The config is ``config``,
      else the ``"seem_config"`` safetensors metadata, else a sibling official YAML (``<stem>.yaml`` or
      ``config.yaml``), else the registry variant whose released file has this name.
    * Registry name: ``<cache>/seem/<name>.safetensors`` if cached, else downloaded with
      ``hf_hub_download(repo_id, filename, revision, cache_dir)``, converted and cached.
      ``<cache>`` is ``cache_dir`` (which also holds the Hugging Face cache), else
      :func:`default_cache_root` (and the default Hugging Face cache).

    Raises:
        ConfigError: unknown name (with suggestions) or undeterminable config.
        CheckpointError: missing/corrupt file, failed download, offline without a cached copy.
        MissingDependencyError: ``huggingface_hub`` is needed and not installed.
    """
    path = _local_path(name_or_path)
    if path is not None:
        return path, config if config is not None else _config_of_local(path)
    variant = get_variant(os.fspath(name_or_path))
    return _resolve_variant(variant, cache_dir, revision), config if config is not None else variant.config


def resolve_weights(
    name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, revision: str | None = None
) -> Path:
    """Like :func:`resolve_checkpoint` but only the file (no config needed for local files)."""
    path = _local_path(name_or_path)
    if path is not None:
        return path
    return _resolve_variant(get_variant(os.fspath(name_or_path)), cache_dir, revision)


def load_pretrained_weights(
    model: nn.Module,
    name_or_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
) -> None:
    """Load a registry variant's or a file's weights into ``model`` strictly (official names converted).

    Raises:
        CheckpointError: as :func:`resolve_checkpoint`, and when the weights do not fit ``model``.
    """
    path = resolve_weights(name_or_path, cache_dir, revision)
    load_state_dict_strict(model, to_seem_state_dict(read_checkpoint(path)))


def build_from_pretrained(
    name_or_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
    config: SeemConfig | None = None,
) -> Seem:
    """Build a :class:`~seem.modeling.seem.Seem` for a registry name or checkpoint path and load it strictly.

    The model is built and loaded on CPU, put in eval mode, then moved to ``device`` if given.

    Raises:
        ConfigError, CheckpointError: as :func:`resolve_checkpoint` and :func:`load_state_dict_strict`.
    """
    from seem.build import build_seem  # lazy: the model code is not needed to resolve files

    path, resolved = resolve_checkpoint(name_or_path, cache_dir, revision, config=config)
    model = build_seem(resolved)
    load_state_dict_strict(model, to_seem_state_dict(read_checkpoint(path)))
    model.eval()
    return model.to(device) if device is not None else model


DEFAULT_MODEL = "seem_tiny"  # bundled with the package (trained offline on generated scenes and real photos)


def from_pretrained(name_or_path: str | None = None, device: str | None = "cpu", cache_dir=None) -> Seem:
    """A :class:`Seem` with weights, from a registry name (``seem_focalt_v1`` ...) or a checkpoint path.

    ``None`` gives the bundled default, ``seem_tiny`` (no download). ``device``: ``"cpu"``, ``"cuda"``,
    ``"auto"`` ... (see :func:`seem.device.resolve_device`).

    Registry names download the official checkpoint from the Hugging Face hub repo ``xdecoder/SEEM``
    once (``pip install 'seem-torch[hub]'``), convert it and cache a safetensors copy; local paths
    (``.safetensors`` with our metadata, or an official ``.pt`` next to its YAML config) work offline.

    Raises:
        ConfigError: unknown name or no default model available.
        CheckpointError: unreadable, unsafe or mismatched checkpoints.
        SeemError: the requested accelerator is not available.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    return build_from_pretrained(name_or_path, cache_dir=cache_dir, device=resolve_device(device))
