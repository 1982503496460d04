"""A training run: data, model, optimizer, the epoch loop, checkpoints, resume and the final report."""
from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import paddle

from serve.cpu import fast_mkl_on_amd  # shared with serving; serve never imports train
from train import checkpoint as ckpt
from train import distributed, openset
from train.config import TrainConfig
from train.data import Augment, Dataset, load_data, steps_per_epoch, train_batches
from train.loop import evaluate, train_one_epoch
from train.models import build_model, count_parameters
from train.optim import WeightAverage, build_optimizer, build_schedule
from train.rundir import EPOCH, STEP, VAL, Best, Position, RunDir

__all__ = ["new_run_dir", "setup_device", "train", "finish"]


def setup_device(cfg: TrainConfig) -> None:
    if cfg.device == "gpu" and not paddle.device.is_compiled_with_cuda():
        sys.exit("--device gpu: this Paddle build has no CUDA support (install paddlepaddle-gpu)")
    if cfg.device == "cpu":
        fast_mkl_on_amd()
    paddle.set_device(cfg.device)
    if cfg.threads:
        paddle.base.core.set_num_threads(cfg.threads)


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


def new_run_dir(runs_dir: str, name: str | None, model: str) -> Path:
    return RunDir.create(runs_dir, name, model).path


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False, dry_run: bool = False, log=print) -> dict:
    """Train (or continue) the run in run_dir and return its result. Exit code semantics are the CLI's."""
    t_start = time.perf_counter()  # wall_s counts set-up too (data, negatives): the user's wait
    run = RunDir(run_dir)
    run_dir = run.path
    cfg = cfg.resolved()
    setup_device(cfg)
    dist = distributed.setup(cfg.device)  # data-parallel under paddle.distributed.launch; only rank 0 writes
    dist.check_batch_size(cfg.batch_size)
    log = log if dist.is_main else _quiet
    data = load_data(cfg)
    cfg.data = data.info
    if dist.is_main:
        run.write_config(cfg)

    paddle.seed(cfg.seed)  # initial weights are a function of the seed
    model = build_model(cfg.model, cfg.dropout, cfg.softmax_in_model)
    per_epoch = 1 if dry_run else steps_per_epoch(len(data.train_y), cfg.batch_size, drop_last=True)
    if per_epoch == 0:
        raise ValueError(f"{len(data.train_y)} training records make no full batch of {cfg.batch_size}")
    schedule = build_schedule(cfg.schedule, cfg.lr, cfg.epochs * per_epoch, warmup_steps=round(cfg.warmup_epochs * per_epoch))
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), schedule, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    eval_model = build_model(cfg.model, cfg.dropout, cfg.softmax_in_model) if ema else model  # holds the average
    n_params = count_parameters(model)
    log(f"model {cfg.model}: {n_params:,} parameters; data {data.info['train']} train / {data.info['val']} val "
        f"/ {data.info['test']} test from {data.info['dir']}")

    pos = Position()
    if resume:
        last = ckpt.latest(run_dir)
        if last is not None:
            pos = Position.from_dict(ckpt.load_into(last, model, optimizer, ema)["position"])
            if dist.is_main:
                run.truncate_metrics(pos)
            log(f"resumed from {last} (epoch {pos.epoch}, step {pos.step})")
        elif dist.is_main:
            run.clear_metrics()
            log(f"no complete checkpoint in {run_dir}: starting from scratch")

    train_model = dist.wrap(model)  # after resume: DataParallel starts from rank 0's weights
    augment = Augment() if cfg.augment else None
    negatives = None
    loss_fn = openset.loss_for(cfg.open_set, cfg.negatives_weight) if cfg.negatives else None

    def negatives_pool():
        """The run's non-digits, made when the first epoch that mixes them in begins (a function of
        the seed, so a resumed run makes the same ones)."""
        nonlocal negatives
        if negatives is None:
            t_neg = time.perf_counter()
            n = openset.pool_size(cfg.negatives_pool, cfg.negatives, cfg.batch_size, per_epoch)
            negatives = openset.pool(n, cfg.seed, cfg.negatives_small, dist, data.train_x,
                                     {"pairs": cfg.negatives_pairs, "parts": cfg.negatives_parts})
            log(f"{len(negatives)} non-digit pictures made in {time.perf_counter() - t_neg:.1f} s; "
                f"{cfg.negatives:.3f} of each batch from epoch {cfg.negatives_from_epoch + 1}")
        return negatives

    read = None

    def read_pool():
        """(images, labels, misses): training digits as /read cuts them out of rows, made with the non-digits."""
        nonlocal read
        if read is None:
            t_read = time.perf_counter()
            n = openset.pool_size(cfg.negatives_pool, cfg.read_digits, cfg.batch_size, per_epoch)
            read = openset.read_pool(n, cfg.seed, dist, data.train_x, data.train_y, misses=cfg.read_misses > 0,
                                        underlines=cfg.read_underlines)
            log(f"{len(read[0])} digits read from rows made in {time.perf_counter() - t_read:.1f} s; "
                f"{cfg.read_digits:.3f} of each batch from epoch {cfg.negatives_from_epoch + 1}"
                + (f"; {len(read[2])} wrong readings, {cfg.read_misses:.3f} of each batch" if cfg.read_misses else ""))
        return read

    started = t_start - pos.wall_s
    mid_vals = mid_epoch_validations(per_epoch, 1 if dry_run else cfg.val_per_epoch)

    def in_detail(epoch: int) -> bool:
        """Validated mid-epoch and with the raw weights too: the epochs where time to accuracy is decided."""
        return not cfg.val_early_epochs or epoch < cfg.val_early_epochs

    def validate(raw: bool = False) -> dict:
        """Validation of the evaluated weights (the average when --ema); raw=True adds the raw weights'
        figures beside it, so a run shows what the average buys. Every rank evaluates its share with
        rank 0's state (on the other ranks that replaces their own batch-norm running statistics,
        which training never reads and a resume replaces alike)."""
        if ema is None:
            return evaluate(model, data.val_x, data.val_y, dist)
        ema.copy_to(eval_model)
        v = evaluate(eval_model, data.val_x, data.val_y, dist)
        if raw:
            r = evaluate(model, data.val_x, data.val_y, dist)
            v.update(raw_loss=r["loss"], raw_acc=r["acc"])
        return v

    def save_checkpoint():
        pos.wall_s = time.perf_counter() - started
        if not dist.is_main:
            return
        name = ckpt.checkpoint_name(pos.epoch, pos.step)
        ckpt.save(run_dir, name, model, optimizer, {"config": cfg.to_dict(), "position": pos.to_dict()}, ema=ema)
        ckpt.prune(run_dir, cfg.keep_checkpoints)

    interrupted = 0
    with _StopFlag() as stop:
        while pos.epoch < cfg.epochs:
            epoch = pos.epoch
            bar = _progress(cfg, per_epoch, pos.step, f"epoch {epoch + 1}/{cfg.epochs}") if dist.is_main else None

            def on_step(r: dict) -> bool:
                pos.step = r["step"] + 1
                pos.global_step += 1
                if ema is not None:
                    ema.update(model)
                # The ranks meet on the steps whose record is written: the record becomes the global one
                # and they agree on stopping at this very step (a signal waits up to --log-every steps).
                logged = pos.global_step % cfg.log_every == 0
                meet = dist.meets(pos.global_step, cfg.log_every)
                agreed = dist.sync_step(r, stop.signum) if meet else 0
                stop.signum = stop.signum or agreed
                if dist.is_main and logged:
                    run.append_metric(STEP, {"global_step": pos.global_step - 1, **r})
                if bar is not None:
                    bar.update(1)
                    if meet:  # between meetings a rank knows only its own share
                        bar.set_postfix(loss=f"{r['loss']:.4f}", acc=f"{r['acc']:.3f}", img_s=f"{r['images_per_s']:.0f}")
                if pos.step in mid_vals and in_detail(epoch):
                    # Watch time-to-accuracy inside the epoch. Eval mode touches neither the weights, the
                    # batch-norm statistics nor the RNG (reseeded every step), so training goes on unchanged.
                    val = validate()
                    train_model.train()
                    if dist.is_main:
                        run.append_metric(VAL, {"epoch": epoch, "step": pos.step - 1, "global_step": pos.global_step - 1,
                                                "val_loss": val["loss"], "val_acc": val["acc"],
                                                "wall_s": time.perf_counter() - started})
                    if bar is not None:
                        bar.write(f"epoch {epoch + 1}, step {pos.step}/{per_epoch}: val acc {val['acc']:.4f} "
                                  f"at {time.perf_counter() - started:.0f} s")
                stopping = bool(agreed) or (dry_run and pos.step >= per_epoch)
                if cfg.checkpoint_every and pos.global_step % cfg.checkpoint_every == 0 and pos.step < per_epoch:
                    save_checkpoint()
                return stopping

            batches = train_batches(  # each rank loads and augments only its slice of every global batch
                data.train_x, data.train_y, batch_size=cfg.batch_size, seed=cfg.seed,
                epoch=epoch, start_step=pos.step,
                augment=augment, augment_from_epoch=cfg.augment_from_epoch, part=dist.part(cfg.batch_size),
            )
            if cfg.read_digits and epoch >= cfg.negatives_from_epoch:
                images, labels, misses = read_pool()
                batches = openset.mix(batches, images, cfg.read_digits, seed=dist.rank_seed(cfg.seed), epoch=epoch,
                                      labels=labels, salt=openset.READ_SALT)
                if cfg.read_misses:
                    batches = openset.mix(batches, misses, cfg.read_misses, seed=dist.rank_seed(cfg.seed), epoch=epoch,
                                          salt=openset.MISS_SALT)
            if cfg.negatives and epoch >= cfg.negatives_from_epoch:  # each rank adds its own share, with its own seed
                batches = openset.mix(batches, negatives_pool(), cfg.negatives, seed=dist.rank_seed(cfg.seed), epoch=epoch)
            stats = train_one_epoch(train_model, optimizer, schedule, batches, seed=dist.rank_seed(cfg.seed), epoch=epoch,
                                    l1=cfg.l1, label_smoothing=cfg.label_smoothing, on_step=on_step, loss_fn=loss_fn)
            stats = dist.reduce_epoch(stats)
            if bar is not None:
                bar.close()
            if stop.signum and pos.step < per_epoch:
                save_checkpoint()
                interrupted = stop.signum
                log(f"stopped by signal {stop.signum}: checkpoint saved at epoch {epoch} step {pos.step}; "
                    f"continue with --resume {run_dir}")
                break

            val = validate(raw=in_detail(epoch))
            record = {"epoch": epoch, "train_loss": stats["loss"], "train_acc": stats["acc"],
                      "val_loss": val["loss"], "val_acc": val["acc"], "images_per_s": stats["images_per_s"],
                      **({"val_raw_loss": val["raw_loss"], "val_raw_acc": val["raw_acc"]} if "raw_acc" in val else {}),
                      "lr": float(optimizer.get_lr()), "global_step": pos.global_step - 1,
                      "wall_s": time.perf_counter() - started}
            if dist.is_main:
                run.append_metric(EPOCH, record)
            log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {stats['loss']:.4f} acc {stats['acc']:.4f} | "
                f"val loss {val['loss']:.4f} acc {val['acc']:.4f} | {stats['images_per_s']:.0f} img/s | "
                f"{record['wall_s']:.0f} s")

            pos.epoch, pos.step = epoch + 1, 0
            if val["acc"] > pos.best.val_acc:
                pos.best = Best(val_acc=val["acc"], val_loss=val["loss"], epoch=epoch)
                pos.stale_epochs = 0
                if dist.is_main:
                    ckpt.save(run_dir, ckpt.BEST_DIR, eval_model, None, {"config": cfg.to_dict(), "position": pos.to_dict()},
                              parent=".")
            else:
                pos.stale_epochs += 1
            save_checkpoint()
            stop.signum = dist.agree_signal(stop.signum)
            if stop.signum:
                interrupted = stop.signum
                log(f"stopped by signal {stop.signum} after epoch {epoch + 1}; continue with --resume {run_dir}")
                break
            if cfg.patience and pos.stale_epochs >= cfg.patience:
                log(f"early stop: no validation gain for {cfg.patience} epochs")
                break

    if interrupted:
        return {"interrupted": interrupted, "run_dir": str(run_dir)}
    if not dist.is_main:
        return {"rank": dist.rank, "run_dir": str(run_dir)}
    result = finish(run, cfg, data, n_params, pos, log, processes=dist.world_size)
    _write_report(run_dir, data, log)
    return result


