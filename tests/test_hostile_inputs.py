"""Bad and hostile input through the app: each gets its documented 4xx JSON error, quickly.

The same catalog goes through a real gunicorn server in test_server_hardening.py, which also checks
that no worker died and measures memory.
"""
import base64
import copy
import json
import re
import time

import numpy as np
import pytest

from tests import hostile
from tests.images import encode, file_field

QUICK_S = 5.0  # generous: every case here is answered in milliseconds on a 2-core machine
CATALOG = {**hostile.foreign_formats(), **hostile.broken_images(), **hostile.polyglots(), **hostile.bombs()}
TOLERATED = hostile.tolerated()


def timed(call):
    t = time.perf_counter()
    resp = call()
    return resp, time.perf_counter() - t


def assert_api_error(resp, status, code=None):
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/json", "errors are JSON, never an HTML page that could render reflected text"
    body = resp.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"] and isinstance(body["error"]["message"], str)
    if code:
        assert body["error"]["code"] == code, body
    assert not re.search(r"0x[0-9a-f]{6,}", body["error"]["message"]), "no memory address leaks to the client"


@pytest.mark.parametrize("name", sorted(CATALOG))
@pytest.mark.parametrize("how", ["raw", "multipart", "json"])
@pytest.mark.parametrize("route", ["/predict", "/read"])
def test_hostile_upload_gets_its_documented_answer(client, name, how, route):
    data, status, code = CATALOG[name]
    if how == "raw":  # always labelled image/png: the label is not trusted, the bytes are sniffed
        call = lambda: client.post(route, data=data, content_type="image/png")
    elif how == "multipart":
        call = lambda: client.post(route, data={"image": file_field(data, "digit.png")}, content_type="multipart/form-data")
    else:
        call = lambda: client.post(route, json={"image": base64.b64encode(data).decode()})
    resp, elapsed = timed(call)
    if status == 200:
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        assert resp.mimetype == "application/json"
        text = resp.get_data()
        for payload in (hostile.PHP, hostile.HTML, b"PK\x03\x04", b"<?php", b"<script"):
            assert payload not in text, "the appended payload is never echoed back"
        assert (resp.json["digit"] if route == "/predict" else resp.json["text"]) in (7, "7")
    else:
        assert_api_error(resp, status, code)
    assert elapsed < QUICK_S, f"{name} took {elapsed:.1f}s"


@pytest.mark.parametrize("name", sorted(TOLERATED))
@pytest.mark.parametrize("route", ["/predict", "/read"])
def test_damage_decoders_may_forgive_gets_a_clean_answer(client, name, route):
    data, allowed = TOLERATED[name]
    resp = client.post(route, data=data, content_type="image/jpeg" if "jpeg" in name else "image/png")
    assert resp.status_code in allowed and resp.mimetype == "application/json"
    if resp.status_code != 200:
        assert_api_error(resp, resp.status_code)


PNG = encode(np.full((8, 8), 255, np.uint8))


