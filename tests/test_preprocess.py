"""Upload preprocessing, one pure function at a time, on generated pictures of each kind."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from serve.errors import ApiError, BadImage, NoDigit, TooLarge, UnsupportedType
from serve.preprocess import (Limits, Spec, border_paper, centre_by_mass, decode, fit_box, normalize, prepare,
                              percentile, prepare_gray, read_gray, sniff_format, stroke_width, to_gray)
from tests.images import encode
from tests.uploads import KINDS
from train.mnist import MEAN, STD

SPEC = Spec(mean=MEAN, std=STD)


@pytest.fixture(scope="module")
def digits(mnist_dir):
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    return test.images[:40], test.labels[:40]


def centre_of_mass(img):
    ys, xs = np.indices(img.shape)
    w = img.astype(float)
    return (ys * w).sum() / w.sum(), (xs * w).sum() / w.sum()


def similarity(a, b):
    """Correlation of two 28x28 images after a blur: tolerant of one-pixel shifts, not of wrong shapes."""
    def blur(x):
        return np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(1.5)), float).ravel()

    return float(np.corrcoef(blur(a), blur(b))[0, 1])


def test_sniffing_accepts_png_and_jpeg_only():
    assert sniff_format(encode(np.zeros((4, 4)))) == "PNG"
    assert sniff_format(encode(np.zeros((4, 4)), "JPEG")) == "JPEG"
    for fmt in ("GIF", "BMP", "TIFF", "WEBP"):
        with pytest.raises(UnsupportedType):
            sniff_format(encode(np.zeros((4, 4)), fmt))
    with pytest.raises(UnsupportedType):
        sniff_format(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(BadImage, match="empty"):
        sniff_format(b"")


def test_decode_refuses_truncated_and_corrupt_files():
    png = encode(np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8))
    with pytest.raises(BadImage):
        decode(png[: len(png) // 2], Limits())
    with pytest.raises(BadImage):
        decode(png[:8] + b"\x00" * 100, Limits())


def test_decompression_bomb_is_refused_before_decoding():
    # Tiny files, huge dimensions: only the header may be read. Our limit catches the first,
    # Pillow's own decompression-bomb guard (kept on) the second.
    for side, message in ((10000, "10000x10000 = 100000000 pixels"), (20000, "decompression bomb")):
        bomb = encode(Image.new("1", (side, side)))
        assert len(bomb) < 1_000_000
        with pytest.raises(TooLarge, match=message):
            decode(bomb, Limits(max_pixels=40_000_000))


def test_polarity_is_detected_from_the_paper():
    page = np.full((50, 50), 230, np.uint8)
    page[20:30, 20:30] = 20
    assert border_paper(page)[0]
    assert not border_paper(255 - page)[0]


def test_mnist_digit_passes_through_nearly_unchanged(digits):
    images, _ = digits
    for img in images[:10]:
        out = prepare_gray(img, SPEC).image
        assert similarity(out, img) > 0.8


def test_polarity_scale_and_offset_give_the_same_input(digits):
    images, _ = digits
    img = images[0]
    reference = prepare_gray(img, SPEC).image
    page = np.full((600, 800), 245, np.uint8)  # white page, digit small and far from the centre
    page[400:540, 50:190] = np.asarray(Image.fromarray(255 - img).resize((140, 140), Image.Resampling.BICUBIC))
    out = prepare_gray(page, SPEC).image
    assert similarity(out, reference) > 0.8
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1


def test_a_digit_cropped_tight_to_its_ink_reads_as_with_a_margin(digits):
    # Cropped to its ink, a digit's strokes are wide against the paper-level window (a share of the
    # picture's shorter side) and only their outlines were ink; it is read with paper added round it.
    images, _ = digits
    close = []
    for img in images:
        ys, xs = np.nonzero(img > 30)
        crop = 255 - img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        tight = np.asarray(Image.fromarray(crop).resize((crop.shape[1] * 6, crop.shape[0] * 6), Image.Resampling.BICUBIC))
        page = np.full((tight.shape[0] * 2, tight.shape[1] * 2), 255, np.uint8)
        page[tight.shape[0] // 2 :, tight.shape[1] // 2 :][: tight.shape[0], : tight.shape[1]] = tight
        try:
            found = read_gray(tight, SPEC, one=True)
            seen = prepare_gray(tight, SPEC).image
        except ApiError:  # (e.g. a bold digit cropped tight covers over a third of its picture, as texture does)
            close.append(0.0)
            continue
        for d in found:  # boxes on the tight picture: the margin taken off again
            x, y, w, h = d.box
            assert x >= 0 and y >= 0 and x + w <= tight.shape[1] and y + h <= tight.shape[0]
        close.append(similarity(seen, prepare_gray(page, SPEC).image))
    assert np.mean(np.array(close) > 0.85) >= 0.7, sorted(np.round(close, 2))


def test_digit_is_fitted_into_the_20_pixel_box_keeping_aspect():
    tall = np.zeros((200, 40), np.float32)
    tall[:, 10:30] = 1.0
    box = fit_box(tall, 20)
    assert box.shape == (20, 4)
    frame = centre_by_mass(box)
    assert frame.shape == (28, 28)
    rows = np.flatnonzero(frame.max(1) > 0.5)
    assert rows[0] == 4 and rows[-1] == 23


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_percentile_is_numpys_to_the_last_bit(dtype):
    # It replaces np.percentile on the hot path; a tensor must not change by a rounding.
    rng = np.random.default_rng(0)
    for n in list(range(1, 12)) + [int(v) for v in rng.integers(12, 500, 300)]:
        values = (rng.random(n) * 255).astype(dtype)
        for q in (50, 90):
            assert percentile(values, q) == float(np.percentile(values, q)), (n, q)


def test_centre_of_mass_of_a_lopsided_digit_lands_at_the_centre():
    digit = np.zeros((20, 12), np.float32)
    digit[:, :3] = 1.0  # all the mass at the left edge
    digit[0, 11] = 1.0
    frame = centre_by_mass(digit)
    rows, cols = np.indices(frame.shape)
    cy, cx = (rows * frame).sum() / frame.sum(), (cols * frame).sum() / frame.sum()
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5


def test_alpha_canvas_strokes_are_ink_whatever_their_colour():
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[20:80, 45:55] = (0, 0, 0, 255)  # black strokes on transparent
    gray = to_gray(Image.fromarray(rgba, "RGBA"))
    assert gray[50, 50] < 50 and gray[5, 5] > 200
    rgba[20:80, 45:55] = (255, 255, 255, 255)  # white strokes on transparent
    gray = to_gray(Image.fromarray(rgba, "RGBA"))
    assert gray[50, 50] > 200 and gray[5, 5] < 50


def test_exif_orientation_is_applied(digits):
    images, _ = digits
    rng = np.random.default_rng(0)
    upright = prepare(KINDS["scan"](images[0], rng), SPEC).image
    rotated = prepare(KINDS["exif_rotated"](images[0], rng), SPEC).image
    assert similarity(rotated, upright) > 0.8


def test_thin_strokes_are_thickened_towards_mnist(digits):
    images, _ = digits
    out = prepare(KINDS["thin_pen"](images[0], np.random.default_rng(0)), SPEC).image
    assert 1.5 < stroke_width(out > 128) < 4.5


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_upload_kind_becomes_an_mnist_like_input(kind, digits):
    images, _ = digits
    rng = np.random.default_rng(1)
    for img in images[:8]:
        out = prepare(KINDS[kind](img, rng), SPEC)
        assert out.tensor.shape == (1, 28, 28) and out.tensor.dtype == np.float32
        assert similarity(out.image, prepare_gray(img, SPEC).image) > 0.75, kind


@pytest.mark.parametrize("picture", ["white", "grey", "noise-free black", "paper with faint texture"])
def test_blank_images_are_no_digit(picture):
    rng = np.random.default_rng(0)
    img = {
        "white": np.full((100, 100), 255, np.uint8),
        "grey": np.full((100, 100), 128, np.uint8),
        "noise-free black": np.zeros((64, 64), np.uint8),
        "paper with faint texture": (235 + rng.normal(0, 4, (300, 300))).clip(0, 255).astype(np.uint8),
    }[picture]
    with pytest.raises(NoDigit):
        prepare(encode(img, "JPEG" if picture.startswith("paper") else "PNG"), SPEC)


def test_normalize_uses_the_manifest_constants():
    x = normalize(np.full((28, 28), 255, np.uint8), Spec(mean=0.5, std=0.25))
    assert x.shape == (1, 28, 28) and np.allclose(x, 2.0)


def test_preprocessing_turns_ipp_off_on_the_thread_it_runs_on(digits):
    """OpenCV's IPP switch is per thread, and IPP's set-up cost dominates small arrays: every
    thread that preprocesses (a gthread worker's, the batcher's) must run without it, whichever
    thread imported OpenCV. The ink found is the same to the bit either way."""
    import threading

    import cv2

    from serve.ink import ink_mask
    from tests.pages import picture

    data = encode(Image.fromarray(255 - digits[0][0]).resize((112, 112)))
    seen = {}

    def run():
        seen["before"] = cv2.ipp.useIPP()
        prepare(data, SPEC)
        seen["after"] = cv2.ipp.useIPP()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen["before"] is True  # the pinned wheel ships IPP: on by default in a new thread
    assert seen["after"] is False
    page = picture("single_squared", 0, *digits).data
    light = 255 - to_gray(decode(page, Limits()))
    found = {}
    for ipp in (True, False):
        cv2.ipp.setUseIPP(ipp)
        found[ipp] = ink_mask(light)
    np.testing.assert_array_equal(found[True].darkness, found[False].darkness)
    np.testing.assert_array_equal(found[True].mask, found[False].mask)
    assert found[True].lines.any()  # the line search ran too


def test_a_dash_drawn_into_a_digit_is_left_out_of_what_the_model_sees():
    """A dash running into a "0" from the left is one piece of ink with it: without a model to
    choose, the reading the shapes favour (the digit alone) is what /predict's path prepares."""
    import cv2

    plain = np.full((160, 260), 255, np.uint8)
    cv2.circle(plain, (170, 80), 36, 0, 9)
    dashed = plain.copy()
    cv2.line(dashed, (40, 82), (140, 82), 0, 4)
    a, b = prepare_gray(plain, SPEC).image.astype(int), prepare_gray(dashed, SPEC).image.astype(int)
    assert np.abs(a - b).mean() < 2  # the same "0"
    whole = prepare_gray(dashed[:, 120:], SPEC).image.astype(int)  # a dash too short to be a mark: kept
    assert np.abs(whole - a).mean() > 5
