"""The course's homework as one command: train every variant with the same seed and split, then
write a markdown table and a bar chart.

    python -m train.experiments            # the full table (see FULL below for its size)
    python -m train.experiments --quick    # a smoke-sized table, for tests and a first look

Each variant is an ordinary training run (`python -m train ...` in a subprocess, so it is exactly
what a user would run and a crash stays in its own row), with its report, under OUT/runs/<variant>/.
Variants that resolve to the same config (e.g. "sgd" and the SGD baseline) are trained once.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from train.config import TrainConfig
from train.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
TABLE_MD = "experiments.md"
TABLE_JSON = "experiments.json"
CHART_PNG = "experiments.png"

# The course's baseline: LeNet trained with plain SGD at a constant learning rate of 0.01 (its
# "baseline" and "SGD" rows took the same time), no regularization, no augmentation.
BASELINE = dict(model="lenet", optimizer="sgd", lr=0.01, momentum=0.9, schedule="constant", weight_decay=0.0,
                l1=0.0, dropout=0.0, augment=False, softmax_in_model=False, ema=0.0)  # the raw weights, as the course


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    changes: dict = field(default_factory=dict)  # TrainConfig fields over the baseline
    epochs_factor: int = 1  # "more epochs" trains epochs_factor x the table's epochs
    course: str = ""  # the course's reported test accuracy, for comparison
    pitfall: bool = False


VARIANTS = (
    Variant("baseline", "LeNet, SGD lr 0.01, the table's epochs", course="0.975"),
    Variant("more-epochs", "baseline with twice the epochs", epochs_factor=2, course="0.982 (10 epochs)"),
    Variant("lower-lr", "baseline with lr 0.001", {"lr": 0.001}, course="0.988 (lr 0.001)"),
    Variant("sgd", "optimizer SGD", {"optimizer": "sgd"}, course="0.98"),
    Variant("momentum", "optimizer Momentum 0.9", {"optimizer": "momentum"}, course="0.986"),
    Variant("adagrad", "optimizer Adagrad", {"optimizer": "adagrad"}, course="0.988"),
    Variant("adam", "optimizer Adam", {"optimizer": "adam"}),
    Variant("adam-lr-0.001", "optimizer Adam at its customary lr 0.001", {"optimizer": "adam", "lr": 0.001}),
    Variant("softmax-twice", "softmax inside the model, then cross-entropy (which applies softmax again)",
            {"softmax_in_model": True}, course="0.10", pitfall=True),
    Variant("lenet-deep", "one more conv + pool block", {"model": "lenet-deep"}, course="0.993 (10 epochs, lr 0.001)"),
    Variant("dropout", "dropout 0.3 before the classifier", {"dropout": 0.3}),
    Variant("l2", "L2 weight decay 5e-4", {"weight_decay": 5e-4}),
)


@dataclass(frozen=True)
class Size:
    epochs: int
    limit_train: int  # 0: all training records
    val_size: int
    batch_size: int = 128
    log_every: int = 10


# Sized for a 2-core CPU: 11 distinct runs, 12 x `epochs` epochs of `limit_train` images in all,
# two runs at a time (one core each). See the README for the measured time.
FULL = Size(epochs=5, limit_train=20000, val_size=5000)
QUICK = Size(epochs=1, limit_train=1000, val_size=1000, log_every=2)


def variant_config(v: Variant, size: Size, seed: int, data_dir: str | None, device: str, threads: int) -> TrainConfig:
    fields = {**BASELINE, **v.changes}
    return TrainConfig(**fields, epochs=size.epochs * v.epochs_factor, batch_size=size.batch_size,
                       limit_train=size.limit_train, val_size=size.val_size, log_every=size.log_every, seed=seed,
                       data_dir=data_dir, device=device, threads=threads, progress=False, keep_checkpoints=1)


def cli_args(cfg: TrainConfig) -> list[str]:
    """The `python -m train` flags that reproduce cfg."""
    default = TrainConfig()
    skip = {"data", "progress", "data_dir"}
    args = []
    for name, value in cfg.to_dict().items():
        if name in skip or (value == getattr(default, name) and name not in ("augment", "dropout")):
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += [f"--{name.replace('_', '-')}", str(value)]
    if cfg.data_dir:
        args += ["--data-dir", cfg.data_dir]
    return args + ["--no-progress"]


def run_variant(name: str, cfg: TrainConfig, runs_dir: Path, logs_dir: Path) -> dict:
    """Train one config through the CLI; return its result.json plus timing, or the error."""
    run_dir = runs_dir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "train", "--runs-dir", str(runs_dir), "--run-name", name, *cli_args(cfg)]
    t0 = time.perf_counter()
    with open(logs_dir / f"{name}.log", "w") as log:
        log.write(" ".join(cmd) + "\n\n")
        log.flush()
        rc = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - t0
    run = RunDir(run_dir)
    result = run.read_result() if rc == 0 else None
    if result is None:
        return {"error": f"exit {rc}; see {logs_dir / f'{name}.log'}", "process_s": elapsed, "command": cmd}
    epochs = run.read_metrics().epochs
    result["images_per_s"] = float(np.mean([r["images_per_s"] for r in epochs])) if epochs else 0.0
    result["final_train_loss"] = epochs[-1]["train_loss"] if epochs else None
    summary = run.read_report_summary()
    result["never_predicted"] = summary["never_predicted_val"] if summary else []
    result["process_s"] = elapsed
    result["command"] = cmd
    return result


def assess(row: dict, baseline: dict | None) -> str:
    """A note for the table: the pitfall flag, and whether the run collapsed."""
    if "error" in row:
        return f"FAILED: {row['error']}"
    notes = []
    if row["pitfall"]:
        notes.append("⚠ PITFALL (softmax applied twice)")
    if row["val_acc"] < 0.2:
        notes.append(f"collapsed: chance level (val acc {row['val_acc']:.3f})")
    elif baseline and "val_acc" in baseline and row["val_acc"] < baseline["val_acc"] - 0.05:
        notes.append(f"far below baseline ({row['val_acc'] - baseline['val_acc']:+.3f})")
    if row.get("never_predicted"):
        notes.append(f"never predicts {', '.join(row['never_predicted'])}")
    if row["pitfall"] and row.get("final_train_loss") is not None:
        # Cross-entropy of softmax(p) for a probability vector p is at least -log(e / (e + 9)) = 1.46.
        notes.append(f"train loss stuck at {row['final_train_loss']:.2f} (floor 1.46)")
    return "; ".join(notes)


def markdown_table(rows: list[dict], size: Size, seed: int, mode: str, total_s: float, jobs: int) -> str:
    lines = [
        f"# Experiment table ({mode})",
        "",
        f"Every variant: seed {seed}, the same stratified split ({size.val_size} validation records), "
        f"{'all' if not size.limit_train else size.limit_train} training records, batch {size.batch_size}, "
        f"{size.epochs} epochs unless stated; test accuracy is of the best-on-validation epoch. "
        f"{jobs} run(s) at a time; total {total_s / 60:.1f} min.",
        "",
        "| variant | what changed | val acc | test acc | course test acc | params | wall time | images/s | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['what']} | — | — | {r['course'] or '—'} | — | — | — | {r['note']} |")
            continue
        name = f"**{r['variant']}** ⚠" if r["pitfall"] else r["variant"]
        same = f" (same run as {r['same_as']})" if r.get("same_as") else ""
        lines.append(
            f"| {name} | {r['what']}{same} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | {r['course'] or '—'} | "
            f"{r['parameters']:,} | {r['wall_s']:.0f} s | {r['images_per_s']:.0f} | {r['note']} |")
    lines += ["", f"![validation and test accuracy per variant]({CHART_PNG})", "",
              "Each variant's curves, confusion matrices and mistakes: `runs/<variant>/report.md`. "
              "Wall time is the training loop with its validation passes (one core per run); "
              "images/s is training throughput.", ""]
    return "\n".join(lines)


def bar_chart(rows: list[dict], path: Path) -> Path:
    ok = [r for r in rows if "error" not in r]
    fig = Figure(figsize=(11, 0.45 * len(ok) + 1.6), layout="constrained")
    ax_acc, ax_time = fig.subplots(1, 2, width_ratios=(2, 1))
    y = np.arange(len(ok))
    h = 0.38
    val = [r["val_acc"] for r in ok]
    test = [r["test_acc"] for r in ok]
    edge = ["tab:red" if r["pitfall"] else "none" for r in ok]
    ax_acc.barh(y - h / 2, val, h, label="validation", color="tab:blue", edgecolor=edge, linewidth=2)
    ax_acc.barh(y + h / 2, test, h, label="test", color="tab:green", edgecolor=edge, linewidth=2)
    for i, r in enumerate(ok):
        ax_acc.text(min(r["test_acc"], 0.85) + 0.01, i + h / 2, f"{r['test_acc']:.4f}", va="center", fontsize=8)
        if r["pitfall"]:
            ax_acc.text(0.02, i - h / 2, "PITFALL", va="center", color="white", fontsize=8, fontweight="bold")
    labels = [f"{r['variant']} ⚠" if r["pitfall"] else r["variant"] for r in ok]
    ax_acc.set_yticks(y, labels)
    for tick, r in zip(ax_acc.get_yticklabels(), ok):
        if r["pitfall"]:
            tick.set_color("tab:red")
    ax_acc.invert_yaxis()
    ax_acc.set_xlim(0, 1.0)
    ax_acc.axvline(0.1, color="tab:red", ls=":", lw=1, label="chance (0.10)")
    ax_acc.set_xlabel("accuracy")
    ax_acc.legend(loc="lower right", fontsize=8)
    ax_acc.grid(axis="x", alpha=0.3)
    ax_time.barh(y, [r["wall_s"] for r in ok], color="tab:gray")
    ax_time.set_yticks(y, [])
    ax_time.invert_yaxis()
    ax_time.set_xlabel("wall time (s)")
    ax_time.grid(axis="x", alpha=0.3)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def run_table(out: Path, size: Size, *, seed: int = 2024, data_dir: str | None = None, device: str = "cpu",
              threads: int = 1, jobs: int = 1, only: list[str] | None = None, mode: str = "full", log=print) -> list[dict]:
    """Train every variant (each distinct config once), write the table, JSON and chart into out."""
    out = Path(out).resolve()  # the runs start in the repo root; paths stay the caller's
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    runs_dir, logs_dir = out / "runs", out / "logs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    variants = [v for v in VARIANTS if not only or v.name in only]
    configs = {v.name: variant_config(v, size, seed, data_dir, device, threads) for v in variants}
    first_with: dict[str, str] = {}  # config json -> the variant that trains it
    for v in variants:
        first_with.setdefault(json.dumps(configs[v.name].to_dict(), sort_keys=True), v.name)
    unique = sorted(set(first_with.values()), key=[v.name for v in variants].index)
    log(f"{len(variants)} variants, {len(unique)} distinct runs, {jobs} at a time -> {out}")

    t0 = time.perf_counter()
    results: dict[str, dict] = {}

    def work(name: str):
        r = run_variant(name, configs[name], runs_dir, logs_dir)
        msg = r.get("error") or f"val {r['val_acc']:.4f} test {r['test_acc']:.4f} in {r['wall_s']:.0f} s"
        log(f"  {name}: {msg}")
        return name, r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, r in pool.map(work, unique):
            results[name] = r
    total = time.perf_counter() - t0

    rows = []
    for v in variants:
        owner = first_with[json.dumps(configs[v.name].to_dict(), sort_keys=True)]
        row = {"variant": v.name, "what": v.what, "course": v.course, "pitfall": v.pitfall,
               "config": configs[v.name].to_dict(), **results[owner]}
        if owner != v.name:
            row["same_as"] = owner
        rows.append(row)
    baseline = next((r for r in rows if r["variant"] == "baseline"), None)
    for r in rows:
        r["note"] = assess(r, baseline)
    (out / TABLE_JSON).write_text(json.dumps({"mode": mode, "size": size.__dict__, "seed": seed, "jobs": jobs,
                                              "total_s": total, "rows": rows}, indent=2))
    bar_chart(rows, out / CHART_PNG)
    md = markdown_table(rows, size, seed, mode, total, jobs)
    (out / TABLE_MD).write_text(md)
    log(md)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.experiments", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"smoke-sized: {QUICK.epochs} epoch(s) on {QUICK.limit_train} images")
    p.add_argument("--out", default="reports/experiments", help="output folder (default: reports/experiments)")
    p.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DIR, else Paddle's downloader)")
    p.add_argument("--epochs", type=int, help=f"epochs per run (default: {FULL.epochs}; quick {QUICK.epochs})")
    p.add_argument("--limit-train", type=int, help=f"training records, 0 = all (default: {FULL.limit_train}; quick {QUICK.limit_train})")
    p.add_argument("--val-size", type=int, help=f"validation records (default: {FULL.val_size}; quick {QUICK.val_size})")
    p.add_argument("--batch-size", type=int, help=f"(default: {FULL.batch_size})")
    p.add_argument("--seed", type=int, default=2024, help="the one seed of every variant (default: 2024)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="(default: cpu)")
    p.add_argument("--threads", type=int, default=1, help="CPU math threads per run (default: 1)")
    p.add_argument("--jobs", type=int, help="runs at a time (default: one per core on CPU, 1 on GPU)")
    p.add_argument("--only", nargs="+", choices=[v.name for v in VARIANTS], help="a subset of the variants")
    args = p.parse_args(argv)

    base = QUICK if args.quick else FULL
    size = Size(epochs=args.epochs or base.epochs,
                limit_train=base.limit_train if args.limit_train is None else args.limit_train,
                val_size=args.val_size or base.val_size, batch_size=args.batch_size or base.batch_size,
                log_every=base.log_every)
    jobs = args.jobs or (1 if args.device == "gpu" else max(1, (os.cpu_count() or 1) // max(args.threads, 1)))
    rows = run_table(Path(args.out), size, seed=args.seed, data_dir=args.data_dir or os.environ.get("MNIST_DIR"),
                     device=args.device, threads=args.threads, jobs=jobs, only=args.only,
                     mode="quick" if args.quick else "full")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
