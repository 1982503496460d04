"""The v2 blueprint in-process: hostile bodies never become 500s, and every route is documented."""
import json
import re

import numpy as np
import pytest

from serve.kserve import IMAGE_BYTES

INFER = "/v2/models/{name}/infer"


def tensor(**fields) -> dict:
    return {"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784, **fields}


HOSTILE = [
    b"", b"null", b"1", b'"x"', b"[]", b"{}", b'{"inputs": null}', b'{"inputs": [1]}', b'{"inputs": [{}]}',
    b'{"inputs": [{"name": 1, "datatype": "FP32", "shape": [1]}]}', b"\xff\xfe{}", b'{"inputs": [' * 50000,
    json.dumps({"inputs": [tensor(shape=[2**63, 1, 28, 28])]}).encode(),
    json.dumps({"inputs": [tensor(shape=[0, 1, 28, 28], data=[])]}).encode(),
    json.dumps({"inputs": [tensor(shape=[65, 1, 28, 28], data=[0.0] * 784 * 65)]}).encode(),
    json.dumps({"inputs": [tensor(shape=[1, 1, 28, 28.0])]}).encode(),
    json.dumps({"inputs": [tensor(shape="1,1,28,28")]}).encode(),
    json.dumps({"inputs": [tensor(data={"a": 1})]}).encode(),
    json.dumps({"inputs": [tensor(data=[[0.0] * 784, 1])]}).encode(),
    json.dumps({"inputs": [tensor(parameters=[])]}).encode(),
    json.dumps({"inputs": [tensor(parameters={"binary_data_size": "4"})]}).encode(),
    json.dumps({"inputs": [tensor()], "outputs": {"name": "x"}}).encode(),
    json.dumps({"inputs": [tensor()], "outputs": [{"name": "fetch_name_0", "parameters": {"classification": True}}]}).encode(),
    json.dumps({"inputs": [tensor()], "outputs": [{"name": "fetch_name_0", "parameters": {"binary_data": 1}}]}).encode(),
    json.dumps({"inputs": [{"name": IMAGE_BYTES, "shape": [1], "datatype": "BYTES", "data": [["a", "b"]]}]}).encode(),
    json.dumps({"inputs": [{"name": IMAGE_BYTES, "shape": [1], "datatype": "BYTES", "data": ["iVBORw0KGgo="]}]}).encode(),
    json.dumps({"inputs": [{"name": IMAGE_BYTES, "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}).encode(),
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_bodies_are_client_errors_in_the_protocol_shape(client, committed_model, body):
    name = json.loads((committed_model / "manifest.json").read_text())["name"]
    resp = client.post(INFER.format(name=name), data=body, headers={"Content-Type": "application/json"})
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.data[:300])
    assert isinstance(resp.json["error"], str) and resp.json["error"]


def test_extreme_values_are_served_and_non_finite_outputs_refused(app, client, committed_model, monkeypatch):
    name = json.loads((committed_model / "manifest.json").read_text())["name"]
    extreme = {"inputs": [tensor(data=[3e38, -3e38] * 392)]}
    resp = client.post(INFER.format(name=name), json=extreme)
    assert resp.status_code == 200 and len(resp.json["outputs"][0]["data"]) == 10
    service = app.extensions["digits"]
    monkeypatch.setattr(service, "probabilities", lambda batch: np.full((len(batch), 10), np.nan, np.float32))
    resp = client.post(INFER.format(name=name), json=extreme)
    assert resp.status_code == 400 and "non-finite" in resp.json["error"]


def test_headers_that_do_not_fit_are_client_errors(client, committed_model):
    name = json.loads((committed_model / "manifest.json").read_text())["name"]
    body = json.dumps({"inputs": [tensor()]}).encode()
    for headers in ({"Inference-Header-Content-Length": "abc"}, {"Inference-Header-Content-Length": "999999"},
                    {"Content-Encoding": "gzip"}, {"Content-Encoding": "br"}):
        resp = client.post(INFER.format(name=name), data=body, headers=headers)
        assert resp.status_code == 400 and isinstance(resp.json["error"], str), resp.data


def test_every_route_is_in_the_openapi_document(app, client):
    paths = client.get("/openapi.json").json["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in paths, f"{rule.rule} is served but not documented in /openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} is not documented"


def test_body_over_the_limit_is_413_in_the_protocol_shape(app, client, committed_model):
    name = json.loads((committed_model / "manifest.json").read_text())["name"]
    resp = client.post(INFER.format(name=name), data=b" " * (app.config["MAX_CONTENT_LENGTH"] + 1))
    assert resp.status_code == 413 and isinstance(resp.json["error"], str)


def test_without_a_model_the_server_is_live_but_not_ready(tmp_path):
    from serve.app import create_app

    client = create_app({"model_dir": str(tmp_path)}).test_client()
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 400  # the protocol: 4xx means false
    for resp in (client.get("/v2/models/mnist-cnn"), client.get("/v2/models/mnist-cnn/ready"),
                 client.post(INFER.format(name="mnist-cnn"), json={"inputs": [tensor()]})):
        assert resp.status_code == 503 and "not loaded" in resp.json["error"]
