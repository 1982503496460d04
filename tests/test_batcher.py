"""Dynamic batching: concurrent requests share inference calls, every answer goes back to its own
request in order, per-image errors keep their index, and a full queue sheds load with 503 + Retry-After."""
from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serve.batcher import Batcher
from serve.errors import Overloaded
from tests.images import as_upload, encode


class Recorder:
    """A stand-in model for the routing tests: row i of the answer is f(row i of the input), and it
    records the size of each call it gets. slow_s holds each call so that others queue behind it."""

    def __init__(self, slow_s: float = 0.0):
        self.sizes: list[int] = []
        self.slow_s = slow_s

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        time.sleep(self.slow_s)
        return batch.reshape(len(batch), -1)[:, :2] * 2.0 + 1.0


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def request_images(tag: int, n: int) -> np.ndarray:
    """n distinct images carrying the request's tag and their index."""
    x = np.zeros((n, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = tag
    x[:, 0, 0, 1] = np.arange(n)
    return x


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows_in_order():
    model = Recorder(slow_s=0.01)
    batcher = Batcher(model, max_batch_size=16, max_delay_us=2000, max_queue_images=1000)

    def call(tag):
        n = 1 + tag % 5
        out = batcher(request_images(tag, n))
        return tag, n, out

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(call, range(120)))
    for tag, n, out in results:
        assert out.shape == (n, 2)
        assert np.array_equal(out[:, 0], np.full(n, tag * 2.0 + 1.0)), "rows of another request"
        assert np.array_equal(out[:, 1], np.arange(n) * 2.0 + 1.0), "rows out of order"
    assert sum(model.sizes) == sum(n for _, n, _ in results)
    assert max(model.sizes) <= 16, "no call above max_batch_size"
    assert len(model.sizes) < len(results) / 2, "concurrent requests were not batched together"


def test_a_request_larger_than_the_batch_is_run_whole_and_never_split():
    model = Recorder()
    batcher = Batcher(model, max_batch_size=4, max_delay_us=0, max_queue_images=100)
    out = batcher(request_images(7, 10))
    assert out.shape == (10, 2) and model.sizes == [10]


def test_without_a_delay_a_lone_request_does_not_wait():
    model = Recorder()
    batcher = Batcher(model, max_batch_size=64, max_delay_us=0, max_queue_images=100)
    for tag in range(5):
        batcher(request_images(tag, 1))
    assert model.sizes == [1] * 5


def test_an_inference_failure_reaches_every_request_of_that_batch_and_the_thread_lives_on():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("engine failed")
        return batch.reshape(len(batch), -1)

    batcher = Batcher(flaky, max_batch_size=8, max_delay_us=0, max_queue_images=100)
    with pytest.raises(RuntimeError, match="engine failed"):
        batcher(request_images(1, 2))
    assert batcher(request_images(2, 3)).shape == (3, 4)


def test_close_serves_what_is_queued_then_refuses_and_ends_its_thread():
    from serve.errors import NotReady

    model = Recorder(slow_s=0.05)
    batcher = Batcher(model, max_batch_size=1, max_delay_us=0, max_queue_images=100)
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = [pool.submit(batcher, request_images(t, 1)) for t in range(4)]
        wait_until(lambda: batcher.queued_images + len(model.sizes) == 4)  # all four in
        batcher.close()
        assert [f.result(timeout=30)[0, 0] for f in pending] == [t * 2.0 + 1.0 for t in range(4)]
    assert not batcher._thread.is_alive()
    with pytest.raises(NotReady):
        batcher(request_images(9, 1))


def test_a_full_queue_sheds_load_at_once():
    started, release = threading.Event(), threading.Event()

    def blocked(batch):
        started.set()
        release.wait(30)
        return batch.reshape(len(batch), -1)

    batcher = Batcher(blocked, max_batch_size=2, max_delay_us=0, max_queue_images=3)
    pool = ThreadPoolExecutor(max_workers=4)
    try:
        running = pool.submit(batcher, request_images(0, 2))  # taken by the inference thread, which blocks
        assert started.wait(30)
        queued = [pool.submit(batcher, request_images(1, 2)), pool.submit(batcher, request_images(2, 1))]
        wait_until(lambda: batcher.queued_images == 3)
        with pytest.raises(Overloaded) as err:
            batcher(request_images(3, 1))  # 3 images wait already: refused, not queued
        assert batcher.queued_images == 3
        assert err.value.status == 503 and err.value.headers()["Retry-After"].isdigit()
        release.set()
        assert [f.result(timeout=10).shape[0] for f in (running, *queued)] == [2, 2, 1]
    finally:
        release.set()
        pool.shutdown()


@pytest.fixture(scope="module")
def batched_app(committed_model):
    from serve.app import create_app

    return create_app({"model_dir": str(committed_model), "batching": True, "max_batch_size": 64, "max_queue_delay_us": 2000})


def test_the_real_model_batched_across_concurrent_http_requests_answers_each_as_alone(batched_app, committed_model, mnist_dir):
    from train.mnist import load_split

    from serve.app import create_app

    test = load_split(mnist_dir, "test")
    pngs = [encode(as_upload(test.images[i])) for i in range(24)]
    alone = create_app({"model_dir": str(committed_model), "batching": False}).test_client()
    want = [alone.post("/predict", data=p, content_type="image/png").json["probabilities"] for p in pngs]
    blank = encode(np.full((60, 60), 255, np.uint8))

    def call(i):
        client = batched_app.test_client()
        if i % 4 == 3:  # a batch with a blank page at position i % 3: its index comes back
            bad = i % 3
            files = [(pngs[i], "a.png"), (pngs[i - 1], "b.png")]
            files.insert(bad, (blank, "blank.png"))
            r = client.post("/predict", data={"images": [(io.BytesIO(d), n) for d, n in files]})
            return i, r.status_code, r.json["error"]["message"].startswith(f"images[{bad}]")
        if i % 4 == 2:
            r = client.post("/predict", data={"images": [(io.BytesIO(pngs[i]), "a.png"),
                                                         (io.BytesIO(pngs[i - 1]), "b.png")]})
            got = [p["probabilities"] for p in r.json["predictions"]]
            return i, r.status_code, np.allclose(got, [want[i], want[i - 1]], atol=1e-5)
        r = client.post("/predict", data=pngs[i], content_type="image/png")
        return i, r.status_code, np.allclose(r.json["probabilities"], want[i], atol=1e-5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(len(pngs))))
    for i, status, ok in results:
        assert status == (422 if i % 4 == 3 else 200), (i, status)
        assert ok, f"request {i}: not its own answer (or the wrong image index)"


