"""An explicit cache of vocabulary text embeddings: in memory (LRU) and on disk.

Embedding a vocabulary runs the text encoder on every class x 81 templates (official eval path): for
COCO's 133 classes + "background" that is 10,854 sentences, minutes on a CPU for the Focal-T text
encoder. A predictor, CLI run or server asks for the same vocabulary again and again, so the result is
kept in memory and, when a directory is given, as a safetensors file keyed by a fingerprint of the text
encoder's weights, the tokenizer's templates and the class names.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor


def default_vocabulary_cache_dir() -> Path:
    """``<cache root>/seem/vocab`` (cache root: ``$SEEM_CACHE_DIR``, ``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    from seem.hub import default_cache_root

    return default_cache_root() / "seem" / "vocab"


def text_encoder_fingerprint(text_encoder: torch.nn.Module) -> str:
    """A hash of every parameter and buffer of the text encoder (names, shapes, dtypes, bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(text_encoder.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class VocabularyCache:
    """``get(names) -> (C, Dp)`` L2-normalised class embeddings, computed once per vocabulary.

    Args:
        model: a :class:`seem.modeling.seem.Seem` (its text encoder and tokenizer are used).
        directory: where to keep embeddings between processes (``None``: memory only).
        max_entries: least recently used vocabularies beyond this are dropped from memory.
    """

    def __init__(self, model, directory: str | Path | None = None, max_entries: int = 16) -> None:
        self.model = model
        self.directory = Path(directory) if directory is not None else None
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, ...], Tensor] = OrderedDict()
        self._fingerprint: str | None = None

    def _path(self, key: tuple[str, ...]) -> Path:
        if self._fingerprint is None:
            self._fingerprint = text_encoder_fingerprint(self.model.text_encoder)
        from seem.modeling.language.templates import TEMPLATES

        assert self.directory is not None  # only called for a cache with a directory
        digest = hashlib.blake2b(json.dumps([self._fingerprint, list(TEMPLATES), list(key)]).encode(), digest_size=16)
        return self.directory / f"{digest.hexdigest()}.safetensors"

    def _load(self, path: Path, n: int) -> Tensor | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            emb = load_file(str(path))["embeddings"]
        except (OSError, SafetensorError, KeyError):
            return None
        return emb if emb.ndim == 2 and emb.shape[0] == n else None

    def _store(self, path: Path, emb: Tensor) -> None:
        from safetensors.torch import save_file

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({"embeddings": emb.detach().cpu().contiguous()}, str(tmp))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache directory only costs time

    def __contains__(self, names) -> bool:
        """Whether ``names`` is in memory (a disk entry is not looked up)."""
        return tuple(names) in self._entries

    def get(self, names: Sequence[str], embed=None) -> Tensor:
        """The embeddings of ``names``; computed by ``embed(names)`` (default: the model's
        ``embed_vocabulary`` in one call) when neither memory nor disk holds them."""
        key = tuple(names)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit
        device = self.model.pixel_mean.device
        path = self._path(key) if self.directory is not None else None
        emb = self._load(path, len(key)) if path is not None and path.is_file() else None
        if emb is None:
            if embed is not None:
                emb = embed(list(key))
            else:
                with torch.inference_mode():
                    emb = self.model.embed_vocabulary(list(key))
            if path is not None:
                self._store(path, emb)
        emb = emb.to(device)
        self._entries[key] = emb
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return emb

    def __len__(self) -> int:
        return len(self._entries)
