"""A real gunicorn server (the shipped config, 2 sync workers) under bad input, bombs, oversized
bodies, oversized request lines and headers, and a bounded load run: every answer is the
documented one, no worker dies, memory stays bounded, and nothing fails under load."""
from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests

from tests import hostile
from tests.conftest import free_port, gunicorn_cmd, running_server
from tests.load import Load
from tests.procs import children, status_kb

MAX_UPLOAD = 10 * 1024 * 1024  # serve/config.py defaults: the server below runs with them
MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def server(committed_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening")
    (tmp / "prom").mkdir()
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "2", "THREADS": "1", "MODEL_DIR": str(committed_model),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"), "LOG_FILE": str(tmp / "server.log"), "ACCESS_LOG": "-"}
    with running_server(gunicorn_cmd(), env, port) as proc:
        proc.workers = children(proc.pid)
        proc.log_path = tmp / "server.log"
        assert len(proc.workers) == 2
        yield proc


@pytest.fixture()
def survived(server):
    """After the test: the same two workers (none crashed or was replaced), ready, no traceback logged."""
    yield
    assert children(server.pid) == server.workers, "a worker died or was replaced"
    assert requests.get(server.base_url + "/readyz", timeout=5).status_code == 200
    log = server.log_path.read_text()
    assert "Traceback" not in log and "unhandled error" not in log and "WORKER TIMEOUT" not in log


def post(server, data, content_type="image/png", **kwargs):
    return requests.post(server.base_url + "/predict", data=data, headers={"Content-Type": content_type, **kwargs.pop("headers", {})},
                         timeout=60, **kwargs)


def assert_json_error(resp, status, codes=None):
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["Content-Type"] == "application/json"
    error = resp.json()["error"]
    assert error["message"] and (codes is None or error["code"] in codes), error


CATALOG = {**hostile.foreign_formats(), **hostile.broken_images(), **hostile.polyglots(), **hostile.bombs(MAX_PIXELS)}


def test_the_hostile_catalog_through_gunicorn(server, survived):
    slowest = 0.0
    for name, (data, status, code) in CATALOG.items():
        t = time.perf_counter()
        resp = post(server, data)
        slowest = max(slowest, time.perf_counter() - t)
        if status == 200:
            assert resp.status_code == 200 and resp.json()["digit"] == 7, name
        else:
            assert_json_error(resp, status, {code})
    for name, (data, allowed) in hostile.tolerated().items():
        assert post(server, data).status_code in allowed, name
    print(f"\n{len(CATALOG)} hostile uploads, slowest answer {slowest * 1000:.0f} ms")
    assert slowest < 5.0


def worker_peaks(server) -> dict[int, int]:
    return {pid: status_kb(pid, "VmHWM") for pid in server.workers}


def warm_up(server) -> None:
    """Concurrent real predictions, so that both workers have made their one-off allocations."""
    png = hostile.save(hostile.digit(), "PNG")
    assert Load(server.base_url + "/predict", png, total=64, concurrency=8).start().wait(timeout=120) == {200: 64}


def test_bombs_are_refused_before_decoding_and_memory_stays_bounded(server, survived):
    warm_up(server)
    before = worker_peaks(server)
    bombs = hostile.bombs(MAX_PIXELS)
    for _ in range(3):  # each bomb three times: both workers see some
        for name, (data, status, code) in bombs.items():
            assert_json_error(post(server, data), status, {code})
            as_json = json.dumps({"image": base64.b64encode(data).decode()})
            assert_json_error(post(server, as_json, "application/json"), status, {code})
    after = worker_peaks(server)
    growth_mb = max(after[p] - before[p] for p in before) / 1024
    print(f"\npeak RSS per worker before the bombs {[round(v / 1024) for v in before.values()]} MB, "
          f"after {[round(v / 1024) for v in after.values()]} MB: growth {growth_mb:.1f} MB "
          f"(the bombs would decode to up to {65535 * 65535 / 2**30:.0f} GiB)")
    assert growth_mb < 32, "a bomb was decoded"


def test_the_largest_accepted_image_costs_a_bounded_amount_of_memory(server, survived):
    """Inside the limits the worst case is a transparent RGBA canvas at the pixel limit: it must be
    decoded, so it costs memory in proportion to MAX_PIXELS (docs/security.md gives the figure)."""
    canvas = hostile.within_limit_canvas(MAX_PIXELS)
    warm_up(server)
    before = worker_peaks(server)
    for _ in range(2):  # so that each worker has most likely taken one
        resp = post(server, canvas)
        assert resp.status_code in (200, 422), resp.text[:200]
    after = worker_peaks(server)
    growth_mb = max(after[p] - before[p] for p in before) / 1024
    per_pixel = growth_mb * 2**20 / (MAX_PIXELS * 0.95)
    print(f"\n{len(canvas) // 1024} KB RGBA PNG of {MAX_PIXELS * 0.95 / 1e6:.0f} Mpx: worker peak RSS "
          f"{[round(v / 1024) for v in before.values()]} -> {[round(v / 1024) for v in after.values()]} MB, "
          f"growth {growth_mb:.0f} MB = {per_pixel:.1f} bytes per pixel")
    assert per_pixel < 14, "the worst accepted upload costs more than documented"


def chunked(head: bytes, filler: bytes, total: int, tail: bytes = b""):
    """A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length."""
    yield head
    sent = len(head)
    while sent < total:
        piece = filler * min(65536 // len(filler), (total - sent) // len(filler) + 1)
        yield piece
        sent += len(piece)
    yield tail


def test_bodies_over_the_limit_are_413_with_or_without_content_length(server, survived):
    png = hostile.save(hostile.digit(), "PNG")
    over = MAX_UPLOAD + 1024
    # With a Content-Length: refused from the header.
    assert_json_error(post(server, png + bytes(over - len(png))), 413)
    assert_json_error(requests.post(server.base_url + "/predict", files={"image": ("d.png", png + bytes(over))}, timeout=60), 413)
    # Chunked, no Content-Length: a valid PNG followed by padding used to be cut at the limit and classified.
    assert_json_error(post(server, chunked(png, b"\0", over)), 413)
    doc = json.dumps({"image": base64.b64encode(png).decode()}).encode()
    assert_json_error(post(server, chunked(doc[:-1], b" ", over, b"}"), "application/json"), 413)
    head = (b"--xx\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png)
    assert_json_error(post(server, chunked(head, b"\0", over, b"\r\n--xx--\r\n"), "multipart/form-data; boundary=xx"), 413)
    # The same bodies under the limit are answered.
    assert post(server, chunked(png, b"\0", MAX_UPLOAD // 2)).json()["digit"] == 7
    assert post(server, chunked(doc[:-1], b" ", MAX_UPLOAD // 2, b"}"), "application/json").json()["digit"] == 7
    ok = post(server, chunked(head, b"\0", MAX_UPLOAD // 2, b"\r\n--xx--\r\n"), "multipart/form-data; boundary=xx")
    assert ok.status_code == 200


def test_too_many_parts_and_too_many_images_are_413(server, survived):
    png = hostile.save(hostile.digit(28), "PNG")
    fields = [(f"f{i}", (None, "x")) for i in range(129)] + [("image", ("d.png", png))]
    assert_json_error(requests.post(server.base_url + "/predict", files=fields, timeout=60), 413)
    files = [("images", (f"{i}.png", png)) for i in range(65)]
    assert_json_error(requests.post(server.base_url + "/predict", files=files, timeout=60), 413, {"too_large"})
    doc = {"images": [base64.b64encode(png).decode()] * 65}
    assert_json_error(requests.post(server.base_url + "/predict", json=doc, timeout=60), 413, {"too_large"})


def raw_http(server, request: bytes) -> bytes:
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def test_oversized_request_lines_and_headers_are_refused_by_gunicorn(server, survived):
    """gunicorn answers these itself, before the app, with a small HTML page (not our JSON shape):
    414 past LIMIT_REQUEST_LINE (4094), 431 past LIMIT_REQUEST_FIELD_SIZE (8190) or
    LIMIT_REQUEST_FIELDS (64 headers). docs/security.md documents it."""
    long_line = raw_http(server, b"GET /healthz?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert long_line.startswith(b"HTTP/1.1 414 "), long_line[:100]
    big_header = raw_http(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert big_header.startswith(b"HTTP/1.1 431 "), big_header[:100]
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(100))
    many_headers = raw_http(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert many_headers.startswith(b"HTTP/1.1 431 "), many_headers[:100]
    garbage = raw_http(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200) + b"\r\n\r\n")  # a TLS hello
    assert garbage.startswith(b"HTTP/1.1 400 "), garbage[:100]
    smuggle = raw_http(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                               b"Transfer-Encoding: chunked\r\nContent-Type: image/png\r\n\r\n0\r\n\r\n")
    assert smuggle.startswith(b"HTTP/1.1 400 "), smuggle[:100]  # CL + TE together: refused, no smuggling
    # Just under the limits the same requests are served.
    ok = raw_http(server, b"GET /healthz?" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")


def test_bounded_load_run_has_no_errors(server, survived):
    png = hostile.save(hostile.digit(), "PNG")
    t = time.perf_counter()
    load = Load(server.base_url + "/predict", png, total=2000, concurrency=16).start()
    results = load.wait(timeout=600)
    elapsed = time.perf_counter() - t
    print(f"\nload run: {load.total} requests at concurrency {load.concurrency} in {elapsed:.1f}s "
          f"({load.total / elapsed:.0f} req/s), p50 {load.percentile(0.5) * 1000:.0f} ms, "
          f"p99 {load.percentile(0.99) * 1000:.0f} ms, outcomes {dict(results)}")
    assert results == {200: 2000}


def test_client_text_cannot_break_or_forge_log_lines(server, survived):
    """Paths, queries and headers are the client's text: in the JSON access log and the app's JSON
    log they stay inside their own field, whatever quotes, backslashes or newlines they carry."""
    evil = '\\"},{"forged":true}\n{"level":"CRITICAL'
    path = "/x" + requests.utils.quote(evil, safe="")
    sent = requests.get(server.base_url + path + "?q=" + requests.utils.quote(evil, safe=""), timeout=10,
                        headers={"User-Agent": evil.replace("\n", " "), "X-Request-ID": "log-test-1"})
    assert sent.status_code == 404 and sent.headers["X-Request-ID"] == "log-test-1"
    time.sleep(0.5)  # the access log line is written after the response
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    ours = [entry for entry in lines if entry.get("request_id") == "log-test-1"]
    access = [entry for entry in ours if "user_agent" in entry]
    app_log = [entry for entry in ours if entry.get("logger") == "serve"]
    assert len(access) == 1 and len(app_log) == 1, ours
    assert access[0]["path"] == "/x" + evil and access[0]["query"] == "q=" + requests.utils.quote(evil, safe="")
    assert access[0]["user_agent"] == evil.replace("\n", " ") and access[0]["status"] == 404
    assert app_log[0]["path"] == "/x" + evil
    assert not any(entry.get("forged") for entry in lines)


def test_client_chosen_methods_and_paths_do_not_grow_the_metrics(server, survived):
    for i in range(30):
        raw_http(server, b"XMETHOD%c /healthz HTTP/1.1\r\nHost: x\r\n\r\n" % (65 + i % 26))
        requests.get(server.base_url + f"/no/such/page/{i}", timeout=10)
    text = requests.get(server.base_url + "/metrics", timeout=10).text
    series = [line for line in text.splitlines() if line.startswith("digits_http_requests_total{")]
    methods = {line.split('method="')[1].split('"')[0] for line in series}
    routes = {line.split('route="')[1].split('"')[0] for line in series}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert "other" in methods
    assert not any(r.startswith("/no/such") for r in routes), routes


def test_kserve_chunked_body_over_the_limit_is_413(server, survived):
    """The /v2 infer route reads bodies through the same bound as /predict."""
    name = requests.get(server.base_url + "/v1/models", timeout=10).json()["models"][0]["name"]
    url = f"{server.base_url}/v2/models/{name}/infer"
    doc = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                  "data": [0.0] * 784}]}).encode()
    headers = {"Content-Type": "application/json"}
    over = requests.post(url, data=chunked(doc[:-1], b" ", MAX_UPLOAD + 1024, b"}"), headers=headers, timeout=60)
    assert over.status_code == 413 and set(over.json()) == {"error"}, over.text[:200]
    under = requests.post(url, data=chunked(doc[:-1], b" ", MAX_UPLOAD // 2, b"}"), headers=headers, timeout=60)
    assert under.status_code == 200 and len(under.json()["outputs"][0]["data"]) == 10
