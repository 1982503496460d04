"""Slow clients ("slowloris"): connections that send a request's headers, then trickle its body.

Each one announces a body of `body_bytes` and sends one byte every `interval_s`, so it would
take minutes to finish: a server that gives each connection a worker (or a thread it needs for
others) until the body is in is starved by a few dozen of them. Loopback only, bounded: the
trickle stops when the context exits.
"""
from __future__ import annotations

import socket
import threading


class SlowClients:
    def __init__(self, port: int, count: int = 64, *, path: str = "/predict", body_bytes: int = 100_000,
                 interval_s: float = 0.5, host: str = "127.0.0.1"):
        self.port, self.count, self.path, self.body_bytes, self.interval_s, self.host = port, count, path, body_bytes, interval_s, host
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)
        self.sent = 0  # trickled bytes that the server accepted: the connections were held open
        self.closed_by_server = 0

    def __enter__(self) -> "SlowClients":
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: multipart/form-data; boundary=slow\r\nContent-Length: {self.body_bytes}\r\n\r\n").encode()
        for _ in range(self.count):
            s = socket.create_connection((self.host, self.port), timeout=5)
            s.sendall(head + b"--slow\r\n")
            self._socks.append(s)
        self._thread.start()
        return self

    def _trickle(self) -> None:
        while not self._stop.wait(self.interval_s):
            for s in self._socks:
                if s.fileno() < 0:
                    continue
                try:
                    s.send(b"x")
                    self.sent += 1
                except OSError:  # the server hung up on it: a bounded slow client
                    self.closed_by_server += 1
                    s.close()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for s in self._socks:
            s.close()
