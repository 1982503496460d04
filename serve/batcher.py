"""Dynamic batching inside a worker: concurrent requests' images share one inference call.

Request threads submit their prepared images and wait; one inference thread takes whatever has
arrived, up to max_batch_size images (a request is never split), waits at most max_delay_us for
more once the first request is there (0: never waits), runs the model once and hands each request
back its own rows, in order. A bounded queue sheds load: a request that would push the waiting
images past max_queue_images is refused at once with Overloaded (503 + Retry-After) instead of
waiting behind a queue that only grows.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from serve.errors import NotReady, Overloaded


class _Item:
    __slots__ = ("images", "done", "result", "error")

    def __init__(self, images: np.ndarray):
        self.images = images
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class Batcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int, max_delay_us: int,
                 max_queue_images: int, on_batch: Callable[[int, float], None] | None = None):
        """run: float32 [N, ...] -> [N, ...], called from the inference thread only.
        on_batch(images, seconds): called after each inference call (metrics)."""
        if max_batch_size < 1 or max_queue_images < 1 or max_delay_us < 0:
            raise ValueError("max_batch_size and max_queue_images must be >= 1, max_delay_us >= 0")
        self._run = run
        self.max_batch_size = max_batch_size
        self._delay_s = max_delay_us / 1e6
        self.max_queue_images = max_queue_images
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._queued_images = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._thread.start()

    @property
    def queued_images(self) -> int:
        """Images waiting for the inference thread (not those in the call running now)."""
        return self._queued_images

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """This request's probabilities (blocks until its batch has run)."""
        item = _Item(images)
        with self._cond:
            if self._closed:
                raise NotReady("the model is being replaced; retry")
            # An empty queue always takes a request, so one larger than the bound is still served.
            if self._queue and self._queued_images + len(images) > self.max_queue_images:
                raise Overloaded(f"{self._queued_images} images are waiting for inference; retry shortly")
            self._queue.append(item)
            self._queued_images += len(images)
            self._cond.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def close(self) -> None:
        """Refuse new requests, serve the ones queued, then end the inference thread (a model reload
        swaps in a new Batcher, then closes the old one)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _take(self) -> list[_Item]:
        """Block until requests wait; take them up to max_batch_size images ([] once closed and drained)."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return []
                self._cond.wait()
            if self._delay_s and self._queued_images < self.max_batch_size:
                deadline = time.monotonic() + self._delay_s
                while self._queued_images < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            taken, n = [], 0
            while self._queue and (not taken or n + len(self._queue[0].images) <= self.max_batch_size):
                item = self._queue.popleft()
                taken.append(item)
                n += len(item.images)
            self._queued_images -= n
            return taken

    def _loop(self) -> None:
        while items := self._take():
            try:
                batch = items[0].images if len(items) == 1 else np.concatenate([i.images for i in items])
                t = time.perf_counter()
                out = self._run(batch)
                if self._on_batch is not None:
                    self._on_batch(len(batch), time.perf_counter() - t)
                start = 0
                for item in items:
                    item.result = out[start:start + len(item.images)]
                    start += len(item.images)
            except BaseException as e:  # noqa: BLE001 - every waiting request gets the failure, the thread lives on
                for item in items:
                    item.error = e
            for item in items:
                item.done.set()
