"""`make soak`: a longer run than `make test` has room for (about 1-2 minutes on 2 cores).

Not collected by `make test` (the file name does not start with test_); run with
`python -m pytest tests/soak_server.py`. 20000 requests at concurrency 16 against the shipped
gunicorn config, 2 workers: three in four are real uploads (PNG, JPEG, JSON, batches), one in
four is drawn from the hostile catalog. Workers recycle on the way (MAX_REQUESTS, as in
production). Every request must get its expected answer, none may fail, and no worker's resident
memory may creep.
"""
from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from tests import hostile
from tests.conftest import free_port, gunicorn_cmd, running_server
from tests.load import outcome
from tests.procs import children, status_kb

TOTAL = 20_000
CONCURRENCY = 16


def cases():
    digit = hostile.digit()
    png, jpg = hostile.save(digit, "PNG"), hostile.save(digit.convert("RGB"), "JPEG", quality=85)
    good = [
        (png, "image/png", 200), (jpg, "image/jpeg", 200),
        (json.dumps({"image": base64.b64encode(png).decode()}).encode(), "application/json", 200),
        (json.dumps({"images": [base64.b64encode(jpg).decode()] * 4}).encode(), "application/json", 200),
    ]
    bad = [(data, "image/png", status) for data, status, _ in
           {**hostile.foreign_formats(), **hostile.broken_images(), **hostile.polyglots(), **hostile.bombs()}.values()]
    # Three good for each bad, interleaved deterministically.
    return [c for pair in zip(itertools.cycle(good), bad * 3) for c in (pair[0], pair[0], pair[0], pair[1])]


def test_soak(committed_model, tmp_path):
    mix = cases()
    port = free_port()
    (tmp_path / "prom").mkdir()
    env = {"HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "2", "THREADS": "1", "MODEL_DIR": str(committed_model),
           "MAX_REQUESTS": "5000", "MAX_REQUESTS_JITTER": "500", "ACCESS_LOG": "",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "LOG_FILE": str(tmp_path / "server.log")}
    with running_server(gunicorn_cmd(), env, port) as server:
        url = server.base_url + "/predict"
        results, wrong, lock = Counter(), [], threading.Lock()
        counter = itertools.count()
        rss: dict[int, list[int]] = {}

        def worker():
            while (i := next(counter)) < TOTAL:
                body, ctype, expected = mix[i % len(mix)]
                try:
                    got = requests.post(url, data=body, headers={"Content-Type": ctype}, timeout=60).status_code
                except requests.RequestException as e:
                    got = outcome(e)
                with lock:
                    results[got] += 1
                    if got != expected and len(wrong) < 20:
                        wrong.append((i, expected, got))
                if i % 500 == 0 and i >= 1000:  # after the one-off allocations of the first requests
                    for pid in children(server.pid):
                        try:
                            rss.setdefault(pid, []).append(status_kb(pid, "VmRSS"))
                        except (OSError, KeyError):  # recycled between the listing and the read
                            pass

        t = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            for f in [pool.submit(worker) for _ in range(CONCURRENCY)]:
                f.result(timeout=1800)
        elapsed = time.perf_counter() - t
        assert requests.get(server.base_url + "/readyz", timeout=10).status_code == 200
    log = (tmp_path / "server.log").read_text()
    recycled = log.count("Autorestarting worker")
    # A worker's first sample may be taken right after it was forked (recycled mid-run), before it
    # served anything: its baseline is the next sample, ~500 requests later, once it is warm.
    creep = {pid: (v[1] // 1024, v[-1] // 1024) for pid, v in rss.items() if len(v) >= 4}
    print(f"\nsoak: {TOTAL} requests at concurrency {CONCURRENCY} in {elapsed:.0f}s ({TOTAL / elapsed:.0f} req/s); "
          f"answers {dict(sorted(results.items(), key=str))}; workers recycled {recycled}; "
          f"RSS MB (first, last sample) per long-lived worker {creep}")
    assert wrong == [], f"unexpected answers (index, expected, got): {wrong}"
    assert not any(isinstance(k, str) or k >= 500 for k in results)
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log
    for pid, (first, last) in creep.items():
        assert last - first < 64, f"worker {pid} grew from {first} to {last} MB"
