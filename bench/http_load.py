"""HTTP load on the real service: gunicorn serving the committed model on loopback, driven by wrk.

python -m bench.http_load [--quick] [--server WORKERS=2,THREADS=1 ...]

For each server setting: /healthz (the floor: the cheapest request the stack can answer) and
/predict with one PNG at concurrency 1, 8 and 32, each run followed by the same PNG sent to
/v2/models/<name>/infer as image_bytes (binary tensor data), batches of 64 PNGs on both, /predict
at concurrency 8 while 64 slow clients trickle their bodies (tests/slow_clients.py), then worker
memory after warm-up and after a soak of 10,000 /predict requests (--sections picks some of these).
wrk shares the machine's cores with the server.
By default three servers, interleaved in one run: the settings before issue 16 (sync workers, no
batching), the `make serve` defaults, and the container's arrangement (CONTAINER), with
after/before ratios. FRONT=nginx in a server's settings puts
nginx in front of it as the container runs it (deploy/front.py: deploy/nginx.conf, on the host), and
every request goes through nginx: e.g. --server FRONT=nginx,THREADS=1,BATCHING=0.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import PYTHON, REPO, digits, emit, stop_group
from deploy.front import start_nginx

BEFORE = "THREADS=1,BATCHING=0,ACCESS_LOG=-"  # sync workers, no batching, two log lines per request
CONTAINER = "FRONT=nginx,THREADS=1,BATCHING=0"  # as the image runs it: nginx in front of sync workers (deploy/front.py)

WRK_SCRIPT = Path(__file__).with_name("wrk") / "bench.lua"
BOUNDARY = "benchBoundary7d2a1f"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(files: list[tuple[str, str, bytes]]) -> bytes:
    """A multipart/form-data body: (field, filename, bytes) parts, each image/png."""
    out = b""
    for field, name, data in files:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def upload_png(kind: str, seed: int = 11) -> bytes:
    """One single-digit PNG: a 140x140 drawing of an MNIST digit (small_png) or the raw 28x28 digit (mnist_png)."""
    from tests.images import as_upload, encode

    d = digits(1, seed=seed)[0]
    return encode(as_upload(d)) if kind == "small_png" else encode(d)


class Server:
    """gunicorn with serve/gunicorn.conf.py on a free loopback port, in its own process group. With
    FRONT=nginx in its settings, nginx (Nginx) is put in front of it once it is ready, and from then
    on `url` and `port` are nginx's: every request goes through the proxy."""

    def __init__(self, env: dict, model_dir: str, log_path: Path):
        env = dict(env)
        self.front_kind = env.pop("FRONT", "")
        if self.front_kind not in ("", "nginx"):
            raise ValueError(f"FRONT={self.front_kind}: the bench knows FRONT=nginx only")
        self.front: Nginx | None = None
        self.port = free_port()
        self.prom = tempfile.mkdtemp(prefix="bench-prom-")
        self.log = open(log_path, "w")
        # MAX_REQUESTS=0: no worker recycling during the bench, so a leak shows as growth instead of being reset.
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "MODEL_DIR": model_dir,
                    "PROMETHEUS_MULTIPROC_DIR": self.prom, "MAX_REQUESTS": "0", **env}
        gunicorn = str(Path(PYTHON).parent / "gunicorn")
        self.proc = subprocess.Popen([gunicorn, "-c", "serve/gunicorn.conf.py", "serve.app:create_app()"], cwd=REPO,
                                     env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready within {timeout}s")
            time.sleep(0.3)
        # /readyz answered from one worker; give the others their start-up and warm-up too.
        expected = int(os.environ.get("WORKERS", "0")) or None
        while expected and len(self.workers()) < expected and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(1.0)
        if self.front_kind and self.front is None:
            self.front = Nginx(self.port, Path(self.log.name).parent)
            self.url, self.port = self.front.url, self.front.port

    def workers(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return sorted(int(p) for p in text.split())

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
        stop_group(self.proc)
        self.log.close()
        shutil.rmtree(self.prom, ignore_errors=True)


class Nginx:
    """deploy/front.py's nginx (deploy/nginx.conf) in front of one upstream port on loopback, on a free
    port of its own."""

    def __init__(self, upstream_port: int, work: Path):
        self.port = free_port()
        self.log = open(work / f"nginx-{self.port}.log", "w")
        self.proc, self.dir = start_nginx(upstream_port, f"127.0.0.1:{self.port}", stdout=self.log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(self.url + "/nginx-healthz", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start: see {self.log.name}")
                time.sleep(0.1)

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def memory(pids: list[int]) -> dict:
    """RSS and PSS (shared library pages split between the workers) per worker, in MiB."""
    out = {}
    for pid in pids:
        entry = {}
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    entry["rss_mib"] = round(int(line.split()[1]) / 1024, 1)
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    entry["pss_mib"] = round(int(line.split()[1]) / 1024, 1)
        except OSError:
            entry["gone"] = True
        out[str(pid)] = entry
    return out


def v2_body(files: list[bytes]) -> tuple[bytes, int]:
    """A /v2 infer request of image_bytes as binary tensor data, and the length of its JSON header."""
    from serve.kserve_codec import serialize_bytes

    blob = serialize_bytes(files)
    head = json.dumps({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [len(files)],
                                   "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return head + blob, len(head)


def wrk(url: str, *, connections: int, duration_s: float, max_requests: int, body: Path | None = None,
        threads: int = 1, random_boundary: bool = True, v2_header: int | None = None,
        content_type: str | None = None) -> dict:
    """One wrk run, bounded by time and by a cap on responses; requests/s over the active time.
    A body is multipart (a fresh boundary per request), or with v2_header a /v2 binary request, or
    sent as it is under content_type (e.g. image/png: a raw upload)."""
    threads = max(1, min(threads, connections))
    multi = v2_header is None
    env = {**os.environ, "BENCH_PER_THREAD": str(max(1, -(-max_requests // threads))) if max_requests else "0",
           "BENCH_BODY": str(body) if body else "",
           "BENCH_CONTENT_TYPE": ("application/octet-stream" if not multi else content_type
                                  or f"multipart/form-data; boundary={BOUNDARY}"),
           "BENCH_BOUNDARY": BOUNDARY if body and random_boundary and multi and not content_type else "",
           "BENCH_HEADER": "" if multi else f"Inference-Header-Content-Length: {v2_header}"}
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s",
           "-s", str(WRK_SCRIPT), url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, capped = [], 0
    for line in proc.stdout:  # wrk prints its summary on SIGINT too, so a capped run ends at once
        lines.append(line)
        capped += line.startswith("BENCH_CAPPED")
        if capped == threads and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    proc.wait(timeout=duration_s + 60)
    out = "".join(lines)
    for line in out.splitlines():
        if line.startswith("BENCH_WRK "):
            r = json.loads(line[len("BENCH_WRK "):])
            r["connections"] = connections
            r["requests_per_s"] = round(r["responses"] / r["active_s"], 1) if r["active_s"] > 0 else None
            r["non_2xx_or_errors"] = sum(r["errors"].values())
            return r
    return {"error": f"wrk exited {proc.returncode}", "output": out[-2000:]}


def slow_clients_run(server: Server, args, body: Path) -> dict:
    """/predict at concurrency 8 while args.slow_clients connections trickle a body each."""
    from tests.slow_clients import SlowClients

    with SlowClients(server.port, args.slow_clients, interval_s=0.5) as slow:
        time.sleep(0.5)
        r = wrk(server.url + "/predict", connections=8, duration_s=args.duration, max_requests=args.max_requests, body=body)
        r["slow_clients"] = args.slow_clients
        r["slow_clients_closed_by_server"] = slow.closed_by_server
    return r


def compare(results: list[dict]) -> dict:
    """after/before ratios of the headline figures, when the run holds the before setting and another."""
    by_label = {r.get("label"): r for r in results if "error" not in r}
    before = by_label.get(BEFORE)  # a server's label is its setting string
    if before is None:
        return {}
    out = {}
    for label, after in by_label.items():
        if after is before:
            continue

        def ratio(get):
            try:
                a, b = get(after), get(before)
                return round(a / b, 2) if a and b else None
            except (KeyError, TypeError):
                return None

        out[label] = {
            "predict_c8_requests_per_s": ratio(lambda s: s["predict"]["8"]["requests_per_s"]),
            "healthz_c8_requests_per_s": ratio(lambda s: s["healthz"]["8"]["requests_per_s"]),
            "predict_over_healthz_c8": ratio(lambda s: s["efficiency"]["8"]),
            "batch_images_per_s": ratio(lambda s: max(r.get("images_per_s") or 0 for r in s["predict_batch"]["by_concurrency"].values())),
            "slow_clients_predict_c8_requests_per_s": ratio(lambda s: s["slow_clients"]["requests_per_s"]),
            "v2_image_bytes_c8_requests_per_s": ratio(lambda s: s["v2"]["8"]["requests_per_s"]),
        }
    return {"before": before["label"], "after_over_before": out}


def parse_server(spec: str) -> dict:
    """'WORKERS=2,THREADS=1' -> {'WORKERS': '2', 'THREADS': '1'} (empty: the gunicorn.conf.py defaults)."""
    return dict(kv.split("=", 1) for kv in spec.split(",") if kv)


def ratios(num: dict, den: dict) -> dict:
    """num ÷ den requests/s, per concurrency, for runs taken one after the other."""
    return {c: round(num[c]["requests_per_s"] / den[c]["requests_per_s"], 3) for c in num
            if num[c].get("requests_per_s") and den.get(c, {}).get("requests_per_s")}


SECTIONS = ("healthz", "predict", "batch", "slow", "soak")


def bench_server(env: dict, args, work: Path) -> dict:
    bodies = {"single": work / "single.body", "batch": work / "batch.body", "v2_single": work / "v2-single.body",
              "v2_batch": work / "v2-batch.body"}
    png = upload_png(args.image)
    pngs = [upload_png(args.image, seed=100 + i) for i in range(args.batch)]
    bodies["single"].write_bytes(multipart([("image", "digit.png", png)]))
    bodies["batch"].write_bytes(multipart([("images", f"d{i}.png", p) for i, p in enumerate(pngs)]))
    v2_single, v2_single_head = v2_body([png])
    v2_batch, v2_batch_head = v2_body(pngs)
    bodies["v2_single"].write_bytes(v2_single)
    bodies["v2_batch"].write_bytes(v2_batch)
    sections = args.sections
    label = ",".join(f"{k}={v}" for k, v in env.items()) or "defaults"
    old_workers = os.environ.get("WORKERS")
    server = Server(env, args.model_dir, work / f"server-{label.replace(',', '_').replace('=', '')}.log")
    result = {"server": env, "label": label, "image": args.image, "png_bytes": len(png)}
    try:
        os.environ["WORKERS"] = env.get("WORKERS", str(os.cpu_count()))  # for wait_ready's count
        server.wait_ready()
        pids = server.workers()
        result["workers"] = len(pids)
        d, cap = args.duration, args.max_requests
        # Warm-up: every worker's first requests allocate and pick kernels.
        wrk(server.url + "/predict", connections=4, duration_s=max(1, d / 3), max_requests=args.warmup, body=bodies["single"])
        result["memory_after_warmup"] = memory(pids)

        with urllib.request.urlopen(server.url + "/v1/models", timeout=10) as r:
            v2_url = f"{server.url}/v2/models/{json.loads(r.read())['models'][0]['name']}/infer"

        if "healthz" in sections:
            result["healthz"] = {str(c): wrk(server.url + "/healthz", connections=c, duration_s=d, max_requests=cap)
                                 for c in args.concurrency}
        if "predict" in sections:  # /predict and /v2 image_bytes one after the other, per concurrency
            result["predict"], result["v2"] = {}, {}
            for c in args.concurrency:
                result["predict"][str(c)] = wrk(server.url + "/predict", connections=c, duration_s=d, max_requests=cap,
                                                body=bodies["single"])
                result["v2"][str(c)] = wrk(v2_url, connections=c, duration_s=d, max_requests=cap, body=bodies["v2_single"],
                                           v2_header=v2_single_head)
            result["v2_over_predict"] = ratios(result["v2"], result["predict"])
        if "batch" in sections:
            batch, v2 = {}, {}
            for c in args.batch_concurrency:
                for runs, path, body, head in ((batch, server.url + "/predict", bodies["batch"], None),
                                               (v2, v2_url, bodies["v2_batch"], v2_batch_head)):
                    r = wrk(path, connections=c, duration_s=d, max_requests=max(1, cap // args.batch), body=body, v2_header=head)
                    if r.get("requests_per_s") is not None:  # images answered with 200: a refused batch counts none
                        r["images_per_s"] = round(max(0, r["responses"] - r["errors"]["status"]) / r["active_s"] * args.batch, 1)
                    runs[str(c)] = r
            result["predict_batch"] = {"batch": args.batch, "by_concurrency": batch}
            result["v2_batch"] = {"batch": args.batch, "by_concurrency": v2, "v2_over_predict": ratios(v2, batch)}
        if "slow" in sections:
            result["slow_clients"] = slow_clients_run(server, args, bodies["single"])
        if "healthz" in sections and "predict" in sections:
            result["efficiency"] = ratios(result["predict"], result["healthz"])

        warm = result.pop("memory_after_warmup")
        if "soak" not in sections:
            return result
        # Soak: N more /predict requests in two halves; RSS should stay flat.
        half = args.soak // 2
        soak = [wrk(server.url + "/predict", connections=8, duration_s=args.soak_timeout, max_requests=half, body=bodies["single"])]
        mid = memory(pids)
        soak.append(wrk(server.url + "/predict", connections=8, duration_s=args.soak_timeout, max_requests=args.soak - half,
                        body=bodies["single"]))
        end = memory(pids)
        result["memory"] = {
            "soak_requests": sum(r.get("responses", 0) for r in soak),
            "soak_errors": sum(r.get("non_2xx_or_errors", 0) for r in soak),
            "workers_unchanged": server.workers() == pids,
            "after_warmup": warm, "after_half_soak": mid, "after_soak": end,
            "rss_growth_second_half_mib": {pid: round(end[pid].get("rss_mib", 0) - mid[pid].get("rss_mib", 0), 1) for pid in end},
            "rss_growth_since_warmup_mib": {pid: round(end[pid].get("rss_mib", 0) - warm[pid].get("rss_mib", 0), 1) for pid in end},
        }
    finally:
        server.stop()
        if old_workers is None:
            os.environ.pop("WORKERS", None)
        else:
            os.environ["WORKERS"] = old_workers
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__)
    p.add_argument("--model-dir", default=str(REPO / "models"))
    p.add_argument("--server", action="append", default=None,
                   help="gunicorn/serve environment for one server, e.g. WORKERS=2,THREADS=1,ONEDNN=1 (repeatable; default: the defaults)")
    p.add_argument("--image", choices=["small_png", "mnist_png"], default="small_png")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batch-concurrency", default="2,8")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default: 10)")
    p.add_argument("--max-requests", type=int, default=50000, help="cap on responses per wrk run (default: 50000)")
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--soak", type=int, default=10000, help="/predict requests between the memory readings (default: 10000)")
    p.add_argument("--soak-timeout", type=float, default=120.0)
    p.add_argument("--slow-clients", type=int, default=64, help="trickling connections held open during one /predict run (default: 64)")
    p.add_argument("--log-dir", help="keep the server logs here (default: a temporary folder)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"which runs, of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--rounds", type=int, default=1, help="serve every setting this many times, interleaved (default: 1)")
    args = p.parse_args(argv)
    args.sections = set(args.sections.split(","))
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.batch_concurrency = [int(c) for c in args.batch_concurrency.split(",")]
    if not shutil.which("wrk"):
        emit({"skipped": "wrk is not installed (make bench installs it with apt-get)"})
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        tmp = args.log_dir or tmp
        for spec in [s for _ in range(args.rounds) for s in (args.server or [BEFORE, "", CONTAINER])]:
            try:
                results.append(bench_server(parse_server(spec), args, Path(tmp)))
            except Exception as e:  # noqa: BLE001 - one failing setting must not lose the others
                log = sorted(Path(tmp).glob("server-*.log"))
                results.append({"server": parse_server(spec), "error": f"{type(e).__name__}: {e}",
                                "log_tail": log[-1].read_text()[-3000:] if log else ""})
    emit({"wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0:1],
          "servers": results, "comparison": compare(results)})


if __name__ == "__main__":
    main()
