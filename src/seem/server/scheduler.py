"""Model-call scheduling for ``seem serve``: interactive calls before bulk work, bulk work in short slices.

One CPU model thread serves every client. A click (one decoder pass, tens of milliseconds) must not wait
behind a long job: a new panoptic vocabulary embeds every name x 81 templates (256 long names took 14 s in
one call). So:

* :class:`PriorityExecutor` runs queued calls by priority (:data:`INTERACTIVE` before :data:`BULK`, first come
  first served within one priority); a call already running is never interrupted.
* Long jobs are cut into short calls that are queued one after another (:func:`embed_vocabulary_sliced`),
  so a click waits for at most one slice, not for the whole job.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import torch

INTERACTIVE = 0  # clicks, session rounds, image encoding: what a person is waiting for
BULK = 1  # panoptic / semantic / instance over a vocabulary, vocabulary embedding
VOCABULARY_SLICE = 8  # class names embedded per model call (8 x 81 template sentences)


class PriorityExecutor:
    """``workers`` long-lived threads running submitted calls, lowest ``priority`` first.

    Model calls run on these few threads rather than on the web server's many request threads (whose
    per-thread torch buffers cost memory).
    """

    def __init__(self, workers: int = 1, thread_name_prefix: str = "seem-model") -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{thread_name_prefix}-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            _, _, future, fn = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # delivered to the waiting request thread
                    future.set_exception(exc)

    def submit(self, fn: Callable[[], Any], priority: int = INTERACTIVE) -> Future:
        """Queue ``fn()``; the future holds its result or exception."""
        future: Future = Future()
        self._queue.put((int(priority), next(self._order), future, fn))
        return future

    def pending(self) -> int:
        """Calls queued and not started yet."""
        return self._queue.qsize()


def embed_vocabulary_sliced(model, names: Sequence[str], run: Callable[[Callable[[], torch.Tensor]], torch.Tensor],
                            slice_size: int = VOCABULARY_SLICE) -> torch.Tensor:
    """``(C, Dp)`` :meth:`seem.modeling.seem.Seem.embed_vocabulary` of ``names``, computed ``slice_size`` names
    per model call through ``run`` (which queues one call and waits for it). Each class embedding is the
    normalised mean over its own templates, so slices give the same embeddings as one call (to float
    rounding of different batch shapes)."""
    names = list(names)

    def one_slice(chunk: list[str]) -> Callable[[], torch.Tensor]:
        return lambda: model.embed_vocabulary(chunk)

    return torch.cat([run(one_slice(names[i:i + slice_size])) for i in range(0, len(names), slice_size)])
