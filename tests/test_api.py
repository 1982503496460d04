"""The HTTP API through the app factory: inputs, outputs, errors, operations endpoints."""
import base64
import json

import numpy as np
import pytest

from tests.images import as_upload, encode, file_field

ERROR_CODES = {400: {"bad_request", "bad_image"}, 413: {"too_large", "request_entity_too_large"},
               415: {"unsupported_media_type"}, 422: {"no_digit"}, 503: {"not_ready"}}


@pytest.fixture(scope="module")
def samples(mnist_dir):
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    return [(encode(as_upload(test.images[i])), int(test.labels[i])) for i in range(12)]


def assert_error(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.is_json and set(resp.json) == {"error"}
    assert resp.json["error"]["code"] in ERROR_CODES[status] and resp.json["error"]["message"]


def test_single_multipart_upload(client, samples):
    png, label = samples[0]
    resp = client.post("/predict", data={"image": file_field(png)}, content_type="multipart/form-data")
    assert resp.status_code == 200
    body = resp.json
    assert body["digit"] == label
    assert body["top_k"][0] == {"digit": label, "probability": body["confidence"]}
    assert len(body["top_k"]) == 3 and body["top_k"][0]["probability"] >= body["top_k"][1]["probability"]
    assert body["uncertain"] is False
    assert body["model"]["name"] and isinstance(body["model"]["version"], int)
    assert "input_image" not in body


def test_batch_multipart_answers_in_request_order(client, samples):
    resp = client.post("/predict", data={"images": [file_field(png, f"{i}.png") for i, (png, _) in enumerate(samples)]},
                       content_type="multipart/form-data")
    assert resp.status_code == 200
    assert [p["digit"] for p in resp.json["predictions"]] == [label for _, label in samples]


def test_raw_body_and_json_base64(client, samples):
    png, label = samples[1]
    assert client.post("/predict", data=png, content_type="image/png").json["digit"] == label
    b64 = base64.b64encode(png).decode()
    assert client.post("/predict", json={"image": b64}).json["digit"] == label
    assert client.post("/predict", json={"image": "data:image/png;base64," + b64}).json["digit"] == label
    batch = client.post("/predict", json={"images": [base64.b64encode(p).decode() for p, _ in samples[:4]]})
    assert [p["digit"] for p in batch.json["predictions"]] == [l for _, l in samples[:4]]


def test_debug_returns_the_image_the_model_saw(client, samples):
    from PIL import Image
    import io

    resp = client.post("/predict?debug=1", data=samples[2][0], content_type="image/png")
    prefix = "data:image/png;base64,"
    assert resp.json["input_image"].startswith(prefix)
    img = Image.open(io.BytesIO(base64.b64decode(resp.json["input_image"][len(prefix):])))
    assert img.size == (28, 28) and img.mode == "L"
    assert np.asarray(img)[0].max() == 0 and np.asarray(img).max() > 200  # light ink on black, like MNIST


def test_uncertain_below_threshold(committed_model, samples):
    from serve.app import create_app

    strict = create_app({"model_dir": str(committed_model), "uncertain_below": 1.01}).test_client()
    resp = strict.post("/predict", data=samples[0][0], content_type="image/png")
    assert resp.json["uncertain"] is True


@pytest.mark.parametrize("case, kwargs, status", [
    ("empty body", dict(data=b"", content_type="image/png"), 400),
    ("no content type", dict(data=b"abc"), 400),
    ("missing field", dict(data={"file": file_field(b"x")}, content_type="multipart/form-data"), 400),
    ("two files in 'image'", dict(data={"image": [file_field(b"a"), file_field(b"b")]}, content_type="multipart/form-data"), 400),
    ("json not an object", dict(json=[1, 2]), 400),
    ("json wrong key", dict(json={"picture": "abc"}), 400),
    ("json invalid base64", dict(json={"image": "not base64!!"}), 400),
    ("json image not a string", dict(json={"image": 12}), 400),
    ("json empty list", dict(json={"images": []}), 400),
    ("broken json", dict(data=b"{not json", content_type="application/json"), 400),
    ("random bytes as png", dict(data=bytes(range(256)) * 4, content_type="image/png"), 415),
    ("truncated png", dict(data=encode(np.full((64, 64), 200, np.uint8))[:40], content_type="image/png"), 400),
    ("gif", dict(data=b"GIF89a" + b"\x00" * 50, content_type="image/gif"), 415),
    ("text/plain", dict(data=b"hello", content_type="text/plain"), 415),
    ("blank page", dict(data=encode(np.full((100, 100), 255, np.uint8)), content_type="image/png"), 422),
])
def test_bad_input_gets_a_clear_json_error(client, case, kwargs, status):
    assert_error(client.post("/predict", **kwargs), status)


def test_limits_give_413(committed_model, samples):
    from serve.app import create_app

    small = create_app({"model_dir": str(committed_model), "max_upload_bytes": 2000, "max_batch": 2,
                        "max_pixels": 10_000}).test_client()
    assert_error(small.post("/predict", data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000, content_type="image/png"), 413)
    three = {"images": [file_field(encode(np.zeros((8, 8), np.uint8)), f"{i}.png") for i in range(3)]}
    assert_error(small.post("/predict", data=three, content_type="multipart/form-data"), 413)
    assert_error(small.post("/predict", data=encode(np.zeros((200, 200), np.uint8)), content_type="image/png"), 413)


def test_batch_error_names_the_image(client, samples):
    blank = encode(np.full((50, 50), 255, np.uint8))
    resp = client.post("/predict", data={"images": [file_field(samples[0][0]), file_field(blank, "blank.png")]},
                       content_type="multipart/form-data")
    assert_error(resp, 422)
    assert resp.json["error"]["message"].startswith("images[1]")


def test_health_ready_and_model_metadata(client, committed_model):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    manifest = json.loads((committed_model / "manifest.json").read_text())
    (model,) = client.get("/v1/models").json["models"]
    assert model["name"] == manifest["name"] and model["version"] == manifest["version"]
    assert model["input"] == manifest["input"] and model["labels"] == manifest["labels"]
    assert model["metrics"]["test_acc"] == manifest["metrics"]["test_acc"]


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert len(generated) == 32 and "script" not in generated


def test_metrics_count_requests(app, samples):
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/predict", data=samples[0][0], content_type="image/png")
    after = client.get("/metrics").get_data(as_text=True)

    def value(text, line_start):
        return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(line_start))

    assert value(after, "digits_images_total") == value(before, "digits_images_total") + 1
    key = 'digits_http_requests_total{method="POST",route="/predict",status="200"}'
    assert value(after, key) == value(before, key) + 1


def test_openapi_documents_every_route_and_real_responses_conform(app, client, samples):
    import jsonschema

    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    routes = {(r.rule, m.lower()) for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}
              if not r.endpoint.endswith("static")}  # asset files are not API routes
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    flask_style = {(p.replace("{", "<").replace("}", ">"), m) for p, m in documented}
    assert {(r, m) for r, m in routes} <= flask_style | documented, "every route is documented"

    def check(path, method, resp):
        schema = doc["paths"][path][method]["responses"][str(resp.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(resp.json, {**schema, "components": doc["components"]},
                            resolver=jsonschema.RefResolver.from_schema({"components": doc["components"]}))

    check("/predict", "post", client.post("/predict", data=samples[0][0], content_type="image/png"))
    check("/predict", "post", client.post("/predict", json={"images": [base64.b64encode(samples[0][0]).decode()]}))
    check("/predict", "post", client.post("/predict", data=b"hello", content_type="text/plain"))
    check("/readyz", "get", client.get("/readyz"))
    check("/v1/models", "get", client.get("/v1/models"))
