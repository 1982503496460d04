"""python -m bench: measure training, the model, preprocessing and HTTP serving; write JSON and markdown.

  python -m bench                 # the full bench (about 15 minutes on 2 cores)
  python -m bench --quick         # a smoke run of every section in about a minute: numbers are not meaningful
  python -m bench --only model,preprocess --out bench-results

Results go to <out>/bench-<timestamp>.json and .md, copied to <out>/latest.json and latest.md.
Each measurement runs in a fresh process, because thread settings are per process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import REPO, machine, run_section
from bench.http_load import CONTAINER
from bench.report import markdown, targets
from bench.train_speed import time_to_accuracy

SECTIONS = ("train", "model", "preprocess", "app", "http")


BEFORE = "paddle as imported (1 thread)"
AFTER = "python -m train: setup_device (1 thread)"


DP = "make train: 2 data-parallel processes (1 thread each)"


def train_configs(model: str, quick: bool, torch_python: str | None) -> list[tuple[str, list[str] | None, list[str] | None]]:
    """(name, bench.train_speed args, torch_ref args): before, after, threads, processes, and like-for-like references."""
    configs = [(BEFORE, ["--setup", "paddle"], None), (AFTER, ["--setup", "train"], None)]
    if quick:
        return configs
    configs += [("paddle as imported, set_num_threads(2)", ["--setup", "paddle", "--threads", "2"], None),
                ("setup_device, --threads 2", ["--setup", "train", "--threads", "2"], None),
                (DP, ["--setup", "train", "--nproc", "2"], None)]
    if model == "cnn":  # the default model trains with augmentation; torch_ref feeds ready batches
        configs += [("setup_device (1 thread), no augmentation", ["--setup", "train", "--augment", "off"], None),
                    (f"{DP}, no augmentation", ["--setup", "train", "--nproc", "2", "--augment", "off"], None)]
    if torch_python:
        configs += [(f"torch, {t} thread{'s' if t > 1 else ''}, no augmentation", None, ["--threads", str(t)]) for t in (1, 2)]
    return configs


def best_over_best(rounds: dict[str, list[dict]]) -> tuple[float | None, list[float]]:
    """Per round: the fastest Paddle setting without augmentation ÷ the fastest PyTorch setting (same
    net, same batch, same round); the median of the rounds and the rounds."""
    per_round = []
    for i in range(min(len(rs) for rs in rounds.values()) if rounds else 0):
        paddle = [rs[i]["images_per_s"] for rs in rounds.values()
                  if "images_per_s" in rs[i] and "framework" not in rs[i] and not rs[i].get("augment")]
        torch = [rs[i]["images_per_s"] for rs in rounds.values() if "images_per_s" in rs[i] and "framework" in rs[i]]
        if paddle and torch:
            per_round.append(round(max(paddle) / max(torch), 2))
    return (round(statistics.median(per_round), 2) if per_round else None), per_round


def train_section(args) -> dict:
    """Images/s of the real training step before (Paddle as imported) and after (train's setup_device)."""
    q = args.quick
    steps, bs, rounds = ("3", "32", 1) if q else (str(args.train_steps), "128", args.rounds)
    models = ("cnn", "lenet")
    plan = {m: train_configs(m, q, args.torch_python) for m in models}
    runs: dict = {m: {name: [] for name, _, _ in plan[m]} for m in models}
    for _ in range(rounds):  # interleaved rounds: drifts in machine load hit every setting alike
        for m in models:
            for name, paddle_args, torch_args in plan[m]:
                if paddle_args is not None:
                    r = run_section("bench.train_speed", ["--model", m, "--steps", steps, "--batch-size", bs, *paddle_args],
                                    timeout=900, unset=("MKL_DEBUG_CPU_TYPE",))
                else:
                    r = run_section_script(args.torch_python, ["--model", m, "--steps", steps, "--batch-size", bs, *torch_args])
                runs[m][name].append(r)
    out = {"batch_size": int(bs), "steps_per_round": int(steps), "rounds": rounds, "models": {}}
    for m in models:
        rows = {}
        for name, rs in runs[m].items():
            ok = [r["images_per_s"] for r in rs if "images_per_s" in r]
            rows[name] = {"images_per_s_median": round(statistics.median(ok), 1) if ok else None, "rounds": ok,
                          "errors": [r for r in rs if "error" in r][:1], "framework": rs[0].get("framework") if rs else None}
        ratios = [a / b for a, b in zip(rows[AFTER]["rounds"], rows[BEFORE]["rounds"]) if b]
        vs_torch, vs_torch_rounds = best_over_best(runs[m])
        out["models"][m] = {"configs": rows, "after_over_before": round(statistics.median(ratios), 2) if ratios else None,
                            "after_over_before_rounds": [round(r, 2) for r in ratios],
                            "best_paddle_over_best_torch": vs_torch, "best_paddle_over_best_torch_rounds": vs_torch_rounds}
    out["time_to_99"] = [time_to_accuracy(Path(d), "cnn", 0.99) for d in args.runs_dir or ["runs"]]
    return out


def run_section_script(python: str, args: list[str]) -> dict:
    proc = subprocess.run([python, str(REPO / "bench" / "torch_ref.py"), *args], capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    return {"error": proc.stderr[-1000:]}


def model_section(args) -> dict:
    """Paddle Inference settings and ONNX Runtime on the same exported model, interleaved in rounds
    (machine load drifts hit every engine alike); each row holds the medians over the rounds."""
    q = args.quick
    common = ["--model-dir", args.model_dir]
    common += ["--latency-runs", "50", "--images", "128", "--budget-s", "1", "--batches", "1,64"] if q else \
              ["--latency-runs", "3000", "--images", "6400", "--budget-s", "5", "--batches", "1,8,64"]
    threads = (1,) if q else (1, 2)
    configs = []  # (key, bench.model_speed args)
    for t in threads:
        configs.append((f"inference-t{t}", ["--engine", "inference", "--threads", str(t)]))
        if t == 1 and not q:
            configs.append(("inference-t1-onednn-off", ["--engine", "inference", "--threads", "1", "--onednn", "off"]))
            configs.append(("inference-t1-ir-off", ["--engine", "inference", "--threads", "1", "--ir-optim", "off"]))
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        # The quick smoke run skips the conversion (paddle2onnx takes ~20 s).
        conv = {"skipped": "quick run"} if q else run_section("bench.model_speed", ["--convert-onnx", tmp, *common], timeout=300)
        if "onnx" in conv:
            configs += [(f"onnxruntime-t{t}", ["--engine", "onnxruntime", "--threads", str(t), "--onnx", conv["onnx"]]) for t in threads]
        runs: dict = {key: [] for key, _ in configs}
        for _ in range(1 if q else args.model_rounds):
            for key, extra in configs:
                runs[key].append(run_section("bench.model_speed", [*extra, *common], timeout=300))
    out = [_median_run(rs) for rs in runs.values()]
    if not q:
        out += [run_section("bench.model_speed", ["--engine", "dygraph", "--threads", str(t), *common], timeout=300) for t in threads]
    if "onnx" not in conv and not q:
        out.append({"engine": "onnxruntime", **conv})
    ratios = {}
    for t in threads:  # Paddle Inference (the serving default) over ONNX Runtime, per round, then the median
        pd, ort = runs.get(f"inference-t{t}", []), runs.get(f"onnxruntime-t{t}", [])
        pairs = [(a, b) for a, b in zip(pd, ort) if "error" not in a and "error" not in b]
        if pairs:
            ratios[f"threads {t}"] = {
                "batch 1 latency": round(statistics.median(a["latency_batch1"]["median_ms"] / b["latency_batch1"]["median_ms"] for a, b in pairs), 2),
                "batch 64 time per image": round(statistics.median(b["throughput"]["64"]["images_per_s"] / a["throughput"]["64"]["images_per_s"]
                                                                   for a, b in pairs), 2)}
    return {"runs": out, "rounds": 1 if q else args.model_rounds, "paddle_over_onnxruntime": ratios}


def _median_run(rs: list[dict]) -> dict:
    """One row from a config's rounds: the medians of its latency and throughput figures."""
    ok = [r for r in rs if "error" not in r]
    if not ok:
        return rs[0] if rs else {"error": "no run"}
    med = lambda xs: round(statistics.median(xs), 4)  # noqa: E731
    row = {**ok[0], "rounds": len(ok)}
    row["latency_batch1"] = {"n": sum(r["latency_batch1"]["n"] for r in ok),
                             **{k: med([r["latency_batch1"][k] for r in ok]) for k in ("median_ms", "p99_ms")}}
    row["throughput"] = {b: {"images_per_s": med([r["throughput"][b]["images_per_s"] for r in ok])} for b in ok[0]["throughput"]}
    row["python_share"] = med([r["python_share"] for r in ok])
    return row


def preprocess_section(args) -> dict:
    extra = ["--images", "3", "--repeats", "1"] if args.quick else ["--images", "60", "--repeats", "10"]
    return run_section("bench.preprocess_speed", extra, timeout=600)


def app_section(args) -> dict:
    return run_section("bench.request_cost", ["--model-dir", args.model_dir, "--runs", "30" if args.quick else "1000"], timeout=600)


def http_section(args) -> dict:
    extra = ["--model-dir", args.model_dir]
    if args.quick:
        extra += ["--duration", "1", "--max-requests", "60", "--concurrency", "1,8", "--batch", "8", "--batch-concurrency", "2",
                  "--warmup", "10", "--soak", "60", "--soak-timeout", "10"]
    # The smoke run serves the make serve defaults and the container's arrangement; the full run also the
    # settings before issue 16 (after/before ratios).
    for s in args.server or (["", CONTAINER] if args.quick else []):
        extra += ["--server", s]
    return run_section("bench.http_load", extra, timeout=3600)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: every section, tiny sizes (default: off)")
    p.add_argument("--out", default="bench-results", help="results folder (default: bench-results)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run (default: {','.join(SECTIONS)})")
    p.add_argument("--model-dir", default="models", help="the published model to serve and time (default: models)")
    p.add_argument("--runs-dir", action="append",
                   help="where to find finished cnn runs for the time to 99%% validation accuracy (repeatable; default: runs)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repeats of each training setting (default: 3)")
    p.add_argument("--model-rounds", type=int, default=3, help="interleaved repeats of each model-only setting (default: 3)")
    p.add_argument("--train-steps", type=int, default=40, help="timed training steps per setting and round (default: 40)")
    p.add_argument("--torch-python", default=os.environ.get("BENCH_TORCH_PYTHON"),
                   help="an interpreter with torch, for the reference numbers (default: $BENCH_TORCH_PYTHON; none: skipped)")
    p.add_argument("--server", action="append", help="a serving setting for the HTTP section, e.g. WORKERS=2,THREADS=1 (repeatable)")
    args = p.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")

    started = datetime.now(timezone.utc)
    result = {"started": started.isoformat(timespec="seconds"), "quick": args.quick, "machine": machine(),
              "git": _git(), "versions": _versions(), "sections": {}}
    for name in only:
        t = time.perf_counter()
        print(f"bench: {name} ...", flush=True)
        try:
            data = globals()[f"{name}_section"](args)
        except Exception as e:  # noqa: BLE001 - a failing section is reported, the others still run
            data = {"error": f"{type(e).__name__}: {e}"}
        data["seconds"] = round(time.perf_counter() - t, 1)
        result["sections"][name] = data
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["load_avg_end"] = list(os.getloadavg())
    result["targets"] = targets(result)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench-{started.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    shutil.copyfile(stem.with_suffix(".json"), out / "latest.json")
    shutil.copyfile(stem.with_suffix(".md"), out / "latest.md")
    print(markdown(result))
    print(f"bench: wrote {stem}.json and {stem}.md")
    return 0


def _git() -> dict:
    def git(*a):
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    return {"commit": git("rev-parse", "--short", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("paddlepaddle", "onnxruntime", "paddle2onnx", "flask", "gunicorn", "numpy", "pillow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    wrk = shutil.which("wrk")
    out["wrk"] = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split()[1] if wrk else None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
