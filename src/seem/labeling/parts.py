"""Per-image part files of ``seem label``: ``OUT/parts/NNNNNNNN.json``, one per image (its index in the job's
image list), written atomically (a temporary file in the same folder, then ``os.replace``), so a run killed at
any moment leaves only whole part files; a restarted run skips the images whose part exists.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PartStore:
    """The part files under ``root / "parts"``.

    Args:
        root: the output folder of the job.
    """

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "parts"

    def path(self, index: int) -> Path:
        return self.dir / f"{index:08d}.json"

    def done(self, index: int) -> bool:
        """Whether image ``index`` has a whole part file (an unreadable one counts as not done)."""
        path = self.path(index)
        if not path.is_file():
            return False
        try:
            self.read(index)
        except (OSError, ValueError):
            return False
        return True

    def write(self, index: int, record: dict[str, Any]) -> None:
        atomic_write_bytes(self.path(index), json.dumps(record, separators=(",", ":")).encode())

    def read(self, index: int) -> dict[str, Any]:
        with open(self.path(index), encoding="utf-8") as f:
            return json.load(f)
