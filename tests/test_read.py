"""POST /read through the app: the digits of a number in reading order, boxes in the uploaded
picture's pixels, the same refusals as /predict; /predict refuses a picture of several digits."""
import base64
import io

import jsonschema
import numpy as np
import pytest
from PIL import Image

from tests.images import encode, file_field


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    from train.mnist import load_split

    return load_split(mnist_dir, "test")


def page_of(rows: list[list[np.ndarray]], size: int = 80, gap: int = 40) -> np.ndarray:
    """Dark ink on white: each row a line of MNIST digits; returns the page and the boxes drawn."""
    width = max(len(r) for r in rows) * (size + gap) + gap
    page = np.full((len(rows) * (size + gap) + gap, width), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, digit in enumerate(row):
            y, x = gap + r * (size + gap), gap + c * (size + gap)
            page[y : y + size, x : x + size] = 255 - np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC))
    return page


def pick(mnist_test, wanted: str) -> list[np.ndarray]:
    """MNIST test digits the committed model reads right as they are, one per character."""
    out = []
    for ch in wanted:
        idx = np.flatnonzero(mnist_test.labels == int(ch))
        out.append(mnist_test.images[idx[len(out) * 7 % len(idx)]])
    return out


def test_read_answers_the_number_in_reading_order(client, mnist_test):
    top, bottom = pick(mnist_test, "7210"), pick(mnist_test, "41")
    resp = client.post("/read", data=encode(page_of([top, bottom])), content_type="image/png")
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["text"] == "7210\n41"
    assert len(body["digits"]) == 6 and body["model"]["name"]
    assert body["uncertain"] == any(d["uncertain"] for d in body["digits"])
    for d in body["digits"]:
        assert {"digit", "confidence", "uncertain", "box", "probabilities", "top_k"} <= set(d)
    # Boxes lie on the digits drawn: 80x80 cells at (40 + 120 c, 40 + 120 r).
    for i, d in enumerate(body["digits"]):
        r, c = (0, i) if i < 4 else (1, i - 4)
        x, y, w, h = d["box"]
        assert 40 + 120 * c - 2 <= x and x + w <= 40 + 120 * c + 82, d["box"]
        assert 40 + 120 * r - 2 <= y and y + h <= 40 + 120 * r + 82, d["box"]


def test_read_takes_every_input_of_predict_and_gives_debug_images(client, mnist_test):
    png = encode(page_of([pick(mnist_test, "38")]))
    answers = [
        client.post("/read", data=png, content_type="image/png"),
        client.post("/read", data={"image": file_field(png)}, content_type="multipart/form-data"),
        client.post("/read", json={"image": "data:image/png;base64," + base64.b64encode(png).decode()}),
    ]
    assert [a.json["text"] for a in answers] == ["38"] * 3
    debug = client.post("/read?debug=1", data=png, content_type="image/png").json
    for d in debug["digits"]:
        seen = Image.open(io.BytesIO(base64.b64decode(d["input_image"].split(",", 1)[1])))
        assert seen.size == (28, 28)


def test_boxes_are_in_the_upright_picture_after_exif_orientation(client, mnist_test):
    page = Image.fromarray(page_of([pick(mnist_test, "52")])).convert("RGB")  # 280 wide, 160 high upright
    stored = page.transpose(Image.Transpose.ROTATE_90)  # stored sideways; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    body = client.post("/read", data=buf.getvalue(), content_type="image/jpeg").json
    assert body["text"] == "52"
    (x0, y0, w0, h0), (x1, _, _, _) = body["digits"][0]["box"], body["digits"][1]["box"]
    assert 30 <= x0 < x1 and x1 + 40 <= 280 and 30 <= y0 and y0 + h0 <= 130


def test_big_jpeg_boxes_are_in_full_size_pixels(client, mnist_test):
    """A big JPEG is decoded at a reduced scale; the boxes still refer to its full size."""
    page = Image.fromarray(page_of([pick(mnist_test, "96")], size=400, gap=200)).convert("RGB")
    data = encode(page, "JPEG", quality=90)
    body = client.post("/read", data=data, content_type="image/jpeg").json
    assert body["text"] == "96"
    x, y, w, h = body["digits"][1]["box"]
    assert 800 - 10 <= x and x + w <= 1200 + 10 and 200 - 10 <= y and y + h <= 600 + 10


def test_a_sheet_photographed_on_a_desk_is_read_with_boxes_on_the_photo(client, mnist_test):
    """The sheet lies turned on a dark desk (serve/page.py reads it upright); the photo is a big
    JPEG, decoded smaller, so the boxes are mapped back through the turn and the scale."""
    from tests.test_page import assert_boxes_hold, desk_photo

    photo, _, centres = desk_photo(pick(mnist_test, "305"), -8.0, size=(900, 640))
    big = Image.fromarray(photo).resize((1800, 1280), Image.Resampling.BICUBIC).convert("RGB")
    body = client.post("/read", data=encode(big, "JPEG", quality=90), content_type="image/jpeg").json
    assert body["text"] == "305", body
    assert_boxes_hold([d["box"] for d in body["digits"]], centres * 2)
    one = Image.fromarray(desk_photo(pick(mnist_test, "7"), 5.0)[0]).convert("RGB")
    answer = client.post("/predict", data=encode(one, "JPEG", quality=90), content_type="image/jpeg").json
    assert answer["digit"] == 7 and not answer["uncertain"], answer


