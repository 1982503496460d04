"""The run folder's one owner: records written and read back, resume truncation, the position record."""
from train.rundir import EPOCH, STEP, VAL, Best, Position, RunDir, newest_with_best, time_to_accuracy


def test_metrics_round_trip_and_resume_truncation(tmp_path):
    run = RunDir.create(tmp_path, "r", "cnn")
    for g in range(6):
        run.append_metric(STEP, {"global_step": g, "loss": 1.0 / (g + 1)})
    run.append_metric(VAL, {"epoch": 0, "step": 2, "global_step": 2, "val_acc": 0.95, "wall_s": 1.0})
    run.append_metric(EPOCH, {"epoch": 0, "global_step": 5, "val_acc": 0.991, "wall_s": 2.0})
    run.append_metric(VAL, {"epoch": 1, "step": 2, "global_step": 8, "val_acc": 0.993, "wall_s": 3.0})
    m = run.read_metrics()
    assert [r["global_step"] for r in m.steps] == list(range(6))
    assert [r["val_acc"] for r in m.validations()] == [0.95, 0.991, 0.993]
    assert time_to_accuracy(run, 0.99)["wall_s"] == 2.0 and time_to_accuracy(run, 0.999) is None

    # A checkpoint after 4 steps of epoch 0: every later record is produced again after --resume.
    run.truncate_metrics(Position(epoch=0, step=4, global_step=4))
    m = run.read_metrics()
    assert [r["global_step"] for r in m.steps] == [0, 1, 2, 3]
    assert [r["global_step"] for r in m.vals] == [2] and m.epochs == []


def test_position_survives_a_checkpoint_state_round_trip():
    pos = Position(epoch=3, step=7, global_step=100, best=Best(0.99, 0.03, 2), stale_epochs=1, wall_s=12.5)
    assert Position.from_dict(pos.to_dict()) == pos
    # state.json written before val_loss was recorded in `best` still loads.
    old = {"epoch": 1, "step": 0, "global_step": 10, "best": {"val_acc": -1.0, "epoch": -1}, "stale_epochs": 0, "wall_s": 0.0}
    assert Position.from_dict(old).best == Best()


def test_newest_run_with_a_best_checkpoint(tmp_path):
    assert newest_with_best(tmp_path) is None
    run = RunDir.create(tmp_path, "a", "cnn")
    RunDir.create(tmp_path, "b", "cnn")  # no best/ yet: not exportable
    (run.best_dir).mkdir()
    (run.best_dir / "state.json").write_text("{}")
    assert newest_with_best(tmp_path).path == run.path

