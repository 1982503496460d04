"""The web page at `/`, driven in headless Chromium against the real gunicorn server.

One server and one browser for the module; each test gets fresh browser contexts. Chromium is
Debian's package (`make test` installs it when /usr/bin/chromium is missing): Playwright never
downloads a browser. Screenshots for a human to look at go to artifacts/ (git-ignored).
"""
from __future__ import annotations

import base64
import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from tests.conftest import REPO, free_port, gunicorn_cmd, running_server
from tests.images import as_upload, encode

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
ARTIFACTS = REPO / "artifacts"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
VERTICAL_ONE = [(0.5, 0.15), (0.5, 0.85)]
SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]

expect.set_options(timeout=20_000)  # a prediction on a busy 2-core machine; waits end as soon as it shows


@pytest.fixture(scope="module")
def server(committed_model, tmp_path_factory) -> str:
    port = free_port()
    log = tmp_path_factory.mktemp("webpage-server") / "gunicorn.log"
    env = {"HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "1", "THREADS": "2",
           "MODEL_DIR": str(committed_model), "LOG_FILE": str(log)}
    with running_server(gunicorn_cmd(), env, port) as proc:
        yield proc.base_url


@pytest.fixture(scope="module")
def browser():
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def open_page(browser, server):
    """open_page(**context_options) -> a page showing `/`. Any request that leaves the server's
    origin is blocked and fails the test (the page must work offline), and so does any script error."""
    contexts, offsite, errors = [], [], []

    def same_origin_only(route):
        if route.request.url.startswith(server + "/"):
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    def on_console(msg):
        # An API error answer (e.g. 415) is logged by Chromium as a failed resource: that is expected.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            errors.append(msg.text)

    def open_(**options):
        context = browser.new_context(**{**DESKTOP, **options})
        contexts.append(context)
        context.route("**/*", same_origin_only)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", on_console)
        page.goto(server + "/")
        expect(page.locator("#idle-text")).to_be_visible()
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not offsite, f"the page requested other origins: {offsite}"
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    from train.mnist import load_split

    return load_split(mnist_dir, "test")


def is_predict(response) -> bool:
    return response.request.method == "POST" and "/predict" in response.url


def pad_points(page, points):
    box = page.locator("#pad").bounding_box()
    return [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]


def draw_with_mouse(page, points):
    """One stroke through `points` (fractions of the canvas), returning the /predict response."""
    xy = pad_points(page, points)
    with page.expect_response(is_predict) as answer:
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y, steps=12)
        page.mouse.up()
    return answer.value


def draw_with_touch(page, points):
    """The same stroke with a finger: real touch input through the DevTools protocol."""
    cdp = page.context.new_cdp_session(page)
    xy = pad_points(page, points)
    with page.expect_response(is_predict) as answer:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": xy[0][0], "y": xy[0][1]}]})
        for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
            for k in range(1, 13):
                x, y = x0 + (x1 - x0) * k / 12, y0 + (y1 - y0) * k / 12
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    return answer.value


def sent_png(response) -> Image.Image:
    """The PNG the page posted in its multipart body."""
    body = response.request.post_data_buffer
    assert b'name="image"' in body
    return Image.open(io.BytesIO(body[body.index(b"\x89PNG\r\n\x1a\n"):]))


def expect_result_of(page, response, source: str) -> dict:
    """The page shows exactly what /predict answered: digit, confidence, ten bars, the 28x28 image."""
    assert response.status == 200, response.text()
    api = response.json()
    expect(page.locator("#model")).to_contain_text(f"Result for {source}")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#digit")).to_have_text(str(api["digit"]))
    expect(page.locator("#confidence")).to_have_text(f"Confidence: {100 * api['confidence']:.1f}%")
    uncertain = page.locator("#uncertain")
    expect(uncertain).to_be_visible() if api["uncertain"] else expect(uncertain).to_be_hidden()
    rows = page.locator("#probs li")
    expect(rows).to_have_count(10)
    values = [float(v.rstrip("%")) for v in rows.locator(".value").all_inner_texts()]
    assert values == pytest.approx([100 * p for p in api["probabilities"]], abs=0.051)
    assert [int(t) for t in rows.locator(".label").all_inner_texts()] == list(range(10))
    expect(page.locator("#probs li.top .label")).to_have_text(str(api["digit"]))
    widths = page.eval_on_selector_all("#probs .bar", "bars => bars.map(b => b.getBoundingClientRect().width / b.parentElement.getBoundingClientRect().width)")
    assert widths == pytest.approx(api["probabilities"], abs=0.01)
    seen = page.locator("#seen")
    expect(seen).to_be_visible()
    assert seen.get_attribute("src") == api["input_image"]
    assert page.eval_on_selector("#seen", "img => [img.naturalWidth, img.naturalHeight]") == [28, 28]
    expect(page.locator("#status")).to_have_attribute("aria-live", "polite")
    return api


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_page_is_self_contained(client):
    """No browser needed: the HTML and its assets come from this app, nothing from a CDN."""
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/") or a == "data:," for a in assets), assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert client.get(asset).status_code == 200, asset
    assert 'data-predict-url="/predict?debug=1"' in html


