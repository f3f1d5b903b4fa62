"""Shared state of the server: the predictor (views only), the stores, locks and limits.

Thread safety: the shared :class:`seem.SeemPredictor` is never given an image; each request uses a view
(:meth:`SeemPredictor.with_image`) on a cached encoding, with the vocabulary cache behind a lock. Uploads
are decoded under ``decode_lock`` (``seem.io.load_image`` uses the process-global ``warnings`` filters).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading

import torch
from fastapi import HTTPException

from seem import io as seem_io
from seem.prompts import ReferencePrompt
from seem.server import convert
from seem.server.scheduler import BULK, INTERACTIVE, PriorityExecutor
from seem.server.store import ImageEntry, ImageStore, Session, SessionStore


class LockedVocabularies:
    """Vocabulary embeddings behind a lock (the caches are plain LRU dicts). The predictor's own vocabulary
    comes from its cache (memory + disk); vocabularies sent by clients go to a memory-only LRU, so requests
    can never add files to the disk cache."""

    def __init__(self, cache, default: tuple[str, ...] = (), max_entries: int = 16) -> None:
        from seem.vocab_cache import VocabularyCache

        self._cache, self._default, self._lock = cache, tuple(default), threading.Lock()
        self._requests = VocabularyCache(cache.model, directory=None, max_entries=max_entries)

    def get(self, names):
        with self._lock:
            return (self._cache if tuple(names) == self._default else self._requests).get(names)

    def prepare(self, names, embed) -> None:
        """Make sure a client vocabulary is cached, computing it with ``embed(names)`` *outside* the lock (in
        short model calls, :func:`seem.server.scheduler.embed_vocabulary_sliced`), so that other requests
        keep being served meanwhile. The predictor's own vocabulary is left to its cache."""
        key = tuple(names)
        with self._lock:
            if key == self._default or key in self._requests:
                return
        emb = embed(list(key))
        with self._lock:
            self._requests.get(key, embed=lambda _: emb)

    def __len__(self) -> int:
        return len(self._cache)

    def request_entries(self) -> int:
        """Client vocabularies held in memory."""
        with self._lock:
            return len(self._requests)


@dataclasses.dataclass
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024  # encoded file, after base64 decoding
    max_pixels: int = seem_io.DEFAULT_MAX_PIXELS


class ServerState:
    """What the routes share: the predictor, the image and session stores, locks and limits."""

    def __init__(self, predictor, images: ImageStore, sessions: SessionStore, limits: Limits, model_name: str,
                 max_concurrent_inference: int = 1) -> None:
        if max_concurrent_inference < 1:
            raise ValueError(f"max_concurrent_inference must be >= 1, got {max_concurrent_inference}")
        self.predictor, self.images, self.sessions, self.limits = predictor, images, sessions, limits
        self.model_name = model_name
        self.vocabularies = LockedVocabularies(predictor.vocabularies, tuple(predictor.vocabulary) + ("background",))
        self.decode_lock = threading.Lock()
        # model calls run on a few long-lived worker threads rather than on uvicorn's many request threads (whose
        # per-thread torch buffers cost memory: 50-session load test peak RSS 1.75 -> 1.27 GB)
        # queued calls run interactive first (seem.server.scheduler)
        self._workers = PriorityExecutor(max_concurrent_inference, thread_name_prefix="seem-model")

    def _run(self, priority: int, fn, args, kwargs):
        def run():
            with torch.inference_mode():
                return fn(*args, **kwargs)

        return self._workers.submit(run, priority).result()

    def compute(self, fn, *args, **kwargs):
        """Run the model call ``fn(*args, **kwargs)`` on one of the ``max_concurrent_inference`` model threads,
        in inference mode, and return its result (exceptions propagate); other calls wait their turn, and
        interactive calls (this one) go before queued bulk calls."""
        return self._run(INTERACTIVE, fn, args, kwargs)

    def compute_bulk(self, fn, *args, **kwargs):
        """As :meth:`compute`, queued behind every interactive call (panoptic, vocabulary slices)."""
        return self._run(BULK, fn, args, kwargs)

    def view(self, entry: ImageEntry):
        """A per-request predictor on ``entry`` (shares the model; thread-safe vocabulary cache)."""
        view = self.predictor.with_image(entry.frame, entry.features, entry.image)
        view.vocabularies = self.vocabularies
        return view

    def image(self, image_id: str) -> ImageEntry:
        entry = self.images.get(image_id)
        if entry is None:
            raise HTTPException(404, f"image_id {image_id[:80]!r}: unknown image (never uploaded, or evicted from "
                                     "the cache); upload it again with POST /v1/images")
        return entry

    def session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise HTTPException(404, f"session_id {session_id[:80]!r}: unknown or expired session; "
                                     "create one with POST /v1/sessions")
        return session

    def add_image(self, data: bytes) -> tuple[ImageEntry, bool]:
        """Decode (under the decode lock), encode once, cache by sha256 of the bytes."""
        if len(data) > self.limits.max_upload_bytes:
            raise HTTPException(413, f"file: upload is {len(data):,} bytes, more than the "
                                     f"{self.limits.max_upload_bytes:,}-byte limit")

        key = hashlib.sha256(data).hexdigest()

        def make() -> ImageEntry:
            with self.decode_lock:
                img = seem_io.load_image(data, max_pixels=self.limits.max_pixels)
            frame, features = self.compute(self.predictor.encode, img)
            return ImageEntry(key, img, frame, features)

        return self.images.add_or_get(key, make)

    def reference(self, ref, field: str) -> ReferencePrompt:
        """Prompt tokens of a region of another uploaded image, sampled on its cached features (as
        :meth:`SeemPredictor.encode_reference`, without encoding the image again)."""
        entry = self.image(ref.image_id)
        if ref.mask is not None:
            region = convert.decode_rle(ref.mask, (entry.height, entry.width), f"{field}.mask")
        else:
            region = convert.polygon_mask(ref.polygon, entry, f"{field}.polygon")
        return self.compute(self.view(entry).reference_from_current, region[None])
