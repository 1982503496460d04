"""Training with non-digits and exporting with calibration, end to end through the real CLIs (tiny)."""
import json

import numpy as np

from tests.conftest import run_module


def test_train_with_negatives_then_export_calibrated(synthetic_data, tmp_path):
    runs, models = tmp_path / "runs", tmp_path / "models"
    out = run_module("train", "--data-dir", str(synthetic_data), "--runs-dir", str(runs), "--run-name", "oe",
                     "--model", "lenet", "--epochs", "1", "--batch-size", "32", "--val-size", "100",
                     "--negatives", "0.25", "--negatives-from-epoch", "0", "--negatives-pool", "120",
                     "--no-progress").stdout
    assert "non-digit pictures made" in out
    cfg = json.loads((runs / "oe" / "config.json").read_text())
    assert cfg["negatives"] == 0.25 and cfg["negatives_pool"] == 120
    run_module("export", "--run", str(runs / "oe"), "--models-dir", str(models),
               "--calibration-digits", "100", "--calibration-negatives", "80")
    manifest = json.loads((models / "mnist-lenet" / "1" / "manifest.json").read_text())
    rej, calib = manifest["rejection"], manifest["calibration"]
    assert rej["open_set"] is True and 0 < rej["threshold"] < 1 and calib["temperature"] > 0
    assert set(rej["test"]["non_digits"]) >= {"letters", "photos", "all"}
    report = runs / "oe" / "export-mnist-lenet-1"
    assert (report / "reliability.png").stat().st_size > 0
    assert json.loads((report / "calibration.json").read_text())["threshold"] == rej["threshold"]


def test_the_published_graph_applies_the_temperature(tiny_run, tmp_path):
    """Exported probabilities are softmax(logits / T) of the checkpoint's own network."""
    import paddle

    from export.convert import load_checkpoint_model
    from serve.model_store import load_manifest, resolve
    from serve.predictor import Predictor
    from train.calibration import softmax

    run_module("export", "--run", str(tiny_run), "--models-dir", str(tmp_path), "--calibration-digits", "100",
               "--calibration-negatives", "40")
    folder = resolve(tmp_path)
    manifest = load_manifest(folder)
    t = manifest["calibration"]["temperature"]
    assert manifest["rejection"]["open_set"] is False  # lenet trains without negatives by default
    x = np.random.default_rng(0).normal(0, 1, (8, 1, 28, 28)).astype(np.float32)
    model, _, _ = load_checkpoint_model(tiny_run / "best")
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(Predictor(folder, manifest)(x), softmax(logits, t), atol=1e-5)


def test_non_digits_join_at_their_epoch(synthetic_data, tmp_path):
    """The pools (non-digits, digits read from rows) are made when the first epoch that mixes them
    in begins, not before epoch 1."""
    out = run_module("train", "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path), "--run-name", "late",
                     "--model", "lenet", "--epochs", "2", "--batch-size", "32", "--val-size", "100",
                     "--negatives", "0.25", "--negatives-from-epoch", "1", "--negatives-pool", "60",
                     "--read-digits", "0.25", "--read-misses", "0.125", "--no-progress").stdout
    lines = out.splitlines()
    first_epoch = next(i for i, l in enumerate(lines) if l.startswith("epoch 1/2:"))
    for pool in ("non-digit pictures made", "digits read from rows made"):
        made = [i for i, l in enumerate(lines) if pool in l]
        assert len(made) == 1 and made[0] > first_epoch and "from epoch 2" in lines[made[0]], out
    assert "wrong readings, 0.125 of each batch" in next(l for l in lines if "digits read from rows made" in l), out
    config = json.loads((tmp_path / "late" / "config.json").read_text())
    assert config["read_digits"] == 0.25 and config["read_misses"] == 0.125
