"""Pictures and a short report for a run: curves, confusion matrices, the most confident mistakes.

Written into the run folder when training finishes; `python -m train.report RUN_DIR` writes them
again from the run's files (config.json, metrics.jsonl, best/, result.json) and the data.
Figures are drawn on matplotlib's Agg canvas directly: no pyplot, no global state, no display.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from train.mnist import LABELS
from train.rundir import REPORT_JSON, REPORT_MD, RunDir

CURVES_STEP = "curves_step.png"
CURVES_EPOCH = "curves_epoch.png"
CONFUSION_VAL = "confusion_val.png"
CONFUSION_TEST = "confusion_test.png"
MISTAKES_VAL = "mistakes_val.png"
VISUALDL_DIR = "visualdl"
PICTURES = (CURVES_STEP, CURVES_EPOCH, CONFUSION_VAL, CONFUSION_TEST, MISTAKES_VAL)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start), so the curve's end is the recent level."""
    if len(values) == 0 or window <= 1:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_step_curves(steps: list[dict], epochs: list[dict], steps_per_epoch: int, path: Path,
                     vals: list[dict] = ()) -> Path:
    """Training loss and batch accuracy per logged step, with every validation (mid-epoch `vals` too)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = np.array([r["global_step"] for r in steps])
    validations = sorted([*epochs, *vals], key=lambda r: r.get("global_step", (r["epoch"] + 1) * steps_per_epoch - 1))
    val_x = [r.get("global_step", (r["epoch"] + 1) * steps_per_epoch - 1) for r in validations]
    window = max(1, len(steps) // 30)
    for ax, key, val_key, name in ((ax_loss, "loss", "val_loss", "loss"), (ax_acc, "acc", "val_acc", "accuracy")):
        y = np.array([r[key] for r in steps], dtype=float)
        if len(y) and window > 1:
            ax.plot(x, y, color="tab:blue", alpha=0.3, lw=0.8, label="train (batch)")
            ax.plot(x, _smooth(y, window), color="tab:blue", lw=1.6, label=f"train (moving average of {window})")
        elif len(y):
            ax.plot(x, y, color="tab:blue", lw=1.2, label="train (batch)")
        if validations:
            ax.plot(val_x, [r[val_key] for r in validations], "o-", color="tab:orange", lw=1.6, label="validation")
        ax.set_xlabel("step")
        ax.set_title(f"{name} per step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if not steps:
        ax_loss.text(0.5, 0.5, "no step records (see --log-every)", ha="center", transform=ax_loss.transAxes)
    return _save(fig, path)


def plot_epoch_curves(epochs: list[dict], path: Path) -> Path:
    """Training and validation loss and accuracy per epoch."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = [r["epoch"] + 1 for r in epochs]
    for ax, key, name in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(x, [r[f"train_{key}"] for r in epochs], "o-", label="train (running, during the epoch)")
        ax.plot(x, [r[f"val_{key}"] for r in epochs], "o-", label="validation (epoch end)")
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} per epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if x:
            ax.set_xticks(x if len(x) <= 20 else x[:: max(1, len(x) // 10)])
    return _save(fig, path)


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, n: int = len(LABELS)) -> np.ndarray:
    """Counts [true, predicted]."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def plot_confusion(cm: np.ndarray, title: str, path: Path) -> Path:
    """Counts in every cell; colour on a log scale so the few mistakes stand out next to the diagonal."""
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.log1p(cm), cmap="Blues")
    fig.colorbar(im, ax=ax, label="log(1 + count)", shrink=0.8)
    n = len(cm)
    hot = np.log1p(cm.max()) * 0.6
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if np.log1p(cm[i, j]) > hot else ("black" if i == j else "tab:red"))
    ax.set_xticks(range(n), LABELS[:n])
    ax.set_yticks(range(n), LABELS[:n])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title}: accuracy {acc:.4f} ({cm.sum() - np.trace(cm)} wrong of {cm.sum()})")
    return _save(fig, path)


def confident_mistakes(labels: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k wrong predictions with the highest predicted probability, most confident first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    conf = probs[wrong, pred[wrong]]
    return wrong[np.argsort(-conf, kind="stable")[:k]]


def plot_mistakes(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, path: Path, k: int = 24) -> Path:
    """A grid of the most confidently misclassified images, each titled true -> predicted (confidence)."""
    idx = confident_mistakes(labels, probs, k)
    cols = 6
    rows = max(1, -(-len(idx) // cols))
    fig = Figure(figsize=(cols * 1.5, rows * 1.7 + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    pred = probs.argmax(axis=1)
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, idx):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"true {labels[i]} → {pred[i]}\n({probs[i, pred[i]]:.2f})", fontsize=8, color="tab:red")
    n_wrong = int((pred != labels).sum())
    if len(idx):
        fig.suptitle(f"most confident mistakes on validation: {len(idx)} of {n_wrong} wrong")
    else:
        axes[0].text(0.5, 0.5, "no mistakes on validation", ha="center", va="center", transform=axes[0].transAxes)
    return _save(fig, path)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min ({s:.0f} s)"


def render_markdown(run_dir: Path, cfg: dict, result: dict, epochs: list[dict], cm_val: np.ndarray,
                    cm_test: np.ndarray | None) -> str:
    """report.md: the headline numbers, the pictures and the full config."""
    ips = [r["images_per_s"] for r in epochs]
    best = result.get("best_epoch", -1)
    lines = [
        f"# Run `{Path(run_dir).name}`",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{cfg['model']}`{' (softmax inside the model: the course pitfall)' if cfg.get('softmax_in_model') else ''} |",
        f"| parameters | {result.get('parameters', 0):,} |",
        f"| optimizer | {cfg['optimizer']}, lr {cfg['lr']:g}, schedule {cfg['schedule']}, batch {cfg['batch_size']} |",
        f"| epochs run | {result.get('epochs_run', len(epochs))} of {cfg['epochs']} |",
        f"| best epoch (validation) | {best + 1 if best >= 0 else '—'} |",
        f"| validation accuracy (best epoch) | {result.get('val_acc', float('nan')):.4f} |",
        f"| test accuracy (best-epoch weights; test never used for selection) | {result.get('test_acc', float('nan')):.4f} |",
        f"| wall time | {_fmt_seconds(result.get('wall_s', 0.0))} |",
        f"| training speed | {np.mean(ips):.0f} images/s (mean over epochs) |" if ips else "| training speed | — |",
        f"| processes | {result.get('processes', 1)} |",
        f"| data | {cfg['data'].get('train', '?')} train / {cfg['data'].get('val', '?')} validation / "
        f"{cfg['data'].get('test', '?')} test{'' if cfg['data'].get('standard_mnist') else ' (not the standard MNIST files)'} |",
        "",
        "## Curves",
        "",
        f"![loss and accuracy per step]({CURVES_STEP})",
        "",
        f"![loss and accuracy per epoch]({CURVES_EPOCH})",
        "",
        "## Confusion matrices",
        "",
        f"Validation ({int(cm_val.sum())} images): ![confusion matrix on validation]({CONFUSION_VAL})",
        "",
    ]
    if cm_test is not None:
        lines += [f"Test ({int(cm_test.sum())} images): ![confusion matrix on test]({CONFUSION_TEST})", ""]
    lines += [
        "## Most confident mistakes on validation",
        "",
        f"![most confidently misclassified validation images]({MISTAKES_VAL})",
        "",
        "## Config",
        "",
        "| key | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | `{json.dumps(v)}` |" for k, v in cfg.items() if k != "data"]
    lines += ["", f"Data folder `{cfg['data'].get('dir', '?')}`; sha256 of the uncompressed files:", ""]
    lines += [f"- `{name}` `{digest}`" for name, digest in sorted(cfg["data"].get("sha256", {}).items())]
    return "\n".join(lines) + "\n"


def write_report(run_dir, data=None, with_test: bool = True, log=print) -> Path:
    """Write every picture and report.md into run_dir; `data` (train.data.Dataset) saves reloading the files."""
    from train import checkpoint as ckpt
    from train.config import TrainConfig
    from train.data import load_data, steps_per_epoch
    from train.loop import predict_logits
    from train.models import build_model
    from train.rundir import Position

    run = RunDir(run_dir)
    run_dir = run.path
    cfg_dict = run.read_config_dict()
    cfg = TrainConfig.from_dict(cfg_dict).resolved()
    result = run.read_result() or {}
    if data is None:
        data = load_data(cfg)

    model = build_model(cfg.model, cfg.dropout, cfg.softmax_in_model)
    best = Position.from_dict(ckpt.load_into(run.best_dir, model)["position"]).best
    result.setdefault("best_epoch", best.epoch)
    result.setdefault("val_acc", best.val_acc)

    def probabilities(images):
        out = predict_logits(model, images)
        return out if cfg.softmax_in_model else softmax(out)  # the pitfall model already outputs probabilities

    metrics = run.read_metrics()
    steps, epochs = metrics.steps, metrics.epochs
    per_epoch = steps_per_epoch(len(data.train_y), cfg.batch_size, drop_last=True)
    plot_step_curves(steps, epochs, per_epoch, run_dir / CURVES_STEP, metrics.vals)
    plot_epoch_curves(epochs, run_dir / CURVES_EPOCH)

    val_probs = probabilities(data.val_x)
    cm_val = confusion_matrix(data.val_y, val_probs.argmax(axis=1))
    plot_confusion(cm_val, "validation", run_dir / CONFUSION_VAL)
    plot_mistakes(data.val_x, data.val_y, val_probs, run_dir / MISTAKES_VAL)
    cm_test = None
    if with_test:
        cm_test = confusion_matrix(data.test_y, probabilities(data.test_x).argmax(axis=1))
        plot_confusion(cm_test, "test", run_dir / CONFUSION_TEST)

    md = run_dir / REPORT_MD
    md.write_text(render_markdown(run_dir, cfg_dict, result, epochs, cm_val, cm_test))
    summary = {"confusion_val": cm_val.tolist(), "confusion_test": None if cm_test is None else cm_test.tolist(),
               # Classes the model never outputs: the signature of dead (saturated) output units.
               "never_predicted_val": [LABELS[i] for i in np.flatnonzero(cm_val.sum(axis=0) == 0)]}
    run.report_json_path.write_text(json.dumps(summary, indent=1))
    log(f"report: {md}")
    return md


def write_visualdl(run_dir) -> Path:
    """Replay metrics.jsonl into a VisualDL log folder (needs `pip install visualdl`; optional)."""
    try:
        from visualdl import LogWriter
    except ImportError:
        raise SystemExit("VisualDL is not installed: pip install -r requirements-visualdl.txt") from None
    run = RunDir(run_dir)
    metrics = run.read_metrics()
    steps, epochs = metrics.steps, metrics.epochs
    cfg = run.read_config_dict()
    per_epoch = max(1, cfg["data"]["train"] // cfg["batch_size"])
    logdir = run.path / VISUALDL_DIR
    with LogWriter(logdir=str(logdir)) as w:
        for r in steps:
            for key in ("loss", "acc", "lr", "images_per_s"):
                w.add_scalar(tag=f"step/train_{key}", step=r["global_step"], value=float(r[key]))
        for r in epochs:
            step = (r["epoch"] + 1) * per_epoch - 1
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s"):
                w.add_scalar(tag=f"epoch/{key}", step=r["epoch"] + 1, value=float(r[key]))
            w.add_scalar(tag="step/val_loss", step=step, value=float(r["val_loss"]))
            w.add_scalar(tag="step/val_acc", step=step, value=float(r["val_acc"]))
    return logdir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.report", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run folder (with config.json and best/)")
    p.add_argument("--no-test", dest="with_test", action="store_false", help="skip the test-set confusion matrix")
    p.add_argument("--visualdl", action="store_true",
                   help="also write a VisualDL log into RUN_DIR/visualdl (then: visualdl --logdir RUN_DIR/visualdl)")
    args = p.parse_args(argv)
    run = RunDir(args.run_dir)
    if not run.is_run() or not run.has_best():
        print(f"error: {run} is not a run folder with a best checkpoint", file=sys.stderr)
        return 2
    write_report(run.path, with_test=args.with_test)
    if args.visualdl:
        print(f"visualdl log: {write_visualdl(run.path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
