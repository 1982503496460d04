"""python -m bench.torchserve: TorchServe's MNIST example and this server, side by side (`make bench-torchserve`).

Trains and archives the example's network in the TorchServe venv (prepare.py), starts TorchServe
(2 workers, OMP_NUM_THREADS=1: its best setting on 2 cores) and this server (its `make serve`
defaults, the committed model) on free loopback ports, then drives both with wrk and the same
28x28 PNG as an image/png body: per round, every concurrency, the two servers back to back (the
order alternating by round), then each one's HTTP floor (TorchServe /ping, ours /healthz).
Writes <out>/torchserve-<timestamp>.json and .md and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from bench.common import MARK, REPO, machine, mnist_dir, stop_group
from bench.http_load import Server, free_port, parse_server, upload_png, wrk
from bench.torchserve.results import answered_digit, markdown, summarize


class TorchServe:
    """torchserve --foreground with one model, its three addresses on free loopback ports, in its own process group."""

    def __init__(self, venv: Path, store: Path, work: Path, *, workers: int, omp_threads: int):
        self.url, mgmt = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self.mgmt, self.workers = mgmt, workers
        config = work / "config.properties"
        config.write_text("\n".join([
            f"inference_address={self.url}", f"management_address={mgmt}", f"metrics_address=http://127.0.0.1:{free_port()}",
            f"default_workers_per_model={workers}",
            "disable_token_authorization=true",  # on by default since 0.11: every call would need a key file's token
        ]) + "\n")
        env = {**os.environ, "OMP_NUM_THREADS": str(omp_threads), "LOG_LOCATION": str(work / "ts-logs"),
               "METRICS_LOCATION": str(work / "ts-logs"), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.log = open(work / "torchserve.log", "w")
        self.proc = subprocess.Popen([str(venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs", "--ts-config", str(config),
                                      "--model-store", str(store), "--models", "mnist=mnist.mar"],
                                     cwd=work, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.predict = f"{self.url}/predictions/mnist"

    def wait_ready(self, timeout: float = 300) -> None:
        """Until every worker of the model is READY (the frontend answers /ping long before)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"torchserve exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.mgmt}/models/mnist", timeout=2) as r:
                    workers = json.load(r)[0]["workers"]
                if sum(w["status"] == "READY" for w in workers) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"TorchServe's workers not ready within {timeout}s; see {self.log.name}")

    def stop(self) -> None:
        stop_group(self.proc)  # the frontend's Java and its Python workers share the group
        self.log.close()


def prepare(venv: Path, store: Path, limit_train: int) -> dict:
    """prepare.py in the TorchServe venv: one epoch of training, then mnist.mar in store."""
    cmd = [str(venv / "bin" / "python"), "-m", "bench.torchserve.prepare", "--data-dir", mnist_dir(), "--out", str(store)]
    proc = subprocess.run(cmd + (["--limit-train", str(limit_train)] if limit_train else []), cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"prepare.py exited {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}")


