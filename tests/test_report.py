"""Pictures and report.md per run: written at the end of training and regenerable from the run folder."""

import numpy as np
from PIL import Image

from tests.conftest import run_module
from train.report import PICTURES, REPORT_MD, confident_mistakes, confusion_matrix
from train.rundir import RunDir


def assert_png(path, min_size=(300, 200)):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size >= min_size, f"{path} is only {im.size}"
        # A real picture, not a blank canvas: several distinct colours.
        assert len(np.unique(np.asarray(im.convert("L")))) > 8


def test_training_writes_pictures_and_a_report(tiny_run):
    for name in PICTURES:
        assert_png(tiny_run / name)
    md = (tiny_run / REPORT_MD).read_text()
    result = RunDir(tiny_run).read_result()
    for name in PICTURES:
        assert f"]({name})" in md, f"report.md does not link {name}"
    assert f"{result['val_acc']:.4f}" in md and f"{result['test_acc']:.4f}" in md
    assert f"{result['parameters']:,}" in md
    assert "| best epoch (validation) | 1 |" in md
    assert "wall time" in md and "images/s" in md
    assert '| model | `"lenet"` |' in md  # the config table
    summary = RunDir(tiny_run).read_report_summary()
    cm = np.array(summary["confusion_val"])
    assert cm.shape == (10, 10) and cm.sum() == 100  # --val-size 100
    assert abs(np.trace(cm) / cm.sum() - result["val_acc"]) < 1e-9
    assert summary["never_predicted_val"] == [str(c) for c in np.flatnonzero(cm.sum(axis=0) == 0)]


def test_report_is_regenerated_from_the_run_folder(tiny_run):
    for name in (*PICTURES, REPORT_MD):
        (tiny_run / name).unlink()
    proc = run_module("train.report", str(tiny_run))
    assert "report:" in proc.stdout
    for name in PICTURES:
        assert_png(tiny_run / name)
    assert (tiny_run / REPORT_MD).is_file()


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    from train.report import main

    assert main([str(tmp_path)]) == 2


def test_confusion_matrix_and_confident_mistakes():
    labels = np.array([0, 1, 2, 2, 3])
    probs = np.full((5, 10), 0.01)
    probs[0, 0] = 0.9   # right
    probs[1, 7] = 0.6   # wrong, 1 -> 7 at 0.6
    probs[2, 2] = 0.8   # right
    probs[3, 5] = 0.95  # wrong, 2 -> 5 at 0.95
    probs[4, 3] = 0.5   # right
    cm = confusion_matrix(labels, probs.argmax(axis=1))
    assert cm.sum() == 5 and np.trace(cm) == 3 and cm[1, 7] == 1 and cm[2, 5] == 1
    assert confident_mistakes(labels, probs, k=5).tolist() == [3, 1]
    assert confident_mistakes(labels, probs, k=1).tolist() == [3]
