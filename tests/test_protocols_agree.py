"""One classification core under every protocol: the same pictures sent to POST /predict and to /v2
infer as image_bytes (JSON base64 and binary tensor data) get the same status and the same answers;
the fault -> status mapping is written once (serve/errors.py) and the README's table is its output."""
from __future__ import annotations

import ast
import base64
import json

import numpy as np
import pytest

from serve.errors import markdown_table
from serve.kserve import IMAGE_BYTES
from serve.kserve_codec import serialize_bytes
from tests import hostile
from tests.conftest import REPO
from tests.images import as_upload, encode


@pytest.fixture(scope="module")
def pictures(mnist_dir) -> dict[str, tuple[bytes, int]]:
    """name -> (file, the status every protocol must answer)."""
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    a, b = (np.asarray(as_upload(test.images[i])) for i in (0, 1))
    gap = np.full((a.shape[0], 60), 255, np.uint8)
    return {
        "good png": (encode(a), 200),
        "another good jpeg": (encode(b, "JPEG", quality=90), 200),
        "blank image": (encode(np.full((100, 100), 255, np.uint8)), 422),
        "not an image": (b"GIF89a" + bytes(64), 415),
        "too many pixels": (hostile.png_header_bomb(8_000, 8_000), 413),
        "several digits": (encode(np.hstack([gap, a, gap, b, gap])), 422),
    }


@pytest.fixture(scope="module")
def model(committed_model) -> dict:
    return json.loads((committed_model / "manifest.json").read_text())


def predict(client, files: list[bytes]):
    """/predict with one file as a raw body, several as a JSON batch."""
    if len(files) == 1:
        return client.post("/predict", data=files[0], content_type="image/png")
    return client.post("/predict", json={"images": [base64.b64encode(f).decode() for f in files]})


def v2(client, model: dict, files: list[bytes], binary: bool):
    """/v2 infer with image_bytes, the top class asked for (classification extension) and the probabilities."""
    url = f"/v2/models/{model['name']}/infer"
    out = model["output"]["name"]
    outputs = [{"name": out, "parameters": {"classification": 1}}]
    inp = {"name": IMAGE_BYTES, "datatype": "BYTES", "shape": [len(files)]}
    if not binary:
        doc = {"inputs": [{**inp, "data": [base64.b64encode(f).decode() for f in files]}], "outputs": outputs}
        return client.post(url, json=doc)
    blob = serialize_bytes(files)
    head = json.dumps({"inputs": [{**inp, "parameters": {"binary_data_size": len(blob)}}], "outputs": outputs}).encode()
    return client.post(url, data=head + blob, headers={"Inference-Header-Content-Length": str(len(head))},
                       content_type="application/octet-stream")


def answers_v2(resp) -> list[tuple[int | None, float]]:
    """(digit or None for not a digit, confidence) per image from the classification strings."""
    out = []
    for entry in resp.json["outputs"][0]["data"]:
        value, index, label = entry.split(":")
        out.append((None if label == "not_a_digit" else int(label), float(value)))
    return out


def answers_predict(resp, n: int) -> list[tuple[int | None, float]]:
    preds = [resp.json] if n == 1 else resp.json["predictions"]
    return [(p["digit"], p["confidence"]) for p in preds]


def test_the_same_picture_gets_the_same_status_and_answer_on_every_protocol(client, model, pictures):
    for name, (data, status) in pictures.items():
        responses = {"predict": predict(client, [data]), "v2 json": v2(client, model, [data], False),
                     "v2 binary": v2(client, model, [data], True)}
        got = {route: r.status_code for route, r in responses.items()}
        assert set(got.values()) == {status}, (name, got, {k: r.get_data(as_text=True)[:200] for k, r in responses.items()})
        if status == 200:
            want = answers_predict(responses["predict"], 1)
            for route in ("v2 json", "v2 binary"):
                (digit, conf), = answers_v2(responses[route])
                assert digit == want[0][0] and abs(conf - want[0][1]) < 1e-5, (name, route)
        else:  # each protocol writes the same fault in its own shape
            assert responses["predict"].json["error"]["code"] and responses["predict"].json["error"]["message"]
            assert isinstance(responses["v2 json"].json["error"], str)


def test_a_fault_in_a_batch_names_its_image_on_every_protocol(client, model, pictures):
    good = pictures["good png"][0]
    for name, (data, status) in pictures.items():
        if status == 200:
            continue
        batch = [good, good, data]
        p, j, b = predict(client, batch), v2(client, model, batch, False), v2(client, model, batch, True)
        assert p.status_code == j.status_code == b.status_code == status, name
        assert p.json["error"]["message"].startswith("images[2]: "), p.json
        for r in (j, b):
            assert r.json["error"].startswith(f"input '{IMAGE_BYTES}'[2]: "), r.json


def test_a_batch_answers_each_image_in_order_on_every_protocol(client, model, pictures):
    files = [pictures["good png"][0], pictures["another good jpeg"][0], pictures["good png"][0]]
    want = answers_predict(predict(client, files), len(files))
    assert want[0] == want[2] and want[0] != want[1]
    for binary in (False, True):
        got = answers_v2(v2(client, model, files, binary))
        assert [d for d, _ in got] == [d for d, _ in want]
        np.testing.assert_allclose([c for _, c in got], [c for _, c in want], atol=1e-5)


def test_limits_are_the_same_on_every_protocol(app, client, model, pictures):
    good = pictures["good png"][0]
    too_many = [good] * (app.extensions["digits"].config.max_batch + 1)
    assert predict(client, too_many).status_code == 413
    assert v2(client, model, too_many, False).status_code == v2(client, model, too_many, True).status_code == 413
    big = b"\x89PNG\r\n\x1a\n" + bytes(app.config["MAX_CONTENT_LENGTH"])  # a body over MAX_UPLOAD_BYTES
    assert client.post("/predict", data=big, content_type="image/png").status_code == 413
    resp = client.post(f"/v2/models/{model['name']}/infer", data=big, content_type="application/octet-stream")
    assert resp.status_code == 413 and isinstance(resp.json["error"], str)
    assert client.post("/predict", json={"images": []}).status_code == 400
    assert v2(client, model, [], False).status_code == 400


def test_the_readme_error_table_is_the_one_in_serve_errors():
    assert markdown_table() in (REPO / "README.md").read_text(), "run python -m serve.errors and paste its table"


def test_no_serve_modules_import_each_other():
    """serve/ is layered: codecs -> core -> service -> batcher/predictor; no import cycle anywhere."""
    graph = {}
    for path in (REPO / "serve").glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("serve"):
                deps |= {node.module} if node.module != "serve" else {f"serve.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("serve.")}
        graph[f"serve.{path.stem}"] = deps

    def visit(module: str, stack: list[str]) -> None:
        assert module not in stack, " -> ".join(stack + [module])
        for dep in graph.get(module, ()):
            visit(dep, stack + [module])

    for module in graph:
        visit(module, [])