def test_predict_refuses_several_digits_and_points_to_read(client, mnist_test):
    resp = client.post("/predict", data=encode(page_of([pick(mnist_test, "7210")])), content_type="image/png")
    assert resp.status_code == 422
    assert resp.json["error"]["code"] == "several_digits" and "/read" in resp.json["error"]["message"]


def test_predict_lets_the_model_tell_a_wide_digit_from_two_that_touch(client, mnist_test):
    """A lone piece of ink wider than a digit is cut where two touching digits would meet, but a
    wide "0" or "4" is as wide: /predict asks the model about both readings. MNIST's own wide
    digits (those the shapes alone would cut) are answered as one digit; two touching digits are
    still refused as several."""
    from serve.preprocess import Spec, candidates
    from train.mnist import MEAN, STD

    wide = []
    for image, label in zip(mnist_test.images[:3000], mnist_test.labels[:3000]):
        data = encode(255 - image)  # dark ink on white, as uploaded
        if len(candidates(data, Spec(mean=MEAN, std=STD))) > 1:
            wide.append((data, int(label)))
    assert len(wide) >= 3  # five in the first 3,000 test digits
    answers = [client.post("/predict", data=data, content_type="image/png") for data, _ in wide]
    assert all(a.status_code == 200 for a in answers), [a.json for a in answers]
    assert sum(a.json["digit"] == label for a, (_, label) in zip(answers, wide)) >= len(wide) - 1

    a, b = (np.asarray(Image.fromarray(d).resize((80, 80), Image.Resampling.BICUBIC)) for d in pick(mnist_test, "38"))
    a, b = (d[:, np.flatnonzero(d.max(0) > 60)[0] : np.flatnonzero(d.max(0) > 60)[-1] + 1] for d in (a, b))  # to their ink
    pair = np.zeros((80, a.shape[1] + b.shape[1] - 4), np.uint8)  # the "8" written over the end of the "3"
    pair[:, : a.shape[1]] = a
    pair[:, -b.shape[1] :] = np.maximum(pair[:, -b.shape[1] :], b)
    page = np.full((160, pair.shape[1] + 80), 255, np.uint8)
    page[40:120, 40:-40] = 255 - pair
    assert len(candidates(encode(page), Spec(mean=MEAN, std=STD))) > 1  # one piece of ink: both readings
    resp = client.post("/predict", data=encode(page), content_type="image/png")
    assert resp.status_code == 422 and resp.json["error"]["code"] == "several_digits", resp.json


def test_predict_reads_one_digit_on_ruled_paper_beside_a_mark(client, mnist_test):
    page = page_of([pick(mnist_test, "4")], size=120, gap=60)
    for y in range(15, page.shape[0], 35):
        page[y : y + 2] = np.minimum(page[y : y + 2], 170)  # grey ruled lines across the sheet
    page[90:96, 200:206] = 30  # a dot beside the digit
    resp = client.post("/predict", data=encode(page), content_type="image/png")
    assert resp.status_code == 200 and resp.json["digit"] == 4, resp.json


def test_read_refuses_what_predict_refuses(client):
    blank = encode(np.full((100, 100), 255, np.uint8))
    for route in ("/predict", "/read"):
        resp = client.post(route, data=blank, content_type="image/png")
        assert resp.status_code == 422 and resp.json["error"]["code"] == "no_digit"
    resp = client.post("/read", json={"images": [base64.b64encode(blank).decode()] * 2})
    assert resp.status_code in (400, 413) and resp.json["error"]["code"] in ("bad_request", "too_large")


def test_digits_past_the_limit_are_422(committed_model, mnist_test):
    from serve.app import create_app

    client = create_app({"model_dir": str(committed_model), "max_digits": 3}).test_client()
    resp = client.post("/read", data=encode(page_of([pick(mnist_test, "1234")])), content_type="image/png")
    assert resp.status_code == 422 and resp.json["error"]["code"] == "too_many_digits"


def test_noise_is_422_or_uncertain_never_a_500(client):
    rng = np.random.default_rng(3)
    for picture in (rng.integers(0, 256, (300, 300), dtype=np.uint8),
                    np.kron(rng.integers(0, 2, (30, 30)), np.ones((10, 10))).astype(np.uint8) * 255):
        for route in ("/read", "/predict"):
            resp = client.post(route, data=encode(picture), content_type="image/png")
            assert resp.status_code in (200, 422), resp.json
            if resp.status_code == 200 and route == "/read":
                assert resp.json["uncertain"] or len(resp.json["digits"]) <= 64


def test_openapi_documents_read_and_its_answer_conforms(client, mnist_test):
    doc = client.get("/openapi.json").json
    op = doc["paths"]["/read"]["post"]
    resolver = jsonschema.RefResolver.from_schema({"components": doc["components"]})
    ok = client.post("/read", data=encode(page_of([pick(mnist_test, "90")])), content_type="image/png")
    bad = client.post("/read", data=encode(np.full((50, 50), 255, np.uint8)), content_type="image/png")
    for resp in (ok, bad):
        schema = op["responses"][str(resp.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(resp.json, {**schema, "components": doc["components"]}, resolver=resolver)