def test_overload_is_503_with_retry_after_on_both_protocols(batched_app, committed_model):
    """The queue is full (its one slot held by a blocked batch): /predict and /v2 answer 503 + Retry-After."""
    service = batched_app.extensions["digits"]
    model = service.model
    started, release = threading.Event(), threading.Event()
    own = Batcher(lambda b: (started.set(), release.wait(30), service.predictor()(b))[2], max_batch_size=1, max_delay_us=0,
                  max_queue_images=1)
    saved, model.batcher = model.batcher, own
    png = encode(np.pad(np.full((40, 10), 0, np.uint8), 40, constant_values=255))
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        first = pool.submit(own, np.zeros((1, 1, 28, 28), np.float32))  # held in inference
        assert started.wait(30)
        second = pool.submit(own, np.zeros((1, 1, 28, 28), np.float32))  # fills the queue
        wait_until(lambda: own.queued_images == 1)
        client = batched_app.test_client()
        r = client.post("/predict", data=png, content_type="image/png")
        assert r.status_code == 503 and r.json["error"]["code"] == "overloaded" and r.headers["Retry-After"] == "1"
        name = service.manifest["name"]
        tensor = {"name": service.manifest["input"]["name"], "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
        r = client.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        release.set()
        assert first.result(timeout=10).shape == (1, 10) and second.result(timeout=10).shape == (1, 10)
    finally:
        release.set()
        model.batcher = saved
        pool.shutdown()
