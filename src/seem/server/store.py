"""Server state: encoded images (a memory-bounded LRU keyed by content hash) and interactive sessions.

Thread-safe: every method takes the store's lock for its bookkeeping only; encoding an image and
predicting run outside it. A session additionally has its own ``lock``, held by the route for a whole
round, so two requests on the same session are serialised while different sessions run in parallel.

Memory: the image cache holds at most ``max_images`` images and about ``budget_bytes`` of feature tensors
(the image encoder's output plus the decoder's per-image cache, and the decoded RGB image); the least
recently used images go first, the newest one always stays. A session keeps a reference to its image, so
an image evicted from the cache lives on until its sessions end (sessions are bounded in number and expire
after ``ttl_s`` seconds idle): total memory <= budget + ``max_sessions`` images at worst.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def tensor_bytes(obj: Any) -> int:
    """Bytes of every distinct tensor storage / array reachable through dataclasses, lists, tuples, dicts."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            try:
                storage = x.untyped_storage()
                ptr, size = storage.data_ptr(), storage.nbytes()
            except (RuntimeError, NotImplementedError):  # tensors without a plain storage
                ptr, size = id(x), x.element_size() * x.nelement()
            if ptr not in seen:
                seen.add(ptr)
                total += size
        elif isinstance(x, np.ndarray):
            total += x.nbytes
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            stack.extend(getattr(x, f.name) for f in dataclasses.fields(x))
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    return total


@dataclass(eq=False)
class ImageEntry:
    """One uploaded image, encoded once. ``image`` is ``(H, W, 3)`` uint8 RGB (original size)."""

    image_id: str
    image: np.ndarray
    frame: Any  # seem.transforms.ImageFrame
    features: Any  # seem.modeling.seem.ImageFeatures
    nbytes: int = 0
    everything: Any = None  # segment_everything's decoder pass on this image, made by the first panoptic call

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class ImageStore:
    """LRU of :class:`ImageEntry` bounded by count and by approximate bytes (see the module docstring)."""

    def __init__(self, max_images: int = 32, budget_bytes: int = 1 << 30) -> None:
        if max_images < 1 or budget_bytes < 1:
            raise ValueError("max_images and budget_bytes must be positive")
        self.max_images = max_images
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, ImageEntry] = OrderedDict()
        self._pending: dict[str, threading.Lock] = {}  # one encoder run per content hash at a time
        self._lock = threading.Lock()
        self.encodes = 0  # how many images were encoded (tests: re-uploads must not encode again)

    def get(self, image_id: str) -> ImageEntry | None:
        with self._lock:
            entry = self._entries.get(image_id)
            if entry is not None:
                self._entries.move_to_end(image_id)
            return entry

    def add_or_get(self, key: str, make: Callable[[], ImageEntry]) -> tuple[ImageEntry, bool]:
        """The entry of ``key``, made by ``make()`` (outside the store lock) when absent.

        Returns ``(entry, created)``. Concurrent calls with the same key run ``make`` once; an exception
        of ``make`` propagates and nothing is stored.
        """
        entry = self.get(key)
        if entry is not None:
            return entry, False
        with self._lock:
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            entry = self.get(key)
            if entry is not None:
                return entry, False
            try:
                entry = make()
                entry.nbytes = entry.nbytes or tensor_bytes((entry.features, entry.image))
                with self._lock:
                    self.encodes += 1
                    self._entries[key] = entry
                    self._evict()
            finally:
                with self._lock:
                    self._pending.pop(key, None)
        return entry, True

    def _evict(self) -> None:
        while len(self._entries) > 1 and (len(self._entries) > self.max_images or self.total_bytes > self.budget_bytes):
            self._entries.popitem(last=False)

    @property
    def total_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._entries


