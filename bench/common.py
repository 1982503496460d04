"""Small helpers shared by the bench sections: statistics, digits to feed, machine facts, subprocess runs."""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MARK = "BENCH_JSON "  # a section run in a subprocess prints its result on one line after this mark


def stats_ms(seconds) -> dict:
    """Median, p90, p99, mean and count of a list of durations in seconds, in milliseconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "median_ms": round(float(np.median(a)), 4), "p90_ms": round(float(np.percentile(a, 90)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4), "mean_ms": round(float(a.mean()), 4)}


def time_calls(fn, *, warmup: int, runs: int, budget_s: float) -> list[float]:
    """Durations of up to `runs` calls of fn() after `warmup` calls, stopping early after budget_s."""
    for _ in range(warmup):
        fn()
    out = []
    deadline = time.perf_counter() + budget_s
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        if t > deadline:
            break
    return out


def mnist_dir() -> str:
    """Where the bench reads MNIST: $MNIST_DIR, else the shared copy beside the checkout."""
    return os.environ.get("MNIST_DIR") or str(REPO.parent / "shared" / "data" / "mnist")


def digits(n: int, seed: int = 0) -> np.ndarray:
    """n MNIST test digits (uint8 [n, 28, 28]); random blobs when the MNIST files are not at hand."""
    from train.mnist import load_split, resolve_data_dir

    try:
        images = load_split(resolve_data_dir(mnist_dir()), "test").images
        return images[np.random.default_rng(seed).choice(len(images), n, replace=False)]
    except Exception:  # noqa: BLE001 - any failure to read MNIST: the bench still runs on stand-ins
        rng = np.random.default_rng(seed)
        out = np.zeros((n, 28, 28), np.uint8)
        yy, xx = np.mgrid[0:28, 0:28]
        for i in range(n):
            cy, cx, r = rng.uniform(10, 18), rng.uniform(10, 18), rng.uniform(5, 8)
            ring = np.abs(np.hypot(yy - cy, xx - cx) - r) < 1.5
            out[i][ring] = 255
        return out


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gb = None
    return {"host": platform.node(), "cpu": cpu, "cpu_vendor": cpu_vendor(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
            "memory_gb": mem_gb, "os": platform.platform(), "python": platform.python_version(),
            "load_avg": list(os.getloadavg())}


SIMD_FLAGS = ("sse4_2", "avx", "fma", "f16c", "amx")  # prefixes: avx covers AVX2, AVX-512 and AVX-VNNI


def cpu_flags() -> list[str]:
    """The processor's vector-math flags from /proc/cpuinfo (what oneDNN, MKL and torch pick kernels by)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(SIMD_FLAGS))
    except OSError:
        pass
    return []


def cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def emit(result: dict) -> None:
    """Print a section's result for the parent process (and humans)."""
    print(MARK + json.dumps(result), flush=True)


def run_section(module: str, args: list[str], *, timeout: float, env: dict | None = None, unset=()) -> dict:
    """Run `python -m <module> <args>` in a fresh process (thread settings are per process) and return its JSON."""
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    proc = subprocess.run([PYTHON, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**full_env, **(env or {})})
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    return {"error": f"python -m {module} exited {proc.returncode}", "output": tail}


def stop_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a server started in its own process group (start_new_session): SIGTERM to the group (its
    workers included), SIGKILL if it has not exited within timeout_s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
