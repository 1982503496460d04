"""The whole path once: synthetic IDX files -> train -> export -> app -> POST a PNG."""
import json

from tests.images import encode, file_field
from tests.synth import make_digits
from train.rundir import RunDir


def test_train_export_serve_end_to_end(tiny_run, tiny_models):
    from serve.app import create_app

    run = RunDir(tiny_run)
    assert run.has_best()
    assert run.read_result()["test_acc"] > 0.1
    version_dir = tiny_models / "mnist-lenet" / "1"
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [-1, 1, 28, 28] and manifest["input"]["dtype"] == "float32"
    assert manifest["labels"] == [str(d) for d in range(10)]
    assert manifest["output"]["semantics"].startswith("probabilities")

    client = create_app({"model_dir": str(tiny_models)}).test_client()
    assert client.get("/healthz").status_code == 200
    images, _ = make_digits(1, seed=99)
    resp = client.post("/predict", data={"image": file_field(encode(255 - images[0]))}, content_type="multipart/form-data")
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert set(body) >= {"digit", "confidence", "probabilities", "model"}
    assert 0 <= body["digit"] <= 9 and isinstance(body["digit"], int)
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
    assert body["confidence"] == max(body["probabilities"])
    assert body["model"] == {"name": "mnist-lenet", "version": 1}


def test_upload_that_is_not_an_image_is_a_json_400(client):
    resp = client.post("/predict", data={"image": file_field(b"GIF89a not really")}, content_type="multipart/form-data")
    assert resp.status_code in (400, 415)
    assert resp.json["error"]["code"] and resp.json["error"]["message"]
    resp = client.post("/predict", data={"image": file_field(b"\x89PNG\r\n\x1a\n garbage")}, content_type="multipart/form-data")
    assert resp.status_code == 400 and resp.json["error"]["code"] == "bad_image"
