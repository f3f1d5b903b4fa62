"""Test-session setup.

* Every cache (converted checkpoints, vocabulary embeddings) goes to a temporary directory, not $HOME.
* ``SEEM_REQUIRE_FIXTURE=1`` (set by ``.ci/run``) turns a missing parity fixture into a failure instead of
  skipped parity tests, so CI cannot go green without proving parity.
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("SEEM_CACHE_DIR", tempfile.mkdtemp(prefix="seem-test-cache-"))


def pytest_sessionstart(session):
    from _fixture import fixture_dir

    path = fixture_dir()
    if os.environ.get("SEEM_REQUIRE_FIXTURE") == "1" and not (path / "model.safetensors").is_file():
        raise pytest.UsageError(f"SEEM_REQUIRE_FIXTURE=1 but the parity fixture is missing at {path}")