def mid_epoch_validations(per_epoch: int, per_epoch_validations: int) -> set[int]:
    """Steps (1-based, within an epoch) after which to validate, besides the epoch's end."""
    k = max(per_epoch_validations, 1)
    return {per_epoch * i // k for i in range(1, k)} - {0, per_epoch}


def finish(run: RunDir, cfg: TrainConfig, data: Dataset, n_params: int, pos: Position, log=print, processes: int = 1) -> dict:
    """Touch the test set once: the best-on-validation weights, evaluated for the report."""
    run = RunDir(run) if not isinstance(run, RunDir) else run
    model = build_model(cfg.model, cfg.dropout, cfg.softmax_in_model)
    best = Position.from_dict(ckpt.load_into(run.best_dir, model)["position"]).best
    test = evaluate(model, data.test_x, data.test_y)
    result = {
        "run_dir": str(run.path),
        "model": cfg.model,
        "parameters": n_params,
        "best_epoch": best.epoch,
        "val_acc": best.val_acc,
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "epochs_run": pos.epoch,
        "wall_s": pos.wall_s,
        "processes": processes,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run.write_result(result)
    log(f"best epoch {result['best_epoch'] + 1}: val acc {result['val_acc']:.4f}, test acc {result['test_acc']:.4f} "
        f"({run.result_path})")
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
