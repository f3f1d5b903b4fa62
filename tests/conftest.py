"""Test-session setup.

* Every cache (converted checkpoints, vocabulary embeddings) goes to a temporary directory, not $HOME.
* ``SEEM_REQUIRE_FIXTURE=1`` (set by ``.ci/run``) turns a missing parity fixture (any kind: Focal or SAM-ViT)
  into a failure instead of skipped parity tests, so CI cannot go green without proving parity.
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("SEEM_CACHE_DIR", tempfile.mkdtemp(prefix="seem-test-cache-"))


def pytest_sessionstart(session):
    from _fixture import KINDS, fixture_dir

    for kind in KINDS:
        path = fixture_dir(kind)
        if os.environ.get("SEEM_REQUIRE_FIXTURE") == "1" and not (path / "model.safetensors").is_file():
            raise pytest.UsageError(f"SEEM_REQUIRE_FIXTURE=1 but the {kind} parity fixture is missing at {path}")


@pytest.fixture(params=["focal", "samvit"])
def kind(request) -> str:
    """Parity-fixture kind (see ``tests/_fixture.py``): the Focal and the SAM-ViT fixture."""
    return request.param


def prompts_as_kwargs(prompts=None, memory=None, **kwargs) -> dict:
    """What a fake predictor received, as the keyword form tests read: a :class:`seem.Prompts` (one object)
    becomes ``points`` / ``point_labels`` lists of that object, ``boxes`` as a list, region fields as given."""
    if prompts is None:
        return {**kwargs, "memory": memory}
    out = {"memory": memory}
    if prompts.points is not None:
        out["points"] = prompts.points[0].tolist()
        out["point_labels"] = prompts.point_labels[0].tolist()
    if prompts.boxes is not None:
        out["boxes"] = prompts.boxes.tolist()
    for name in ("scribbles", "polygons", "masks"):
        if getattr(prompts, name) is not None:
            out[name] = list(getattr(prompts, name))
    if prompts.text is not None:
        out["text"] = prompts.text[0] if len(prompts.text) == 1 else list(prompts.text)
    return out
