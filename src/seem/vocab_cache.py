"""An explicit cache of vocabulary text embeddings, keyed by vocabulary (one cache per model).

Embedding a vocabulary runs the text encoder on every class x 81 templates (official eval path), which is
by far the slowest text operation; a predictor or server asks for the same vocabulary many times.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor


class VocabularyCache:
    """``get(names) -> (C, Dp)`` L2-normalised class embeddings, computed once per vocabulary.

    Args:
        model: a :class:`seem.modeling.seem.Seem` (its text encoder and tokenizer are used).
        max_entries: least recently used vocabularies beyond this are dropped.
    """

    def __init__(self, model, max_entries: int = 16) -> None:
        self.model = model
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, ...], Tensor] = OrderedDict()

    def get(self, names: Sequence[str]) -> Tensor:
        key = tuple(names)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit
        with torch.inference_mode():
            emb = self.model.embed_vocabulary(list(key))
        self._entries[key] = emb
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return emb

    def __len__(self) -> int:
        return len(self._entries)
