"""Training throughput: the real training step (train.loop.train_one_epoch with the real optimizer,
schedule and batch loader) for a few hundred steps, in this process, with the given settings.

  python -m bench.train_speed --model cnn --steps 60 --setup train     # what `python -m train` does
  python -m bench.train_speed --model cnn --steps 60 --setup paddle --threads 2   # Paddle's own defaults + threads

  python -m bench.train_speed --model cnn --steps 60 --nproc 2     # data-parallel, as `make train` (NPROC=2)

--setup train calls train.runner.setup_device (the project's CPU settings); --setup paddle leaves
Paddle as imported and only sets the math threads when --threads is given. --nproc N re-runs this
file under paddle.distributed.launch: N processes each take their slice of every batch and
all-reduce gradients, exactly as training does; images/s counts the global batch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script by the launcher: import the packages from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from bench.common import MARK, emit


def training_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from train.mnist import load_split, resolve_data_dir

    try:
        train = load_split(resolve_data_dir(os.environ.get("MNIST_DIR") or None), "train")
        return train.images[:n], train.labels[:n]
    except Exception:  # noqa: BLE001 - no MNIST at hand: random pictures train just as fast
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__)
    p.add_argument("--model", default="cnn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=60, help="timed steps (default: 60)")
    p.add_argument("--warmup", type=int, default=5, help="untimed first steps (default: 5)")
    p.add_argument("--setup", choices=["train", "paddle"], default="train")
    p.add_argument("--threads", type=int, default=0, help="math threads (default: 0 = the setup's choice)")
    p.add_argument("--augment", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes (default: 1)")
    args = p.parse_args(argv)

    from train import distributed

    if args.nproc > 1 and distributed.world_size_from_env() == 1:
        emit(launch(args.nproc, sys.argv[1:] if argv is None else argv))
        return

    import paddle

    from train.config import TrainConfig
    from train.data import Augment, train_batches
    from train.loop import train_one_epoch
    from train.models import build_model
    from train.optim import build_optimizer, build_schedule
    from train.runner import setup_device

    cfg = TrainConfig(model=args.model, batch_size=args.batch_size, threads=args.threads,
                      augment=None if args.augment == "auto" else args.augment == "on").resolved()
    if args.setup == "train":
        setup_device(cfg)
    else:
        paddle.set_device("cpu")
        if args.threads:
            paddle.base.core.set_num_threads(args.threads)
    dist = distributed.setup("cpu")
    total = args.warmup + args.steps
    x, y = training_images(total * args.batch_size)
    paddle.seed(cfg.seed)
    model = build_model(cfg.model, cfg.dropout)
    schedule = build_schedule(cfg.schedule, cfg.lr, total)
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), schedule, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    stamps = []

    def on_step(record):
        if dist.meets(len(stamps) + 1, cfg.log_every):  # where training's ranks meet (a no-op in one process)
            dist.sync_step(record, 0)
        stamps.append(time.perf_counter())
        return False

    batches = train_batches(x, y, batch_size=args.batch_size, seed=cfg.seed, epoch=0, augment=Augment() if cfg.augment else None,
                            part=dist.part(args.batch_size))
    t0 = time.perf_counter()
    train_one_epoch(dist.wrap(model), optimizer, schedule, batches, seed=dist.rank_seed(cfg.seed), epoch=0, on_step=on_step)
    if not dist.is_main:
        return
    steps = np.diff([t0, *stamps])[args.warmup:]
    timed = float(steps.sum())
    emit({
        "model": args.model, "batch_size": args.batch_size, "setup": args.setup, "threads_arg": args.threads,
        "augment": bool(cfg.augment), "steps": int(len(steps)), "processes": dist.world_size,
        "images_per_s": round(args.batch_size * len(steps) / timed, 1),
        "images_per_s_median_step": round(args.batch_size / float(np.median(steps)), 1),
        "step_ms_median": round(float(np.median(steps)) * 1000, 2),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "OMP_WAIT_POLICY", "KMP_BLOCKTIME") if k in os.environ},
    })


def launch(nproc: int, argv: list[str]) -> dict:
    """Run this file under Paddle's launcher with nproc processes; rank 0's result."""
    with tempfile.TemporaryDirectory(prefix="bench-dp-") as logs:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir", logs,
               str(Path(__file__).resolve()), *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        log = Path(logs, "workerlog.0").read_text() if Path(logs, "workerlog.0").exists() else ""
    for line in reversed((log + proc.stdout).splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return {"error": f"launcher exited {proc.returncode}", "output": (log + proc.stderr).strip().splitlines()[-15:]}


def time_to_accuracy(runs_dir: Path, model: str = "cnn", target: float = 0.99) -> dict:
    """From finished runs' metrics.jsonl: the training wall time at the first validation reaching target
    (the newest run that reaches it, else the newest run)."""
    from train import rundir

    found = []
    for run in rundir.runs_under(runs_dir):
        try:
            cfg = run.read_config_dict()
        except (OSError, ValueError):
            continue
        if cfg.get("model") != model or not run.metrics_path.exists():
            continue
        vals = run.read_metrics().validations()
        found.append((run.metrics_path.stat().st_mtime, run, cfg, vals, rundir.time_to_accuracy(run, target)))
    if not found:
        return {"skipped": f"no {model} run with metrics under {runs_dir}"}
    _, run, cfg, vals, hit = max(found, key=lambda f: (f[4] is not None, f[0]))
    out = {"run": str(run), "target_val_acc": target, "validations_recorded": len(vals),
           "threads": cfg.get("threads"), "batch_size": cfg.get("batch_size"),
           "best_val_acc": max((r["val_acc"] for r in vals), default=None)}
    if hit is None:
        out["reached"] = False
    else:
        out.update(reached=True, epoch=hit["epoch"] + 1, step=hit.get("step"), wall_s=round(hit["wall_s"], 1))
    return out


if __name__ == "__main__":
    main()