@pytest.mark.parametrize("case, kwargs, status, code", [
    ("empty raw body", dict(data=b"", content_type="image/png"), 400, "bad_image"),
    ("empty multipart file", dict(data={"image": file_field(b"")}, content_type="multipart/form-data"), 400, "bad_image"),
    ("empty multipart body", dict(data=b"", content_type="multipart/form-data; boundary=x"), 400, "bad_request"),
    ("empty json body", dict(data=b"", content_type="application/json"), 400, "bad_request"),
    ("multipart field named file", dict(data={"file": file_field(PNG)}, content_type="multipart/form-data"), 400, "bad_request"),
    ("multipart text field, no file", dict(data={"image": "iVBORw0KGgo="}, content_type="multipart/form-data"), 400, "bad_request"),
    ("json field named picture", dict(json={"picture": base64.b64encode(PNG).decode()}), 400, "bad_request"),
    ("json null", dict(json=None, data=b"null", content_type="application/json"), 400, "bad_request"),
    ("json string", dict(json="iVBORw0KGgo="), 400, "bad_request"),
    ("json number image", dict(json={"image": 1e308}), 400, "bad_request"),
    ("json list image", dict(json={"image": ["a"]}), 400, "bad_request"),
    ("json images not a list", dict(json={"images": "abc"}), 400, "bad_request"),
    ("json images with a number", dict(json={"images": [base64.b64encode(PNG).decode(), 3]}), 400, "bad_request"),
    ("json text that is not an image", dict(json={"image": base64.b64encode(b"hello world").decode()}), 415, "unsupported_media_type"),
    ("json invalid base64", dict(json={"image": "%%%not base64%%%"}), 400, "bad_request"),
    ("json base64 with bad padding", dict(json={"image": "iVBORw0KGgo"}), 400, "bad_request"),
    ("json empty string", dict(json={"image": ""}), 400, "bad_image"),
    ("json nested 100000 deep", dict(data=b"[" * 100_000 + b"]" * 100_000, content_type="application/json"), 400, "bad_request"),
    ("json in utf-16", dict(data='{"picture": 1}'.encode("utf-16"), content_type="application/json"), 400, "bad_request"),
    ("json invalid utf-8", dict(data=b'{"image": "\xff\xfe"}', content_type="application/json"), 400, "bad_request"),
    ("json duplicate keys", dict(data=b'{"image": 1, "image": "%%"}', content_type="application/json"), 400, "bad_request"),
    ("declared image/gif", dict(data=PNG, content_type="image/gif"), 415, "unsupported_media_type"),
    ("declared image/svg+xml", dict(data=b"<svg/>", content_type="image/svg+xml"), 415, "unsupported_media_type"),
    ("declared text/html", dict(data=hostile.HTML, content_type="text/html"), 415, "unsupported_media_type"),
    ("form-urlencoded", dict(data={"image": "abc"}, content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type"),
])
@pytest.mark.parametrize("route", ["/predict", "/read"])
def test_malformed_requests_get_a_4xx_json_error(client, case, kwargs, status, code, route):
    kwargs = copy.deepcopy(kwargs)  # the same file objects go to both routes: each gets unread copies
    resp, elapsed = timed(lambda: client.post(route, **kwargs))
    assert_api_error(resp, status, code)
    assert elapsed < QUICK_S


def test_every_part_of_a_batch_is_checked(client):
    good = base64.b64encode(encode(hostile.digit())).decode()
    for name in ("tiff", "random bytes"):
        bad = base64.b64encode(CATALOG[name][0]).decode()
        resp = client.post("/predict", json={"images": [good, good, bad]})
        assert_api_error(resp, 415)
        assert resp.json["error"]["message"].startswith("images[2]")
    bomb = base64.b64encode(CATALOG["png 65535x65535 header"][0]).decode()
    assert_api_error(client.post("/predict", json={"images": [bomb, good]}), 413, "too_large")


def test_batch_over_the_limit_is_413_before_any_decoding(app, client, monkeypatch):
    limit = app.extensions["digits"].config.max_batch
    decoded = []
    monkeypatch.setattr("serve.classifier.candidates", lambda *a, **k: decoded.append(1))
    one = base64.b64encode(PNG).decode()
    assert_api_error(client.post("/predict", json={"images": [one] * (limit + 1)}), 413, "too_large")
    files = {"images": [file_field(PNG, f"{i}.png") for i in range(limit + 1)]}
    assert_api_error(client.post("/predict", data=files, content_type="multipart/form-data"), 413, "too_large")
    assert decoded == [], "the count is checked before any image is decoded"


def test_too_many_multipart_parts_is_413(app, client):
    parts = app.config["MAX_FORM_PARTS"]
    fields = {f"f{i}": "x" for i in range(parts + 1)}
    resp = client.post("/predict", data={**fields, "image": file_field(PNG)}, content_type="multipart/form-data")
    assert_api_error(resp, 413)


def test_bodies_over_the_size_limit_are_413(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    big = b"\x89PNG\r\n\x1a\n" + bytes(limit)
    assert_api_error(client.post("/predict", data=big, content_type="image/png"), 413)
    assert_api_error(client.post("/predict", data={"image": file_field(big)}, content_type="multipart/form-data"), 413)
    doc = json.dumps({"image": base64.b64encode(big[: limit * 3 // 4 + 10]).decode()})
    assert_api_error(client.post("/predict", data=doc, content_type="application/json"), 413)


def test_no_json_route_fails_on_deeply_nested_json(app, client):
    """Every POST route (including those of other blueprints): JSON nested 100000 deep is a 4xx."""
    model = app.extensions["digits"].identity
    deep = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    posts = [r for r in app.url_map.iter_rules() if "POST" in r.methods]
    assert posts
    for rule in posts:
        url = rule.rule
        for arg in rule.arguments:  # path variables get the served model's own name and version
            url = re.sub(rf"<[^>]*\b{arg}>", str(model.get(arg, model["version"] if "version" in arg else model["name"])), url)
        resp = client.post(url, data=deep, content_type="application/json")
        assert 400 <= resp.status_code < 500, f"{rule.rule}: {resp.status_code}"
    with pytest.raises(ValueError):  # app.json itself, the parser request.get_json() uses in every blueprint
        app.json.loads(deep)
