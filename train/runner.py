"""A training run: data, model, optimizer, the epoch loop, checkpoints, resume and the final report."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import paddle

from train import checkpoint as ckpt
from train import distributed
from train.config import TrainConfig
from train.data import Augment, stratified_split, steps_per_epoch, train_batches
from train.loop import evaluate, train_one_epoch
from train.mnist import load_split, resolve_data_dir
from train.models import build_model, count_parameters
from train.optim import build_optimizer, build_schedule

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"


@dataclass
class Dataset:
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    info: dict


def load_data(cfg: TrainConfig) -> Dataset:
    """Validated train/validation/test arrays. The test set is only read here and used once, at the end."""
    data_dir = resolve_data_dir(cfg.data_dir)
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    train_idx, val_idx = stratified_split(train.labels, cfg.val_size, cfg.seed)
    if cfg.limit_train:
        train_idx = train_idx[: cfg.limit_train]
    info = {
        "dir": str(data_dir),
        "standard_mnist": train.standard and test.standard,
        "sha256": {**train.sha256, **test.sha256},
        "train": int(len(train_idx)),
        "val": int(len(val_idx)),
        "test": int(len(test)),
    }
    return Dataset(
        train.images[train_idx], train.labels[train_idx],
        train.images[val_idx], train.labels[val_idx],
        test.images, test.labels, info,
    )


def setup_device(cfg: TrainConfig) -> None:
    if cfg.device == "gpu" and not paddle.device.is_compiled_with_cuda():
        sys.exit("--device gpu: this Paddle build has no CUDA support (install paddlepaddle-gpu)")
    if cfg.device == "cpu":
        fast_mkl_on_amd()
    paddle.set_device(cfg.device)
    if cfg.threads:
        paddle.base.core.set_num_threads(cfg.threads)


def fast_mkl_on_amd(environ=os.environ) -> None:
    """Let Paddle's bundled MKL use the AVX-512 (or AVX2) kernels an AMD CPU has.

    Paddle's CPU wheel ships MKL 2019.0.5, which hands non-Intel CPUs its generic SSE code path;
    dygraph convolutions are im2col + MKL sgemm, so on an AMD EPYC training ran at half the speed
    the core allows (make bench measures it). MKL before 2020.1 honours MKL_DEBUG_CPU_TYPE: 7 selects
    its AVX-512 (Skylake-SP) kernels, 5 its AVX2 kernels; each only where the CPU has those
    instructions. MKL reads it at its first call, so this runs before any math; a value already set
    is left alone.
    """
    if "MKL_DEBUG_CPU_TYPE" in environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read(65536)
    except OSError:
        return
    if "AuthenticAMD" not in info:
        return
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        environ["MKL_DEBUG_CPU_TYPE"] = "7"
    elif {"avx2", "fma"} <= flags:
        environ["MKL_DEBUG_CPU_TYPE"] = "5"


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step."""

    def __init__(self):
        self.signum = 0

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.signum:  # a second Ctrl-C means: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, global_step: int, epoch: int) -> None:
    """On resume, drop metric lines written after the checkpoint: they will be produced again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if (r["kind"] == "step" and r["global_step"] < global_step) or (r["kind"] == "epoch" and r["epoch"] < epoch):
            kept.append(line)
    path.write_text("".join(k + "\n" for k in kept))


def new_run_dir(runs_dir: str, name: str | None, model: str) -> Path:
    name = name or f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(runs_dir) / name
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False, dry_run: bool = False, log=print) -> dict:
    """Train (or continue) the run in run_dir and return its result. Exit code semantics are the CLI's."""
    run_dir = Path(run_dir)
    cfg = cfg.resolved()
    setup_device(cfg)
    dist = distributed.setup(cfg.device)  # data-parallel under paddle.distributed.launch; only rank 0 writes
    dist.check_batch_size(cfg.batch_size)
    log = log if dist.is_main else _quiet
    data = load_data(cfg)
    cfg.data = data.info
    if dist.is_main:
        (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))

    paddle.seed(cfg.seed)  # initial weights are a function of the seed
    model = build_model(cfg.model, cfg.dropout, cfg.softmax_in_model)
    per_epoch = 1 if dry_run else steps_per_epoch(len(data.train_y), cfg.batch_size, drop_last=True)
    if per_epoch == 0:
        raise ValueError(f"{len(data.train_y)} training records make no full batch of {cfg.batch_size}")
    schedule = build_schedule(cfg.schedule, cfg.lr, cfg.epochs * per_epoch)
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), schedule, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    n_params = count_parameters(model)
    log(f"model {cfg.model}: {n_params:,} parameters; data {data.info['train']} train / {data.info['val']} val "
        f"/ {data.info['test']} test from {data.info['dir']}")

    state = {"epoch": 0, "step": 0, "global_step": 0, "best": {"val_acc": -1.0, "epoch": -1}, "stale_epochs": 0, "wall_s": 0.0}
    metrics_path = run_dir / METRICS_FILE
    if resume:
        last = ckpt.latest(run_dir)
        if last is not None:
            state = ckpt.load_into(last, model, optimizer)["position"]
            if dist.is_main:
                _truncate_metrics(metrics_path, state["global_step"], state["epoch"])
            log(f"resumed from {last} (epoch {state['epoch']}, step {state['step']})")
        elif dist.is_main:
            metrics_path.unlink(missing_ok=True)
            log(f"no complete checkpoint in {run_dir}: starting from scratch")

    train_model = dist.wrap(model)  # after resume: DataParallel starts from rank 0's weights
    augment = Augment() if cfg.augment else None
    negatives, loss_fn = None, None
    if cfg.negatives:
        from train import openset

        t_neg = time.perf_counter()
        negatives = openset.pool(cfg.negatives_pool, cfg.seed)
        loss_fn = openset.loss_for(cfg.open_set, cfg.negatives_weight)
        log(f"{len(negatives)} non-digit pictures made in {time.perf_counter() - t_neg:.1f} s; "
            f"{cfg.negatives:.3f} of each batch")
    started = time.perf_counter() - state["wall_s"]

    def save_checkpoint():
        state["wall_s"] = time.perf_counter() - started
        if not dist.is_main:
            return
        name = ckpt.checkpoint_name(state["epoch"], state["step"])
        ckpt.save(run_dir, name, model, optimizer, {"config": cfg.to_dict(), "position": state})
        ckpt.prune(run_dir, cfg.keep_checkpoints)

    interrupted = 0
    with _StopFlag() as stop:
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            bar = _progress(cfg, per_epoch, state["step"], f"epoch {epoch + 1}/{cfg.epochs}") if dist.is_main else None

            def on_step(r: dict) -> bool:
                state["step"] = r["step"] + 1
                state["global_step"] += 1
                agreed = dist.sync_step(r, stop.signum)  # ranks agree on stopping at this very step
                stop.signum = stop.signum or agreed
                if dist.is_main and (state["global_step"] % cfg.log_every == 0 or cfg.log_every == 1):
                    _append_jsonl(metrics_path, {"kind": "step", "global_step": state["global_step"] - 1, **r})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{r['loss']:.4f}", acc=f"{r['acc']:.3f}", img_s=f"{r['images_per_s']:.0f}")
                stopping = bool(agreed) or (dry_run and state["step"] >= per_epoch)
                if cfg.checkpoint_every and state["global_step"] % cfg.checkpoint_every == 0 and state["step"] < per_epoch:
                    save_checkpoint()
                return stopping

            batches = train_batches(
                data.train_x, data.train_y, batch_size=cfg.batch_size, seed=cfg.seed,
                epoch=epoch, start_step=state["step"], augment=augment,
            )
            if negatives is not None:
                batches = openset.mix(batches, negatives, cfg.negatives, seed=cfg.seed, epoch=epoch)
            batches = dist.shard(batches)
            stats = train_one_epoch(train_model, optimizer, schedule, batches, seed=dist.rank_seed(cfg.seed), epoch=epoch,
                                    l1=cfg.l1, on_step=on_step, loss_fn=loss_fn)
            stats = dist.reduce_epoch(stats)
            if bar is not None:
                bar.close()
            if stop.signum and state["step"] < per_epoch:
                save_checkpoint()
                interrupted = stop.signum
                log(f"stopped by signal {stop.signum}: checkpoint saved at epoch {epoch} step {state['step']}; "
                    f"continue with --resume {run_dir}")
                break

            val = evaluate(model, data.val_x, data.val_y)
            record = {"kind": "epoch", "epoch": epoch, "train_loss": stats["loss"], "train_acc": stats["acc"],
                      "val_loss": val["loss"], "val_acc": val["acc"], "images_per_s": stats["images_per_s"],
                      "lr": float(optimizer.get_lr()), "wall_s": time.perf_counter() - started}
            if dist.is_main:
                _append_jsonl(metrics_path, record)
            log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {stats['loss']:.4f} acc {stats['acc']:.4f} | "
                f"val loss {val['loss']:.4f} acc {val['acc']:.4f} | {stats['images_per_s']:.0f} img/s")

            state["epoch"], state["step"] = epoch + 1, 0
            if val["acc"] > state["best"]["val_acc"]:
                state["best"] = {"val_acc": val["acc"], "val_loss": val["loss"], "epoch": epoch}
                state["stale_epochs"] = 0
                if dist.is_main:
                    ckpt.save(run_dir, ckpt.BEST_DIR, model, None, {"config": cfg.to_dict(), "position": state}, parent=".")
            else:
                state["stale_epochs"] += 1
            save_checkpoint()
            stop.signum = dist.agree_signal(stop.signum)
            if stop.signum:
                interrupted = stop.signum
                log(f"stopped by signal {stop.signum} after epoch {epoch + 1}; continue with --resume {run_dir}")
                break
            if cfg.patience and state["stale_epochs"] >= cfg.patience:
                log(f"early stop: no validation gain for {cfg.patience} epochs")
                break

    if interrupted:
        return {"interrupted": interrupted, "run_dir": str(run_dir)}
    if not dist.is_main:
        return {"rank": dist.rank, "run_dir": str(run_dir)}
    result = finish(run_dir, cfg, data, n_params, state, log, processes=dist.world_size)
    _write_report(run_dir, data, log)
    return result


