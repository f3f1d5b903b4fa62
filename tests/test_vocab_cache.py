"""Vocabulary embeddings are computed once, persisted, and invalidated when the text encoder changes."""

from __future__ import annotations

import torch

from seem.vocab_cache import VocabularyCache, text_encoder_fingerprint

from _fixture import require_fixture
from _parity import fixture_model


def test_disk_cache_round_trip_and_invalidation(tmp_path, monkeypatch):
    require_fixture()
    model = fixture_model()
    names = ["zebra", "grass", "background"]
    first = VocabularyCache(model, directory=tmp_path)
    emb = first.get(names)
    assert emb.shape == (3, model.config.text.dim_proj)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1

    second = VocabularyCache(model, directory=tmp_path)
    monkeypatch.setattr(model, "embed_vocabulary", lambda *_: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert torch.equal(second.get(names), emb)  # served from disk, not recomputed
    assert second.get(names) is second.get(names)  # and from memory afterwards
    monkeypatch.undo()

    fp = text_encoder_fingerprint(model.text_encoder)
    with torch.no_grad():
        model.text_encoder.logit_scale.add_(1.0)
    try:
        assert text_encoder_fingerprint(model.text_encoder) != fp
        VocabularyCache(model, directory=tmp_path).get(names)
        assert len(list(tmp_path.glob("*.safetensors"))) == 2
    finally:
        with torch.no_grad():
            model.text_encoder.logit_scale.sub_(1.0)


def test_corrupt_cache_file_is_recomputed(tmp_path):
    require_fixture()
    model = fixture_model()
    cache = VocabularyCache(model, directory=tmp_path)
    emb = cache.get(["sky"])
    path = next(tmp_path.glob("*.safetensors"))
    path.write_bytes(b"not a safetensors file")
    again = VocabularyCache(model, directory=tmp_path).get(["sky"])
    assert torch.allclose(again, emb)
