"""Data-parallel training through Paddle's own launcher, 2 CPU processes (gloo): each rank trains on a
disjoint slice of every batch, Paddle all-reduces the gradients, only rank 0 writes, and the run
follows the single-process one. Ctrl-C to the launcher checkpoints; --resume continues exactly."""
import signal
import subprocess
import time

import pytest

from tests.conftest import PYTHON, REPO, run_module
from train.rundir import RunDir

ARGS = ["--model", "lenet", "--epochs", "2", "--batch-size", "32", "--val-size", "100", "--optimizer", "adam",
        "--lr", "0.003", "--schedule", "constant", "--log-every", "3", "--checkpoint-every", "4",
        "--keep-checkpoints", "2", "--threads", "1", "--no-progress"]


def launch(log_dir, *args) -> list[str]:
    return [PYTHON, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(log_dir),
            "train/__main__.py", *args]


def records(run_dir, kind):
    return [r for r in RunDir(run_dir).read_records() if r["kind"] == kind]


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory):
    """The same training, once in one process and once in two."""
    root = tmp_path_factory.mktemp("dp-runs")
    data = ["--data-dir", str(synthetic_data), "--runs-dir", str(root)]
    run_module("train", *data, "--run-name", "single", *ARGS)
    proc = subprocess.run(launch(root / "launch-log", *data, "--run-name", "dp", *ARGS), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return root


def test_two_processes_train_like_one(runs):
    single, dp = runs / "single", runs / "dp"
    a, b = RunDir(single).read_result(), RunDir(dp).read_result()
    assert b["processes"] == 2 and a["processes"] == 1
    # Every global batch is split in two and the gradients averaged: the same steps, up to float rounding.
    sa, sb = records(single, "step"), records(dp, "step")
    # The ranks meet only on the logged steps (every 3rd), and what is logged there is the global record.
    assert [r["global_step"] for r in sa] == [r["global_step"] for r in sb] == list(range(2, 30, 3))
    assert all(abs(x["loss"] - y["loss"]) < 1e-4 * max(1.0, abs(x["loss"])) for x, y in zip(sa, sb))
    assert abs(a["val_acc"] - b["val_acc"]) <= 0.02 and abs(a["test_acc"] - b["test_acc"]) <= 0.02
    assert b["test_acc"] > 0.2  # it really learned (chance is 0.1)


def test_only_rank_zero_writes(runs):
    dp = runs / "dp"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["dp", "launch-log", "single"]
    names = lambda run: sorted(p.name for p in (run / "checkpoints").iterdir())  # noqa: E731
    assert names(dp) == names(runs / "single") == ["e0001-s000013", "e0002-s000000"]  # no rank-1 or temp copies
    assert [r["epoch"] for r in records(dp, "epoch")] == [0, 1]  # one line per epoch, not one per rank
    # Mid-epoch validations: both ranks evaluate together (each its share), rank 0 writes one line.
    assert [(r["epoch"], r["step"]) for r in records(dp, "val")] == \
        [(r["epoch"], r["step"]) for r in records(runs / "single", "val")] != []
    assert (dp / "best" / "model.pdparams").is_file() and (dp / "report.md").is_file()
    assert (runs / "launch-log" / "workerlog.1").is_file()  # the launcher really ran two workers


def test_ctrl_c_then_resume_matches_the_uninterrupted_run(runs, synthetic_data, tmp_path):
    data = ["--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path)]
    proc = subprocess.Popen(launch(tmp_path / "log-a", *data, "--run-name", "cut", *ARGS), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marker = tmp_path / "cut" / "checkpoints" / "e0000-s000008"
    deadline = time.monotonic() + 300
    while not marker.is_dir():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # the launcher passes it on to both workers as SIGTERM
    out, _ = proc.communicate(timeout=120)
    assert RunDir(tmp_path / "cut").read_result() is None, "the run must really have been cut short"
    worker0 = (tmp_path / "log-a" / "workerlog.0").read_text()
    assert "checkpoint saved" in worker0, out
    # Both ranks stopped where they meet: a logged step (every 3rd) or the end of an epoch (15 steps).
    stopped = max(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())  # e<epoch>-s<step>
    epoch, step = (int(part[1:]) for part in stopped.split("-"))
    assert (epoch * 15 + step) % 3 == 0 or step == 0, stopped

    resumed = subprocess.run(launch(tmp_path / "log-b", "--resume", str(tmp_path / "cut")), cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, f"{resumed.stdout}\n{resumed.stderr}"
    assert "resumed from" in (tmp_path / "log-b" / "workerlog.0").read_text()

    key = lambda r: (r["global_step"], r["loss"], r["lr"])  # noqa: E731
    assert [key(r) for r in records(tmp_path / "cut", "step")] == [key(r) for r in records(runs / "dp", "step")]
    a = RunDir(runs / "dp").read_result()
    b = RunDir(tmp_path / "cut").read_result()
    assert (a["val_acc"], a["test_acc"], a["best_epoch"]) == (b["val_acc"], b["test_acc"], b["best_epoch"])


@pytest.fixture(scope="module")
def cnn_run(synthetic_data, tmp_path_factory):
    """One epoch of the default net (batch norm) in two processes, non-digits mixed in from the start."""
    root = tmp_path_factory.mktemp("dp-cnn")
    args = [*ARGS[:ARGS.index("--epochs")], "--epochs", "1", *ARGS[ARGS.index("--epochs") + 2:], "--negatives", "0.125",
            "--negatives-from-epoch", "0"]
    args[args.index("lenet")] = "cnn"
    proc = subprocess.run(launch(root / "log", "--data-dir", str(synthetic_data), "--runs-dir", str(root),
                                 "--run-name", "neg", *args), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return root


def test_two_processes_gather_the_whole_pool_of_negatives(cnn_run):
    """Each rank draws its share of the non-digits; all of them train with the same whole pool."""
    import re

    from train import openset
    from train.data import steps_per_epoch
    from train.rundir import RunDir

    made = re.search(r"(\d+) non-digit pictures made", (cnn_run / "log" / "workerlog.0").read_text())
    cfg = RunDir(cnn_run / "neg").read_config()
    per_epoch = steps_per_epoch(cfg.data["train"], cfg.batch_size, drop_last=True)
    whole = openset.pool(openset.pool_size(cfg.negatives_pool, cfg.negatives, cfg.batch_size, per_epoch), cfg.seed,
                         cfg.negatives_small)
    assert made and int(made.group(1)) == len(whole) > 60  # both ranks' shares, not rank 0's alone


def test_validation_in_shares_gives_rank_zero_figures(cnn_run):
    """Each rank evaluates half of the validation set and the sums are added; each rank's batch-norm
    statistics come from its own slices, so rank 0's are used on both halves: what the run recorded
    for its best weights is what one process finds evaluating them on the whole set."""
    import paddle

    from train import checkpoint as ckpt
    from train.data import load_data
    from train.loop import evaluate
    from train.models import build_model
    from train.rundir import Position, RunDir

    run = RunDir(cnn_run / "neg")
    cfg = run.read_config()
    model = build_model(cfg.model, cfg.dropout)
    best = Position.from_dict(ckpt.load_into(run.best_dir, model)["position"]).best
    paddle.set_device("cpu")
    data = load_data(cfg)
    whole = evaluate(model, data.val_x, data.val_y)
    assert whole["n"] == len(data.val_y) == 100
    assert whole["acc"] == best.val_acc and whole["loss"] == pytest.approx(best.val_loss, rel=1e-9)


def test_ranks_take_disjoint_slices_that_make_up_each_batch():
    import numpy as np

    from train.distributed import Dist

    batches = [(s, np.arange(8 * s, 8 * s + 8).reshape(8, 1), np.arange(8 * s, 8 * s + 8)) for s in range(3)]
    slices = [list(Dist(rank=r, world_size=2).shard(iter(batches))) for r in (0, 1)]
    for (step, _, y), (s0, _, y0), (s1, _, y1) in zip(batches, *slices):
        assert step == s0 == s1 and len(y0) == len(y1) == 4
        assert not set(y0) & set(y1) and sorted([*y0, *y1]) == list(y)
    assert list(Dist().shard(iter(batches)))[0][2].tolist() == list(range(8))  # one process: untouched
    # Records to evaluate: every one in exactly one rank's share, shares within one of each other.
    for world in (1, 2, 3):
        shares = [np.arange(101)[Dist(rank=r, world_size=world).share_of(101)] for r in range(world)]
        assert np.concatenate(shares).tolist() == list(range(101))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        Dist(rank=0, world_size=3).check_batch_size(32)
    # Ranks meet on the logged steps only; one process, every step (free: a signal stops it at once).
    assert [s for s in range(1, 10) if Dist(rank=1, world_size=2).meets(s, 3)] == [3, 6, 9]
    assert all(Dist().meets(s, 3) for s in range(1, 10))
    # Dropout masks differ between ranks; rank 0 keeps the run's own seed.
    assert Dist(rank=0, world_size=2).rank_seed(7) == Dist().rank_seed(7) == 7
    assert Dist(rank=1, world_size=2).rank_seed(7) not in (7, Dist(rank=2, world_size=3).rank_seed(7))