# ------------------------------------------------------------------------------------------------ sessions
@dataclass(frozen=True)
class ObjectState:
    """The accumulated prompts of one object and its current prediction (immutable: undo shares them).

    Points are ``(x, y)`` pixels of the original image; scribbles / polygons as vertex tuples; ``masks`` holds
    the union of the ``num_masks`` mask prompts sent so far as one COCO RLE dict (decoded when predicting);
    ``reference`` a :class:`seem.prompts.ReferencePrompt`.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    scribbles: tuple[tuple[tuple[float, float], ...], ...] = ()
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    masks: tuple[dict, ...] = ()
    num_masks: int = 0
    text: str | None = None
    reference: Any = None
    memory: Any = None  # (1, h, w) low-res mask logits of the current prediction: the next round's memory
    encoded: dict | None = None  # the JSON of the mask (schemas.MaskOut fields), made once

    def prompt_types(self) -> list[str]:
        names = [("points", bool(self.points)), ("box", self.box is not None), ("scribble", bool(self.scribbles)),
                 ("polygon", bool(self.polygons)), ("mask", bool(self.masks)), ("text", self.text is not None),
                 ("reference", self.reference is not None)]
        return [n for n, present in names if present]


@dataclass(frozen=True)
class Snapshot:
    """Everything undo/redo restores: the objects and which one is current."""

    objects: tuple[ObjectState, ...] = ()
    current: int | None = None


@dataclass(eq=False)
class Session:
    """One user's interaction with one image. Mutate only while holding ``lock``."""

    session_id: str
    image: ImageEntry
    max_history: int = 100
    state: Snapshot = field(default_factory=Snapshot)
    undo_stack: list[Snapshot] = field(default_factory=list)
    redo_stack: list[Snapshot] = field(default_factory=list)
    last_used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def commit(self, state: Snapshot) -> None:
        """A new state (a prompt round): the old one becomes undoable, redo is cleared."""
        self.undo_stack.append(self.state)
        # max_history 0 means no undo; a bare [:-0] slice would delete nothing and keep every round
        del self.undo_stack[: max(0, len(self.undo_stack) - self.max_history)]
        self.redo_stack.clear()
        self.state = state

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.state)
        self.state = self.undo_stack.pop()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.state)
        self.state = self.redo_stack.pop()
        return True

    def reset(self) -> None:
        """Drop every object; undoable (undo brings them back) when there was anything to drop."""
        if self.state.objects:
            self.commit(Snapshot())

    def history_bytes(self) -> int:
        """Approximate bytes of the objects of every snapshot (memory logits, RLE strings, prompt vertices);
        an object shared by several snapshots counts once. The image itself belongs to the image store."""
        seen: set[int] = set()
        total = 0
        for snap in (*self.undo_stack, self.state, *self.redo_stack):
            for obj in snap.objects:
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                total += 256 + 16 * (len(obj.points) + sum(map(len, obj.scribbles)) + sum(map(len, obj.polygons)))
                if obj.memory is not None:
                    total += obj.memory.element_size() * obj.memory.nelement()
                total += sum(len(m.get("counts", "")) for m in obj.masks)
                if obj.encoded:
                    total += len(str(obj.encoded.get("rle", {}).get("counts", ""))) + 16 * sum(
                        len(p) for p in obj.encoded.get("polygons", []) or [])
        return total


class SessionStore:
    """Sessions by id, bounded in number (the least recently used is dropped for a new one) and
    expiring after ``ttl_s`` seconds without a request. ``clock`` is injectable for tests."""

    def __init__(self, max_sessions: int = 256, ttl_s: float = 1800.0, max_history: int = 100,
                 clock: Callable[[], float] = time.monotonic, budget_bytes: int = 512 << 20) -> None:
        if max_sessions < 1 or ttl_s <= 0 or budget_bytes < 1:
            raise ValueError("max_sessions, ttl_s and budget_bytes must be positive")
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0 (0 keeps no undo steps), got {max_history}")
        self.max_sessions, self.ttl_s, self.max_history, self.clock = max_sessions, ttl_s, max_history, clock
        self.budget_bytes = budget_bytes
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def _sweep(self, now: float) -> None:
        expired = [sid for sid, s in self._sessions.items() if now - s.last_used > self.ttl_s]
        for sid in expired:
            del self._sessions[sid]

    def create(self, image: ImageEntry) -> Session:
        with self._lock:
            now = self.clock()
            self._sweep(now)
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
            session = Session(secrets.token_urlsafe(16), image, self.max_history, last_used=now)
            self._sessions[session.session_id] = session
            return session

    def get(self, session_id: str) -> Session | None:
        """The live session (its idle timer restarts), or None when unknown or expired."""
        with self._lock:
            now = self.clock()
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_used > self.ttl_s:
                del self._sessions[session_id]
                return None
            session.last_used = now
            self._sessions.move_to_end(session_id)
            return session

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def total_bytes(self) -> int:
        """Approximate bytes of every live session's history (:meth:`Session.history_bytes`)."""
        with self._lock:
            sessions = list(self._sessions.values())
        return sum(s.history_bytes() for s in sessions)

    def enforce_budget(self, keep: Session) -> int:
        """Drop least recently used sessions (never ``keep``) while the histories exceed ``budget_bytes``;
        returns how many were dropped."""
        dropped = 0
        with self._lock:
            sizes = {sid: s.history_bytes() for sid, s in self._sessions.items()}
            total = sum(sizes.values())
            for sid in list(self._sessions):
                if total <= self.budget_bytes:
                    break
                if self._sessions[sid] is keep:
                    continue
                total -= sizes[sid]
                del self._sessions[sid]
                dropped += 1
        return dropped

    def __len__(self) -> int:
        with self._lock:
            self._sweep(self.clock())
            return len(self._sessions)