def test_draw_a_one_with_the_mouse(open_page):
    page = open_page()
    response = draw_with_mouse(page, VERTICAL_ONE)
    assert response.url.endswith("/predict?debug=1")
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    png = sent_png(response).convert("L")
    assert png.size == (280, 280)
    assert png.getpixel((0, 0)) == 255 and png.getpixel((279, 279)) == 255, "paper is white"
    assert png.getpixel((140, 140)) < 64, "ink is dark"
    api = expect_result_of(page, response, "your drawing")
    assert api["digit"] == 1


def test_draw_a_seven_then_clear(open_page):
    page = open_page()
    api = expect_result_of(page, draw_with_mouse(page, SEVEN), "your drawing")
    assert api["digit"] == 7
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#idle-text")).to_be_visible()
    expect(page.locator("#summary")).to_be_hidden()
    assert page.eval_on_selector("#pad", "c => c.toDataURL()") == page.evaluate(
        "() => { const c = document.createElement('canvas'); c.width = c.height = 280;"
        " const x = c.getContext('2d'); x.fillStyle = '#fff'; x.fillRect(0, 0, 280, 280); return c.toDataURL(); }")


def test_upload_an_mnist_digit_with_the_file_picker(open_page, mnist_test, tmp_path):
    path = tmp_path / "digit.png"
    path.write_bytes(encode(as_upload(mnist_test.images[0])))
    page = open_page()
    with page.expect_response(is_predict) as answer:
        page.get_by_label("Choose an image").set_input_files(path)
    api = expect_result_of(page, answer.value, "digit.png")
    assert api["digit"] == int(mnist_test.labels[0])
    expect(page.locator("#upload-preview")).to_be_visible()
    screenshot(page, "webpage-desktop.png")


def test_drop_an_mnist_digit(open_page, mnist_test):
    i = 1
    page = open_page()
    data = base64.b64encode(encode(as_upload(mnist_test.images[i]))).decode()
    transfer = page.evaluate_handle(
        "([b64, name]) => { const dt = new DataTransfer();"
        " dt.items.add(new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name, {type: 'image/png'}));"
        " return dt; }", [data, "dropped.png"])
    page.dispatch_event("#drop", "dragover", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_have_class(re.compile(r"\bover\b"))
    with page.expect_response(is_predict) as answer:
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop")).not_to_have_class(re.compile(r"\bover\b"))
    api = expect_result_of(page, answer.value, "dropped.png")
    assert api["digit"] == int(mnist_test.labels[i])


def test_non_image_upload_shows_the_api_error(open_page, tmp_path):
    page = open_page()
    expect_result_of(page, draw_with_mouse(page, VERTICAL_ONE), "your drawing")
    path = tmp_path / "notes.txt"
    path.write_text("this is not a picture of a digit\n")
    with page.expect_response(is_predict) as answer:
        page.get_by_label("Choose an image").set_input_files(path)
    assert answer.value.status == 415
    message = answer.value.json()["error"]["message"]
    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"Error: {message}")
    expect(error).to_contain_text("HTTP 415 · unsupported_media_type")
    expect(page.locator("#summary")).to_be_hidden()
    expect(page.locator("#details")).to_be_hidden()
    expect(page.locator("#upload-preview")).to_be_hidden()
    screenshot(page, "webpage-error.png")


