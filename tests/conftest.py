"""Test-session setup: keep every cache (converted checkpoints, vocabulary embeddings) out of $HOME."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SEEM_CACHE_DIR", tempfile.mkdtemp(prefix="seem-test-cache-"))