def answer(url: str, png: bytes) -> str:
    req = urllib.request.Request(url, data=png, headers={"Content-Type": "image/png"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.torchserve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", default=".venv-torchserve", help="the venv with torch and TorchServe (requirements-torchserve.txt)")
    p.add_argument("--out", default="bench-results")
    p.add_argument("--model-dir", default=str(REPO / "models"), help="what our server serves (default: the committed model)")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default: 5)")
    p.add_argument("--max-requests", type=int, default=50000, help="cap on responses per wrk run")
    p.add_argument("--warmup", type=int, default=5000,
                   help="requests to each server before measuring, at most 15 s each (default: 5000; TorchServe's JIT warms up slowly)")
    p.add_argument("--workers", type=int, default=2, help="TorchServe workers (default: 2)")
    p.add_argument("--omp-threads", type=int, default=1, help="OMP_NUM_THREADS for TorchServe (default: 1)")
    p.add_argument("--limit-train", type=int, default=0, help="train on N images only (smoke runs; 0: one whole epoch)")
    p.add_argument("--mar", help="serve this mnist.mar from an earlier run instead of training again (its JSON says how it was trained)")
    p.add_argument("--log-dir", help="keep both servers' logs here (default: a temporary folder)")
    p.add_argument("--ours", default="", help="this server's settings, as bench.http_load's --server takes them "
                   "(default: the make serve defaults; e.g. FRONT=nginx,THREADS=1,BATCHING=0: as the container runs it)")
    args = p.parse_args(argv)
    venv = Path(args.venv).resolve()
    missing = [what for what, ok in [("wrk", shutil.which("wrk")), ("java", shutil.which("java")),
                                     (f"{venv}/bin/torchserve", (venv / "bin" / "torchserve").exists())] if not ok]
    if missing:
        print(f"bench.torchserve: missing {', '.join(missing)}: run `make bench-torchserve`, which installs them", file=sys.stderr)
        return 2
    concurrency = args.concurrency.split(",")
    started = datetime.now(timezone.utc)
    result = {"started": started.isoformat(timespec="seconds"), "machine": machine(),
              "rounds": args.rounds, "duration_s": args.duration}
    with tempfile.TemporaryDirectory(prefix="bench-torchserve-") as tmp:
        work = Path(args.log_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.mar:
            (work / "store").mkdir(exist_ok=True)
            shutil.copy(args.mar, work / "store" / "mnist.mar")
            result["prepare"] = {"mar": args.mar, "reused": True, "train_images": None, "test_accuracy": None}
        else:
            print("bench.torchserve: training the example's net for one epoch and archiving it ...", flush=True)
            result["prepare"] = prepare(venv, work / "store", args.limit_train)
        png = upload_png("mnist_png")
        body = work / "digit.png"
        body.write_bytes(png)
        result["png_bytes"] = len(png)
        version = subprocess.run([str(venv / "bin" / "python"), "-c", "import ts.version as v; print(v.__version__)"],
                                 capture_output=True, text=True).stdout.strip()
        settings = parse_server(args.ours)
        result["ours_settings"] = settings  # {}: the make serve defaults
        result["torchserve"] = {"version": version, "workers": args.workers, "omp_num_threads": args.omp_threads,
                                "java": subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[:1]}
        ts = TorchServe(venv, work / "store", work, workers=args.workers, omp_threads=args.omp_threads)
        ours = None
        try:
            ours = Server(settings, args.model_dir, work / "ours.log")
            ts.wait_ready()
            ours.wait_ready()
            urls = {"ours": (ours.url + "/predict", ours.url + "/healthz"), "torchserve": (ts.predict, ts.url + "/ping")}
            # Both must answer the picture (not an error page fast): their digits go into the result.
            result["answers"] = {name: answered_digit(answer(u[0], png)) for name, u in urls.items()}
            for name, u in urls.items():
                wrk(u[0], connections=8, duration_s=15, max_requests=args.warmup, body=body, content_type="image/png")
            rounds = []
            for i in range(args.rounds):
                print(f"bench.torchserve: round {i + 1} of {args.rounds}", flush=True)
                order = list(urls) if i % 2 == 0 else list(reversed(urls))  # neither server always goes first
                r = {name: {"predict": {}, "floor": {}} for name in urls}
                for c in concurrency:
                    for name in order:
                        r[name]["predict"][c] = wrk(urls[name][0], connections=int(c), duration_s=args.duration,
                                                    max_requests=args.max_requests, body=body, content_type="image/png")
                for c in concurrency:
                    for name in order:
                        r[name]["floor"][c] = wrk(urls[name][1], connections=int(c), duration_s=args.duration, max_requests=args.max_requests)
                rounds.append(r)
        finally:
            ts.stop()
            if ours:
                ours.stop()
    result["runs"] = rounds
    result["summary"] = summarize(rounds)
    result["load_avg_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"torchserve-{started.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"bench.torchserve: wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
