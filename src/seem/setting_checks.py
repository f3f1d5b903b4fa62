"""Checks of the settings dataclasses of the Python API (:class:`~seem.find.FindConfig`,
:class:`~seem.automatic.EverythingConfig`), each error naming its field.

Wrong types raise :class:`~seem.errors.PromptTypeError` (a ``PromptError`` and a ``TypeError``): an ``int``
field takes Python or NumPy integers, not ``bool`` or ``float`` (``2.5`` masks); a ``float`` field takes real
numbers, not ``bool`` or strings (``"0.3"``). Values of the right type outside their range, NaN and infinities
raise :class:`~seem.errors.PromptError`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from seem.errors import PromptError, PromptTypeError

_C = TypeVar("_C")


def _show(value: Any) -> str:
    return f"{value!r:.60} ({type(value).__name__})"


def integer(value: Any, field: str) -> int:
    """``value`` as a Python ``int``; PromptTypeError unless an integer (``bool`` is not one)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise PromptTypeError(f"{field} must be an integer, got {_show(value)}")
    return int(value)


def real(value: Any, field: str) -> float:
    """``value`` as a finite Python ``float``; PromptTypeError unless a real number (``bool`` and strings are
    not), PromptError for NaN or an infinity."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise PromptTypeError(f"{field} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PromptError(f"{field} must be a finite number, got {value!r:.60}")
    return number


def number_fields(config: Any) -> None:
    """Checks every ``int`` and ``float`` field of the dataclass ``config`` (:func:`integer` / :func:`real`)
    and stores it as a Python ``int`` / ``float`` (frozen dataclasses too): a ``__post_init__`` step, before
    the range checks."""
    for f in dataclasses.fields(config):
        if f.type in ("int", int):
            object.__setattr__(config, f.name, integer(getattr(config, f.name), f.name))
        elif f.type in ("float", float):
            object.__setattr__(config, f.name, real(getattr(config, f.name), f.name))


def config_of(cls: type[_C], value: Any, field: str = "config") -> _C:
    """``value`` as a ``cls`` (a settings dataclass): ``None`` -> ``cls()``, a ``cls`` as it is, a mapping ->
    ``cls(**mapping)``.

    Raises:
        PromptTypeError: anything else. PromptError: a mapping with keys that are not fields of ``cls``
            (named), or the field checks of ``cls``.
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(repr(k) for k in value if k not in known)
        if unknown:
            raise PromptError(f"{field}: unknown field(s) {', '.join(unknown)} of {cls.__name__} "
                              f"(fields: {', '.join(known)})")
        return cls(**value)
    raise PromptTypeError(f"{field} must be {cls.__name__}(...) or a mapping of its fields, got {type(value).__name__}")
