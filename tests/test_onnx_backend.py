"""BACKEND=onnxruntime: the model folder's model.onnx, served only when the manifest lists it with
its sha256, answers as Paddle Inference does."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from serve.model_store import sha256_file
from tests.images import as_upload, encode


@pytest.fixture(scope="module")
def onnx_model(committed_model, tmp_path_factory):
    """The committed model with model.onnx beside it, as `make export FORMAT=onnx` publishes it."""
    from export import onnx

    folder = tmp_path_factory.mktemp("onnx-model") / committed_model.name  # the folder names its version
    shutil.copytree(committed_model, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["onnx"] = onnx.convert(folder, manifest["files"])
    manifest["sha256"][manifest["files"]["onnx"]] = sha256_file(folder / manifest["files"]["onnx"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_onnxruntime_backend_answers_as_paddle_inference(onnx_model, mnist_dir):
    from train.mnist import load_split

    from serve.app import create_app

    test = load_split(mnist_dir, "test")
    pngs = [encode(as_upload(test.images[i])) for i in range(8)]
    paddle = create_app({"model_dir": str(onnx_model)}).test_client()
    ort_app = create_app({"model_dir": str(onnx_model), "backend": "onnxruntime"})
    assert type(ort_app.extensions["digits"].predictor()).__name__ == "OnnxPredictor"
    ort = ort_app.test_client()
    for png in pngs:
        a = paddle.post("/predict", data=png, content_type="image/png").json
        b = ort.post("/predict", data=png, content_type="image/png").json
        assert a["digit"] == b["digit"]
        assert np.allclose(a["probabilities"], b["probabilities"], atol=1e-5)


def test_onnxruntime_backend_refuses_a_model_onnx_the_manifest_does_not_vouch_for(onnx_model, committed_model, tmp_path):
    from serve.app import create_app

    # No model.onnx in the manifest (the committed model): not ready, and it says why.
    app = create_app({"model_dir": str(committed_model), "backend": "onnxruntime"})
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and "model.onnx" in r.json["error"]["message"]
    # A model.onnx altered after publishing: refused by its checksum.
    altered = tmp_path / onnx_model.name
    shutil.copytree(onnx_model, altered)
    with open(altered / "model.onnx", "ab") as f:
        f.write(b"\0")
    app = create_app({"model_dir": str(altered), "backend": "onnxruntime"})
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and "model.onnx does not match its sha256" in r.json["error"]["message"]
