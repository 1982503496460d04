"""Bounded load against a loopback server: every request's outcome is recorded, none is retried."""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests


def outcome(exc: BaseException) -> str:
    """What a client saw when a request failed: refused, reset, timeout or other."""
    text = repr(exc)
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError) or "Connection refused" in repr(exc):
            return "refused"
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or "RemoteDisconnected" in repr(exc) \
                or "Connection reset" in repr(exc) or "Connection aborted" in repr(exc):
            return "reset"
        exc = exc.__cause__ or exc.__context__ or (exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None)
    return "timeout" if "timed out" in text.lower() or "Timeout" in text else f"other: {text[:200]}"


class Load:
    """`total` POSTs of one body from `concurrency` threads; counts status codes and failures."""

    def __init__(self, url: str, body: bytes, content_type: str = "image/png", total: int = 200,
                 concurrency: int = 8, timeout: float = 60.0, pause_after_failure: float = 0.0, keep=None):
        self.url, self.body, self.content_type = url, body, content_type
        self.keep = keep  # keep(response) -> a value recorded with the time of each 200 answer, in self.kept
        self.total, self.concurrency, self.timeout = total, concurrency, timeout
        self.pause_after_failure = pause_after_failure  # a client that backs off, rather than spinning on refusals
        self.results: Counter = Counter()
        self.latencies: list[float] = []
        self.kept: list[tuple[float, object]] = []
        self.started = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _one(self) -> None:
        t = time.perf_counter()
        try:
            r = requests.post(self.url, data=self.body, headers={"Content-Type": self.content_type}, timeout=self.timeout)
            key = r.status_code
        except requests.RequestException as e:
            key = outcome(e)
            time.sleep(self.pause_after_failure)
        with self._lock:
            self.results[key] += 1
            if key == 200:
                self.latencies.append(time.perf_counter() - t)
                if self.keep is not None:
                    self.kept.append((time.monotonic(), self.keep(r)))

    def _worker(self) -> None:
        while True:
            with self._lock:
                if self.started >= self.total:
                    return
                self.started += 1
            self._one()

    def start(self) -> "Load":
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        self._futures = [self._pool.submit(self._worker) for _ in range(self.concurrency)]
        return self

    def stop(self) -> None:
        """No new requests from now on (those in flight finish)."""
        with self._lock:
            self.total = self.started

    def done(self) -> int:
        with self._lock:
            return sum(self.results.values())

    def wait(self, timeout: float = 300) -> Counter:
        deadline = time.monotonic() + timeout
        for f in self._futures:
            f.result(timeout=max(0.1, deadline - time.monotonic()))
        self._pool.shutdown()
        return self.results

    @property
    def failures(self) -> int:
        return sum(n for k, n in self.results.items() if k != 200)

    def percentile(self, q: float) -> float:
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")
