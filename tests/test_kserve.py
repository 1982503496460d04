"""The Open Inference Protocol (KServe v2), proven with NVIDIA's own client, tritonclient[http], unmodified,
against the committed model under a real gunicorn server."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serve import rejection
from serve.preprocess import Limits, Spec, prepare
from tests.conftest import free_port, gunicorn_cmd, running_server
from tests.images import as_upload, encode
from tests.synth import make_digits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manifest(committed_model) -> dict:
    return json.loads((committed_model / "manifest.json").read_text())


@pytest.fixture(scope="module")
def server(committed_model):
    port = free_port()
    env = {"PORT": str(port), "WORKERS": "1", "THREADS": "1", "MODEL_DIR": str(committed_model), "ACCESS_LOG": ""}
    with running_server(gunicorn_cmd(), env, port, ready_path="/v2/health/ready") as proc:
        yield proc


@pytest.fixture()
def triton(server):
    with httpclient.InferenceServerClient(url=server.base_url.removeprefix("http://")) as client:
        yield client


@pytest.fixture(scope="module")
def uploads() -> list[bytes]:
    """Five digits as users send them: dark ink on white, larger than 28x28; PNGs and one JPEG."""
    images, _ = make_digits(5, seed=11)
    files = [encode(as_upload(img)) for img in images[:4]]
    return files + [encode(as_upload(images[4]).convert("RGB"), "JPEG", quality=90)]


@pytest.fixture(scope="module")
def reference(server, uploads) -> np.ndarray:
    """What /predict says about each upload: the numbers the v2 endpoints must agree with."""
    probs = []
    for data in uploads:
        resp = requests.post(server.base_url + "/predict", files={"image": ("d", data, "application/octet-stream")}, timeout=30)
        assert resp.status_code == 200, resp.text
        probs.append(resp.json()["probabilities"])
    return np.array(probs, np.float32)


def prepared(uploads, manifest) -> np.ndarray:
    """The FP32 [N,1,28,28] tensor a client preprocessing like the manifest says would send."""
    return np.stack([prepare(data, Spec.from_manifest(manifest), Limits()).tensor for data in uploads])


def fp32_input(manifest, tensor: np.ndarray, binary: bool = True):
    inp = httpclient.InferInput(manifest["input"]["name"], list(tensor.shape), "FP32")
    return inp.set_data_from_numpy(tensor, binary_data=binary)


def bytes_input(files: list[bytes], binary: bool = True):
    inp = httpclient.InferInput("image_bytes", [len(files)], "BYTES")
    if binary:
        return inp.set_data_from_numpy(np.array(files, dtype=np.object_), binary_data=True)
    return inp.set_data_from_numpy(np.array([base64.b64encode(f) for f in files], dtype=np.object_), binary_data=False)


def expect_error(status: int, call, *args, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    assert info.value.status() == str(status), info.value
    assert info.value.message()
    return info.value.message()


def test_health_and_metadata(triton, manifest):
    name, version = manifest["name"], str(manifest["version"])
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready(name) and triton.is_model_ready(name, version)
    assert not triton.is_model_ready("no-such-model") and not triton.is_model_ready(name, "999")

    meta = triton.get_server_metadata()
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    assert meta["name"] and meta["version"]

    for model in (triton.get_model_metadata(name), triton.get_model_metadata(name, version)):
        assert model["name"] == name and model["versions"] == [version]
        assert model["platform"] == manifest["format"].replace("-", "_")
        assert model["inputs"] == [
            {"name": manifest["input"]["name"], "datatype": "FP32", "shape": manifest["input"]["shape"]},
            {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
        ]
        assert model["outputs"] == [{"name": manifest["output"]["name"], "datatype": "FP32", "shape": manifest["output"]["shape"]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_fp32_inference_agrees_with_predict(triton, manifest, uploads, reference, binary):
    out = manifest["output"]["name"]
    result = triton.infer(manifest["name"], [fp32_input(manifest, prepared(uploads, manifest), binary)],
                          outputs=[httpclient.InferRequestedOutput(out, binary_data=binary)], request_id="req-42")
    response = result.get_response()
    assert response["model_name"] == manifest["name"] and response["model_version"] == str(manifest["version"])
    assert response["id"] == "req-42"
    assert ("binary_data_size" in result.get_output(out).get("parameters", {})) == binary
    probs = result.as_numpy(out)
    assert probs.dtype == np.float32 and probs.shape == (len(uploads), 10)
    np.testing.assert_allclose(probs, reference, atol=1e-5)
    # P(digit) per class; with a "not a digit" class (manifest rejection.open_set) the rest is P(not a digit)
    assert (probs.sum(1) <= 1 + 1e-5).all() and (probs.sum(1) > 0.5).all()
    assert (probs.argmax(1) == reference.argmax(1)).all()


def test_default_outputs_come_back_binary(triton, manifest, uploads, reference):
    """Without outputs the client asks binary_data_output=true: every output as binary data."""
    result = triton.infer(manifest["name"], [fp32_input(manifest, prepared(uploads, manifest))],
                          model_version=str(manifest["version"]))
    out = manifest["output"]["name"]
    assert result.get_output(out)["parameters"]["binary_data_size"] == len(uploads) * 10 * 4
    np.testing.assert_allclose(result.as_numpy(out), reference, atol=1e-5)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests(triton, manifest, uploads, reference, compression):
    out = manifest["output"]["name"]
    result = triton.infer(manifest["name"], [bytes_input(uploads)], outputs=[httpclient.InferRequestedOutput(out)],
                          request_compression_algorithm=compression)
    np.testing.assert_allclose(result.as_numpy(out), reference, atol=1e-5)


@pytest.mark.parametrize("binary", [False, True], ids=["json-base64", "binary"])
def test_image_bytes_inference_agrees_with_predict(triton, manifest, uploads, reference, binary):
    out = manifest["output"]["name"]
    result = triton.infer(manifest["name"], [bytes_input(uploads, binary)],
                          outputs=[httpclient.InferRequestedOutput(out, binary_data=binary)])
    np.testing.assert_allclose(result.as_numpy(out), reference, atol=1e-5)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_classification_extension(triton, manifest, uploads, reference, binary):
    out = manifest["output"]["name"]
    result = triton.infer(manifest["name"], [bytes_input(uploads)],
                          outputs=[httpclient.InferRequestedOutput(out, binary_data=binary, class_count=3)])
    assert result.get_output(out)["datatype"] == "BYTES"
    classes = result.as_numpy(out)
    assert classes.shape == (len(uploads), 3)
    for row, probs in zip(classes, reference):
        # the client gives bytes for binary data and str for JSON data
        parsed = [(entry.decode() if isinstance(entry, bytes) else entry).split(":") for entry in row]
        indices = [int(index) for _, index, _ in parsed]
        assert indices == list(np.argsort(-probs, kind="stable")[:3])
        not_a_digit = rejection.flags(float(probs.max()), manifest, None)[1]  # as /predict says it
        for k, (value, index, label) in enumerate(parsed):
            assert label == (rejection.NOT_A_DIGIT if k == 0 and not_a_digit else manifest["labels"][int(index)])
            assert len(value.split(".")[1]) == 6  # printf %f, like Triton's std::to_string
            assert abs(float(value) - probs[int(index)]) < 1e-5


def test_bad_inputs_are_protocol_errors(triton, manifest, uploads):
    name, out = manifest["name"], manifest["output"]["name"]
    good = prepared(uploads[:1], manifest)

    wrong_shape = httpclient.InferInput(manifest["input"]["name"], [1, 28, 28], "FP32").set_data_from_numpy(good[0])
    assert "shape" in expect_error(400, triton.infer, name, [wrong_shape])
    wrong_dtype = httpclient.InferInput(manifest["input"]["name"], [1, 1, 28, 28], "FP64")
    wrong_dtype.set_data_from_numpy(good.astype(np.float64))
    assert "FP64" in expect_error(400, triton.infer, name, [wrong_dtype])
    bytes_as_fp32 = httpclient.InferInput("image_bytes", [1], "FP32").set_data_from_numpy(np.zeros(1, np.float32))
    assert "BYTES" in expect_error(400, triton.infer, name, [bytes_as_fp32])

    unknown_input = httpclient.InferInput("pixels", [1, 1, 28, 28], "FP32").set_data_from_numpy(good)
    assert "pixels" in expect_error(400, triton.infer, name, [unknown_input])
    both = [fp32_input(manifest, good), bytes_input(uploads[:1])]
    expect_error(400, triton.infer, name, both)
    nan = fp32_input(manifest, np.full_like(good, np.nan))
    assert "finite" in expect_error(400, triton.infer, name, [nan])
    not_an_image = bytes_input([b"GIF89a not a digit", uploads[0]])  # 415, as /predict answers a GIF
    assert "image_bytes'[0]" in expect_error(415, triton.infer, name, [not_an_image])
    unknown_output = httpclient.InferRequestedOutput("logits")
    assert "logits" in expect_error(400, triton.infer, name, [fp32_input(manifest, good)], outputs=[unknown_output])

    assert "no-such-model" in expect_error(404, triton.infer, "no-such-model", [fp32_input(manifest, good)])
    expect_error(404, triton.infer, name, [fp32_input(manifest, good)], model_version="999")
    expect_error(404, triton.get_model_metadata, "no-such-model")
    expect_error(404, triton.get_model_metadata, name, "999")
    assert triton.infer(name, [fp32_input(manifest, good)], outputs=[httpclient.InferRequestedOutput(out)]) is not None


def test_wire_format_of_errors_health_and_binary_outputs(server, manifest, uploads):
    """What the client library hides: bodies, headers and the binary layout, read with plain HTTP."""
    base, name = server.base_url, manifest["name"]
    live = requests.get(f"{base}/v2/health/live", timeout=10)
    assert live.status_code == 200 and live.content == b""

    def error(resp, status):
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]

    infer = f"{base}/v2/models/{name}/infer"
    error(requests.post(infer, data=b"{not json", timeout=10), 400)
    error(requests.post(infer, json={"inputs": "image"}, timeout=10), 400)
    error(requests.post(f"{base}/v2/models/no-such-model/infer", json={"inputs": []}, timeout=10), 404)
    error(requests.get(f"{base}/v2/models/{name}/versions/1/nothing", timeout=10), 404)
    error(requests.get(infer, timeout=10), 405)

    header = json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 4 + len(uploads[0])}}],
                         "parameters": {"binary_data_output": True}}).encode()
    blob = len(uploads[0]).to_bytes(4, "little") + uploads[0]
    error(requests.post(infer, data=header + blob, timeout=10), 400)  # no Inference-Header-Content-Length
    resp = requests.post(infer, data=header + blob, headers={"Inference-Header-Content-Length": str(len(header))}, timeout=30)
    assert resp.status_code == 200, resp.text
    n = int(resp.headers["Inference-Header-Content-Length"])
    doc = json.loads(resp.content[:n])
    (output,) = doc["outputs"]
    assert output == {"name": manifest["output"]["name"], "datatype": "FP32", "shape": [1, 10],
                      "parameters": {"binary_data_size": 40}}
    probs = np.frombuffer(resp.content[n:], "<f4")
    assert len(probs) == 10 and 0.5 < float(probs.sum()) <= 1 + 1e-5  # 1 - P(not a digit)
