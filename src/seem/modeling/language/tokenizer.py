"""CLIP byte-level BPE tokenizer, id-for-id equal to what the official SEEM code feeds its text encoder.

The official code (``modeling/language/LangEncoder/build.py::build_tokenizer``, ``TOKENIZER: clip``) uses
Hugging Face's slow ``CLIPTokenizer`` for ``openai/clip-vit-base-patch32`` and always calls it as
``tokenizer(texts, padding='max_length', truncation=True, max_length=77)``. This module re-implements that
call from the CLIP BPE vocabulary shipped as package data (``seem/assets/bpe_simple_vocab_16e6.txt.gz``,
MIT, see ``CLIP_BPE_LICENSE.txt``); it needs only ``ftfy`` and ``regex``, never the network.

What the HF call does, and therefore what :meth:`ClipTokenizer.encode` does:

1. The literal strings ``<|startoftext|>`` / ``<|endoftext|>`` (case-sensitive) are split out of the raw
   text first and become the special ids 49406 / 49407 (HF's added-token trie). The attention mask still
   covers the whole text, and the encoder then reads the sentence embedding at that first EOT, exactly
   as the official code would.
2. Every other piece is cleaned as HF does when ``ftfy`` is installed: ``ftfy.fix_text`` (mojibake,
   ligatures, full-width forms, curly quotes, HTML entities as ftfy decodes them), every run of
   whitespace -> one space, strip, lower-case. (open_clip's ``SimpleTokenizer`` adds a double
   ``html.unescape``, HF does not; this module follows HF.)
3. Pre-tokenisation with CLIP's regex, each piece mapped byte-wise to printable unicode (GPT-2 table),
   then BPE with the 48,894 ranked merges; the last symbol of a word carries ``</w>``.
4. ``[49406] + ids + [49407]``, padded on the right with 49407 to ``context_length``; the attention mask is
   1 on ``sot .. eot`` and 0 on the padding. Over-long texts: the official code silently truncates (keeps
   sot, the first ``context_length - 2`` tokens, eot); here that needs ``truncate=True``, otherwise
   :class:`seem.errors.PromptError` is raised.

Because EOT (49407) is the largest id, ``input_ids.argmax(-1)`` is the position of the first EOT: the
official sentence embedding is read there (see :mod:`seem.modeling.language.text_encoder`).
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seem.errors import PromptError

SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
SOT_ID = 49406  # id of <|startoftext|> in the CLIP vocabulary
EOT_ID = 49407  # id of <|endoftext|>; also HF's pad and unk token
VOCAB_SIZE = 49408  # 256 bytes + 256 bytes</w> + 48,894 merges + 2 special tokens
_NUM_MERGES = 49152 - 256 - 2  # merges used by CLIP: lines 1 .. 48,894 of the BPE file
_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP's pre-tokenisation pattern (identical in OpenAI CLIP, open_clip and HF CLIPTokenizer).
_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)
_BPE_CACHE_LIMIT = 100_000  # words memoised per tokenizer instance before the memo is cleared


@dataclass(frozen=True)
class TokenizedText:
    """A padded batch of token ids, as the official HF ``CLIPTokenizer`` call returns it.

    Attributes:
        input_ids: (B, L) int64, ``[49406, tokens..., 49407, 49407 (padding)...]``, L = context length.
        attention_mask: (B, L) int64, 1 on ``sot .. eot`` (the real tokens), 0 on padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) int64: number of real tokens per text, start and end tokens included."""
        return self.attention_mask.sum(dim=-1)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP table mapping each of the 256 byte values to a printable unicode character.

    Printable Latin-1 bytes map to themselves; the others are shifted to code points 256 and up. The
    insertion order (printable bytes first) fixes the ids of the first 256 vocabulary entries.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    byte_values = printable[:]
    code_points = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            byte_values.append(byte)
            code_points.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(byte_values, code_points)}


@functools.lru_cache(maxsize=1)
def _load_vocabulary() -> tuple[dict[str, int], dict[tuple[str, ...], int]]:
    """Read the packaged BPE file once: (token -> id, merge pair -> rank). Called lazily on first use."""
    resource = importlib.resources.files("seem").joinpath("assets").joinpath(_VOCAB_FILE)
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        lines = text.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]  # line 0 is a version header
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
    if len(vocab) != VOCAB_SIZE:  # pragma: no cover - guards a corrupted package
        raise RuntimeError(f"{_VOCAB_FILE}: expected {VOCAB_SIZE} tokens, read {len(vocab)}")
    encoder = {token: i for i, token in enumerate(vocab)}
    ranks = {pair: i for i, pair in enumerate(merges)}
    return encoder, ranks


@functools.lru_cache(maxsize=1)
def _load_decoder() -> dict[int, str]:
    """id -> token, built on the first :meth:`ClipTokenizer.decode`."""
    return {i: token for token, i in _load_vocabulary()[0].items()}


class ClipTokenizer:
    """CLIP BPE tokenizer matching the official SEEM tokenizer call (HF ``CLIPTokenizer``, see module doc).

    Cheap to construct: the vocabulary is read from package data on the first :meth:`encode` and shared by
    all instances; each instance memoises the BPE of the words it has seen.
    """

    def __init__(self) -> None:
        self._bpe_memo: dict[str, tuple[str, ...]] = {SOT_TOKEN: (SOT_TOKEN,), EOT_TOKEN: (EOT_TOKEN,)}
        self._byte_encoder = bytes_to_unicode()
        # compiled 'regex' patterns (that package ships no type information), built on first use
        self._pattern: Any | None = None
        self._special_split: Any | None = None

    # -- public API -----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """49408 (the text encoder's ``token_embedding`` rows)."""
        return VOCAB_SIZE

    @property
    def sot_token_id(self) -> int:
        return SOT_ID

    @property
    def eot_token_id(self) -> int:
        return EOT_ID

    def tokenize(self, text: str) -> list[int]:
        """BPE ids of one text, **without** start/end tokens ("a photo of a dog." -> [320, 1125, 539, 320, 1929, 269])."""
        pattern, special_split = self._ensure_loaded()
        encoder, _ = _load_vocabulary()
        ids: list[int] = []
        # HF splits the raw text on its added special tokens before any cleaning (case-sensitive).
        for piece in special_split.split(text):
            if piece in (SOT_TOKEN, EOT_TOKEN):
                ids.append(encoder[piece])
            elif piece:
                for word in pattern.findall(_clean(piece)):
                    mapped = "".join(self._byte_encoder[b] for b in word.encode("utf-8"))
                    ids.extend(encoder[symbol] for symbol in self._bpe(mapped))
        return ids

    def encode(self, texts: Sequence[str], context_length: int = 77, truncate: bool = False) -> TokenizedText:
        """Tokenise a batch of texts to fixed-length id rows, like ``CLIPTokenizer(texts, padding='max_length',
        truncation=True, max_length=context_length)`` in the official code.

        Args:
            texts: B strings (a bare ``str`` is rejected: wrap it in a list).
            context_length: L, the text encoder's context (77 for every SEEM model).
            truncate: if True, a text longer than L tokens (with sot/eot) is cut as HF does: sot, its first
                L - 2 tokens, eot. If False such a text raises :class:`PromptError`.

        Returns:
            :class:`TokenizedText` with ``input_ids`` (B, L) int64 and ``attention_mask`` (B, L) int64 (CPU).
        """
        if isinstance(texts, str):
            raise PromptError("encode() takes a sequence of texts, got a single str; wrap it in a list")
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 (start and end tokens), got {context_length}")
        rows: list[list[int]] = []
        masks: list[list[int]] = []
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise PromptError(f"text {row} must be a str, got {type(text).__name__}")
            ids = self.tokenize(text)
            if len(ids) + 2 > context_length:
                if not truncate:
                    shown = text if len(text) <= 60 else text[:57] + "..."
                    raise PromptError(
                        f"text {row} ({shown!r}) has {len(ids) + 2} tokens including the start and end tokens, "
                        f"more than the text encoder's context length of {context_length}; shorten the text"
                    )
                ids = ids[: context_length - 2]
            padding = context_length - len(ids) - 2
            rows.append([SOT_ID, *ids, EOT_ID] + [EOT_ID] * padding)
            masks.append([1] * (len(ids) + 2) + [0] * padding)
        shape = (len(texts), context_length)
        return TokenizedText(
            input_ids=torch.tensor(rows, dtype=torch.int64).reshape(shape),
            attention_mask=torch.tensor(masks, dtype=torch.int64).reshape(shape),
        )

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (as HF ``convert_tokens_to_string``): lower-cased, single-spaced; for debugging.

        Special tokens come back as their literal strings.
        """
        decoder = _load_decoder()
        byte_decoder = {c: b for b, c in self._byte_encoder.items()}
        symbols = "".join(decoder[int(i)] for i in ids)  # special tokens are printable ASCII: map to themselves
        text = bytearray(byte_decoder[c] for c in symbols).decode("utf-8", errors="replace")
        return text.replace("</w>", " ").strip()

    # -- internals ------------------------------------------------------------------------------------
    def _ensure_loaded(self) -> tuple[Any, Any]:
        """The pre-tokenizer pattern and the special-token splitter, compiled on the first call."""
        if self._pattern is None or self._special_split is None:
            import regex  # third-party 'regex': needed for \p{L} / \p{N}

            self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
            self._special_split = regex.compile(f"({regex.escape(SOT_TOKEN)}|{regex.escape(EOT_TOKEN)})")
        return self._pattern, self._special_split

    def _bpe(self, word: str) -> tuple[str, ...]:
        """Merge the byte symbols of one pre-token by ascending merge rank (CLIP's BPE); memoised."""
        cached = self._bpe_memo.get(word)
        if cached is not None:
            return cached
        _, ranks = _load_vocabulary()
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = set(zip(symbols[:-1], symbols[1:]))
            best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
            if best not in ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(symbols):  # merge every non-overlapping occurrence of `best`, left to right
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        result = tuple(symbols)
        if len(self._bpe_memo) >= _BPE_CACHE_LIMIT:
            self._bpe_memo = {SOT_TOKEN: (SOT_TOKEN,), EOT_TOKEN: (EOT_TOKEN,)}
        self._bpe_memo[word] = result
        return result


def _clean(text: str) -> str:
    """HF ``CLIPTokenizer`` cleaning: ``ftfy.fix_text``, collapse whitespace runs to one space, strip, lower."""
    import ftfy
    import regex

    return regex.sub(r"\s+", " ", ftfy.fix_text(text)).strip().lower()