def test_keyboard_reaches_the_controls(open_page):
    page = open_page()
    focused = []
    for _ in range(3):  # the canvas is not a tab stop: the file picker is the keyboard's way in
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert focused == ["recognise", "clear", "file"]
    page.locator("#recognise").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Draw a digit on the canvas first.")
    for control in ("#pad", "#recognise", "#clear", "#file"):
        described = page.eval_on_selector(control, "e => e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()")
        assert described, f"{control} has no accessible name"


def test_uncertain_answer_is_shown_plainly(open_page):
    """The real model is rarely unsure of a clean stroke, so this answer is the API's documented
    shape served by the test: it checks how the page shows `uncertain`, not the model."""
    page = open_page()
    probs = [0.02, 0.05, 0.03, 0.25, 0.31, 0.04, 0.06, 0.08, 0.1, 0.06]
    fake = {"digit": 4, "confidence": 0.31, "probabilities": probs,
            "top_k": [{"digit": 4, "probability": 0.31}, {"digit": 3, "probability": 0.25}],
            "uncertain": True, "model": {"name": "mnist-cnn", "version": 1}}
    page.route("**/predict*", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(fake)))
    draw_with_mouse(page, SEVEN)
    banner = page.locator("#uncertain")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Uncertain")
    expect(page.locator("#digit")).to_have_text("4")
    expect(page.locator("#confidence")).to_have_text("Confidence: 31.0%")
    expect(page.locator("#seen")).to_be_hidden()  # no input_image in this answer
    expect(page.locator("#quick")).to_be_hidden()  # the phone-only summary stays out of a desktop page
    screenshot(page, "webpage-uncertain.png")


def test_phone_viewport_draw_with_a_finger(open_page):
    page = open_page(**PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    box = page.locator("#pad").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["width"] >= 250
    for name in ("Recognise drawing", "Clear"):
        assert page.get_by_role("button", name=name).bounding_box()["height"] >= 44
    page.locator("#pad").scroll_into_view_if_needed()
    scroll = page.evaluate("window.scrollY")
    api = expect_result_of(page, draw_with_touch(page, VERTICAL_ONE), "your drawing")
    assert api["digit"] == 1
    assert page.evaluate("window.scrollY") == scroll, "drawing must not scroll the page"
    quick = page.locator("#quick")  # the result panel is below the fold: its gist shows by the canvas
    expect(quick).to_have_text(f"Digit 1 ({100 * api['confidence']:.1f}%)")
    expect(quick).to_be_in_viewport()
    screenshot(page, "webpage-phone.png")


def test_read_a_number_shows_boxes_digits_and_what_the_model_saw(open_page, mnist_test, tmp_path):
    """MNIST test digits 0..3 (7, 2, 1, 0) in a row on ruled paper: the page sends the picture to
    /read and shows the number, one box over the picture per digit, and each digit's 28x28 input."""
    size, gap = 80, 40
    page_px = np.full((size + 2 * gap, 4 * (size + gap) + gap), 255, np.uint8)
    page_px[gap // 2 :: 30] = 190  # ruled lines
    for i in range(4):
        x = gap + i * (size + gap)
        digit = np.asarray(Image.fromarray(mnist_test.images[i]).resize((size, size), Image.Resampling.BICUBIC))
        page_px[gap : gap + size, x : x + size] = np.minimum(page_px[gap : gap + size, x : x + size], 255 - digit)
    path = tmp_path / "number.png"
    path.write_bytes(encode(page_px))
    want = "".join(str(int(d)) for d in mnist_test.labels[:4])
    page = open_page()
    with page.expect_response(lambda r: r.request.method == "POST" and "/read" in r.url) as answer:
        page.get_by_label("Choose a picture").set_input_files(path)
    assert answer.value.json()["text"] == want
    expect(page.locator("#number-text")).to_have_text(want)
    expect(page.locator("#number-boxes .box")).to_have_count(4)
    expect(page.locator("#number-digits li")).to_have_count(4)
    sizes = page.eval_on_selector_all("#number-digits img", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[28, 28]] * 4
    # The boxes sit over the digits: the first one's left edge in the left quarter of the picture.
    img, first = page.locator("#number-picture").bounding_box(), page.locator("#number-boxes .box").first.bounding_box()
    assert img["x"] <= first["x"] < img["x"] + img["width"] / 4
    screenshot(page, "webpage-read-number.png")