def finish(run_dir: Path, cfg: TrainConfig, data: Dataset, n_params: int, state: dict, log=print, processes: int = 1) -> dict:
    """Touch the test set once: the best-on-validation weights, evaluated for the report."""
    model = build_model(cfg.model, cfg.dropout, cfg.softmax_in_model)
    best = ckpt.load_into(run_dir / ckpt.BEST_DIR, model)
    test = evaluate(model, data.test_x, data.test_y)
    result = {
        "run_dir": str(run_dir),
        "model": cfg.model,
        "parameters": n_params,
        "best_epoch": best["position"]["best"]["epoch"],
        "val_acc": best["position"]["best"]["val_acc"],
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "epochs_run": state["epoch"],
        "wall_s": state["wall_s"],
        "processes": processes,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (run_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
    log(f"best epoch {result['best_epoch'] + 1}: val acc {result['val_acc']:.4f}, test acc {result['test_acc']:.4f} "
        f"({run_dir / RESULT_FILE})")
    return result


def _write_report(run_dir: Path, data: Dataset, log=print) -> None:
    """Curves, confusion matrices and report.md; a failure here must not fail a finished run."""
    try:
        from train.report import write_report

        write_report(run_dir, data, log=log)
    except Exception as e:  # noqa: BLE001 - the run's result is already safe on disk
        log(f"report not written ({e!r}); retry with: python -m train.report {run_dir}")


def _quiet(*args, **kwargs) -> None:
    """The log of ranks other than 0: the launcher shows rank 0's output."""


def _progress(cfg: TrainConfig, total: int, initial: int, desc: str):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                disable=None if not os.environ.get("FORCE_PROGRESS") else False)
