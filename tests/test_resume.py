"""The course's resume check, bit for bit: a run killed mid-epoch and resumed gives the same
per-step losses as an uninterrupted run with the same seed (the weight average included: its
validation figures must match too)."""
import signal
import subprocess
import time

import pytest

from tests.conftest import PYTHON, REPO, run_module
from train.rundir import RunDir

ARGS = ["--model", "cnn", "--epochs", "2", "--batch-size", "32", "--val-size", "100", "--log-every", "1", "--ema", "0.9",
        # resumed in epoch 0: epoch 1, the first augmented one with non-digits, runs after it
        "--augment-from-epoch", "1", "--negatives-from-epoch", "1",
        "--checkpoint-every", "4", "--keep-checkpoints", "2", "--no-progress", "--threads", "1",
        "--val-early-epochs", "1"]  # epoch 0 validated in detail, epoch 1 once


def step_losses(run_dir):
    return [(r["global_step"], r["loss"], r["lr"]) for r in RunDir(run_dir).read_metrics().steps]


def epoch_records(run_dir):
    return [(r["epoch"], r["val_loss"], r["val_acc"]) for r in RunDir(run_dir).read_metrics().epochs]


@pytest.fixture(scope="module")
def uninterrupted(synthetic_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("resume-runs")
    run_module("train", "--data-dir", str(synthetic_data), "--runs-dir", str(runs), "--run-name", "straight", *ARGS)
    return runs / "straight"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_then_resumed_run_matches_uninterrupted(sig, synthetic_data, uninterrupted, tmp_path):
    cmd = [PYTHON, "-m", "train", "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path), "--run-name", "cut", *ARGS]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpts = tmp_path / "cut" / "checkpoints"
    deadline = time.monotonic() + 300
    # Interrupt once the second mid-epoch checkpoint exists: well inside epoch 0 (15 steps).
    while not (ckpts / "e0000-s000008").is_dir():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Ctrl-C: a checkpoint at the current step, then a clean exit
        assert proc.returncode == 130, out
        assert "checkpoint saved" in out
    assert RunDir(tmp_path / "cut").read_result() is None, "the run must really have been cut short"

    run_module("train", "--resume", str(tmp_path / "cut"))

    assert step_losses(tmp_path / "cut") == step_losses(uninterrupted)
    assert epoch_records(tmp_path / "cut") == epoch_records(uninterrupted)
    a = RunDir(uninterrupted).read_result()
    b = RunDir(tmp_path / "cut").read_result()
    assert (a["test_acc"], a["val_acc"], a["best_epoch"]) == (b["test_acc"], b["val_acc"], b["best_epoch"])


def test_only_the_early_epochs_are_validated_in_detail(uninterrupted):
    """Epoch 0 (--val-early-epochs 1): a validation mid-epoch and the raw weights beside the average at its
    end; epoch 1: one validation, at its end."""
    metrics = RunDir(uninterrupted).read_metrics()
    assert [r["epoch"] for r in metrics.vals] == [0]
    assert [r["epoch"] for r in metrics.epochs] == [0, 1]
    assert ["val_raw_acc" in r for r in metrics.epochs] == [True, False]


def test_half_written_checkpoint_is_never_trusted(uninterrupted, tmp_path):
    from train import checkpoint as ckpt

    latest = ckpt.latest(uninterrupted)
    assert latest is not None and latest.name == "e0002-s000000"
    # A crash mid-save leaves only a hidden temp folder: it is not listed, so resume ignores it.
    (uninterrupted / "checkpoints" / ".tmp-e0003-s000000-xyz").mkdir()
    incomplete = uninterrupted / "checkpoints" / "e0009-s000000"
    incomplete.mkdir()  # a folder without state.json is not a checkpoint either
    try:
        assert ckpt.latest(uninterrupted) == latest
    finally:
        incomplete.rmdir()
        (uninterrupted / "checkpoints" / ".tmp-e0003-s000000-xyz").rmdir()
