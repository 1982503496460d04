"""Export publishes only verified models: parity, atomic versions, checksums, reproducibility, ONNX."""
import json
import shutil

import numpy as np
import pytest

from serve.model_store import MANIFEST, ModelError, load_manifest, sha256_file


def export(*args):
    from export.__main__ import main

    assert main(list(args)) == 0


def test_published_manifest_describes_the_model(tiny_models, tiny_run):
    version = tiny_models / "mnist-lenet" / "1"
    m = load_manifest(version)
    assert m["name"] == "mnist-lenet" and m["version"] == 1
    assert m["format"] == "paddle-pir" and (version / m["files"]["model"]).suffix == ".json"
    assert m["parity"]["max_abs_diff_inference"] <= 1e-5 and m["parity"]["max_abs_diff_static"] <= 1e-5
    assert m["parity"]["argmax_equal"] is True
    assert m["source"]["checkpoint"] == str(tiny_run / "best")
    assert m["source"]["training_config"]["model"] == "lenet"
    assert set(m["source"]["data"]["sha256"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    result = json.loads((tiny_run / "result.json").read_text())
    # Test accuracy measured with Paddle Inference on the exported files equals the dygraph model's.
    assert m["metrics"]["test_acc"] == pytest.approx(result["test_acc"], abs=1 / m["metrics"]["test_records"])
    assert m["metrics"]["val_acc"] == result["val_acc"]
    report = tiny_run / "export-mnist-lenet-1"
    assert (report / "reliability.png").is_file() and (report / "tradeoff.png").is_file()
    curve = json.loads((report / "calibration.json").read_text())["tradeoff"]
    flagged = [r["validation"]["non_digits_flagged"] for r in curve]
    assert flagged == sorted(flagged), "a higher threshold never flags fewer non-digits"
    assert set(m["rejection"]["validation"]["scores"]) >= {"top_probability", "digit_probability", "top_share"}


def test_versions_increase_and_reexport_is_reproducible(tiny_run, tmp_path):
    export("--run", str(tiny_run), "--models-dir", str(tmp_path))
    v1 = tmp_path / "mnist-lenet" / "1"
    before = {p.name: sha256_file(p) for p in v1.iterdir()}
    export("--run", str(tiny_run), "--models-dir", str(tmp_path))
    v2 = tmp_path / "mnist-lenet" / "2"
    assert v2.is_dir()
    assert {p.name: sha256_file(p) for p in v1.iterdir()} == before, "a published version is never rewritten"
    m1, m2 = load_manifest(v1), load_manifest(v2)
    assert m1["sha256"][m1["files"]["params"]] == m2["sha256"][m2["files"]["params"]], "same checkpoint, same params"
    assert "same_checkpoint_as" not in m1["source"] and m2["source"]["same_checkpoint_as"]["versions"] == [1]
    assert sorted(p.name for p in (tmp_path / "mnist-lenet").iterdir()) == ["1", "2"]


def test_failed_parity_publishes_nothing(tiny_run, tmp_path, monkeypatch):
    import export.__main__ as cli

    monkeypatch.setattr(cli, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(SystemExit, match="parity check failed"):
        cli.main(["--run", str(tiny_run), "--models-dir", str(tmp_path)])
    assert list((tmp_path / "mnist-lenet").iterdir()) == [], "no version and no staging folder left behind"


def test_crash_midway_leaves_no_version(tiny_run, tmp_path, monkeypatch):
    import export.__main__ as cli

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cli, "publish", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(["--run", str(tiny_run), "--models-dir", str(tmp_path)])
    assert list((tmp_path / "mnist-lenet").iterdir()) == []


@pytest.mark.parametrize("damage", ["alter", "remove"])
def test_serving_refuses_files_that_do_not_match_the_manifest(tiny_models, tmp_path, damage):
    from serve.app import create_app

    version = tmp_path / "m" / "1"
    shutil.copytree(tiny_models / "mnist-lenet" / "1", version)
    params = version / load_manifest(version)["files"]["params"]
    if damage == "alter":
        raw = bytearray(params.read_bytes())
        raw[-1] ^= 0xFF
        params.write_bytes(bytes(raw))
    else:
        params.unlink()
    with pytest.raises(ModelError, match="does not match its sha256|is missing"):
        load_manifest(version)
    client = create_app({"model_dir": str(version)}).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "inference.pdiparams" in ready.json["error"]["message"]
    resp = client.post("/predict", data=b"\x89PNG\r\n\x1a\n", content_type="image/png")
    assert resp.status_code == 503 and resp.json["error"]["code"] == "not_ready"


def test_onnx_export_matches_paddle_inference(tiny_run, tmp_path):
    import onnxruntime as ort

    from serve.predictor import Predictor

    export("--run", str(tiny_run), "--models-dir", str(tmp_path), "--format", "onnx")
    version = tmp_path / "mnist-lenet" / "1"
    m = load_manifest(version)
    assert m["files"]["onnx"] in m["sha256"]
    assert m["parity"]["max_abs_diff_onnx"] <= 1e-5 and m["parity"]["argmax_equal_onnx"]
    x = np.random.default_rng(0).normal(size=(8, 1, 28, 28)).astype(np.float32)
    session = ort.InferenceSession(str(version / m["files"]["onnx"]), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {m["input"]["name"]: x})[0], Predictor(version, m)(x), atol=1e-5)


def test_published_folder_is_readable_by_other_users(tiny_models):
    import stat

    version = tiny_models / "mnist-lenet" / "1"
    assert stat.S_IMODE(version.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in version.iterdir())
