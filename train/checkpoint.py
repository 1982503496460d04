"""Self-describing checkpoints, written atomically: a temp folder, then one rename.

A checkpoint folder holds model.pdparams, optimizer.pdopt and state.json (config, epoch, step,
metrics). Only renamed folders are complete, so a crash mid-save never leaves one that is trusted.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import paddle

MODEL_FILE = "model.pdparams"
OPTIMIZER_FILE = "optimizer.pdopt"
EMA_FILE = "ema.pdparams"  # the running average of the weights, when training keeps one
STATE_FILE = "state.json"
CKPT_DIR = "checkpoints"
BEST_DIR = "best"


def checkpoint_name(epoch: int, step: int) -> str:
    # Sorts in training order: epoch, then step within the epoch.
    return f"e{epoch:04d}-s{step:06d}"


def save(run_dir: Path, name: str, model, optimizer, state: dict, parent: str = CKPT_DIR, ema=None) -> Path:
    """Write a checkpoint folder atomically and return its path; an existing one is replaced whole."""
    root = Path(run_dir) / parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        paddle.save(model.state_dict(), str(tmp / MODEL_FILE))
        if optimizer is not None:
            paddle.save(optimizer.state_dict(), str(tmp / OPTIMIZER_FILE))
        if ema is not None:
            paddle.save(ema.state_dict(), str(tmp / EMA_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        _fsync_dir(tmp)
        final = root / name
        if final.exists():
            old = root / f".old-{name}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir() if path.is_dir() else []:
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp folders are never listed)."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / STATE_FILE).is_file())


def latest(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def prune(run_dir: Path, keep: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)


def read_state(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / STATE_FILE).read_text())


def load_into(ckpt: Path, model, optimizer=None, ema=None) -> dict:
    """Restore model (and optimizer, with its LR schedule, and the weight average) from a checkpoint; return its state."""
    ckpt = Path(ckpt)
    model.set_state_dict(paddle.load(str(ckpt / MODEL_FILE)))
    if optimizer is not None:
        optimizer.set_state_dict(paddle.load(str(ckpt / OPTIMIZER_FILE)))
    if ema is not None:
        ema.set_state_dict(paddle.load(str(ckpt / EMA_FILE)))
    return read_state(ckpt)
