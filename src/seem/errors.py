"""Exceptions raised at the API edge. Each names the problem; none leaks a torch traceback."""

from __future__ import annotations


class SeemError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(SeemError, ValueError):
    """An image could not be read or is unusable (empty, corrupt, too large, wrong shape or dtype)."""


class PromptError(SeemError, ValueError):
    """A prompt is invalid: outside the image, empty, malformed, or a text longer than the context."""


class PromptTypeError(PromptError, TypeError):
    """A prompt or setting of the wrong type (a string threshold, a float count, a set of phrases): a
    :class:`PromptError` that is also a :class:`TypeError`, so either ``except`` catches it."""


class CheckpointError(SeemError):
    """A checkpoint cannot be loaded: wrong variant (missing/unexpected keys), bad shapes, unsafe pickle."""


class ConfigError(SeemError, ValueError):
    """A configuration (official YAML or registry name) cannot be turned into a :class:`SeemConfig`."""


class MissingDependencyError(SeemError, ImportError):
    """An optional dependency is needed; the message says which ``pip install 'seem-torch[extra]'`` to run."""


def require(module: str, extra: str):
    """Import an optional module lazily, or raise :class:`MissingDependencyError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
        raise MissingDependencyError(
            f"'{module}' is required for this feature: pip install 'seem-torch[{extra}]'"
        ) from exc
