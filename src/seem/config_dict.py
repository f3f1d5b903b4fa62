"""``SeemConfig`` <-> plain nested dict (JSON): the ``seem_config`` metadata of our safetensors files.

Unknown fields and values of the wrong type raise :class:`~seem.errors.ConfigError` naming the field
(``config.decoder.num_queries``), so a file written by a newer version fails loudly instead of loading a
different model.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping

from seem.configs import FocalNetConfig, MobileNetV2Config, SeemConfig
from seem.errors import ConfigError

if typing.TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = typing.TypeVar("_T", bound="DataclassInstance")
_FOCAL_FIELDS = frozenset(f.name for f in dataclasses.fields(FocalNetConfig)) - {"name"}


def config_to_dict(config: SeemConfig) -> dict:
    """A JSON-ready nested dict of a :class:`SeemConfig` (tuples become lists)."""
    return dataclasses.asdict(config)


def _union_member(hint: object, value: Mapping, where: str) -> type:
    """The dataclass of a ``FocalNetConfig | ViTConfig | ...`` field named by ``value["name"]`` (the first
    member when no name is given, as the field's default is)."""
    members = [a for a in typing.get_args(hint) if isinstance(a, type) and dataclasses.is_dataclass(a)]
    if "name" not in value:
        return members[0]
    for member in members:
        if value["name"] in getattr(member, "NAMES", ()):
            return member
    names = sorted(n for m in members for n in getattr(m, "NAMES", ()))
    raise ConfigError(f"{where}.name {value['name']!r} is not one of {names}")


def _coerce(hint: object, value: object, where: str) -> object:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        member = _union_member(hint, value, where)
        if member is MobileNetV2Config:  # files written before the split carry FocalNet fields it never used
            value = {k: v for k, v in value.items() if k not in _FOCAL_FIELDS}
        return _dataclass_from_dict(member, value, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return _dataclass_from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return tuple(_coerce(args[0] if len(args) == 1 else args[i], v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def _dataclass_from_dict(cls: type[_T], data: Mapping, where: str) -> _T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"Unknown field(s) {unknown} in {where} ({cls.__name__}); written by a newer seem?")
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def config_from_dict(data: Mapping) -> SeemConfig:
    """Inverse of :func:`config_to_dict`; absent fields take their defaults.

    Raises:
        ConfigError: unknown fields or values of the wrong type.
    """
    return _dataclass_from_dict(SeemConfig, data, "config")
