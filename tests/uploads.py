"""Turn MNIST digits into the kinds of pictures real users upload (pure functions, seeded)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from tests.images import encode


def ink_on_paper(digit: np.ndarray, size: int) -> Image.Image:
    """Dark ink on white paper, scaled up: the usual scan or drawing."""
    return Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)


def scan(digit, rng) -> bytes:
    return encode(ink_on_paper(digit, int(rng.integers(100, 400))))


def off_centre(digit, rng) -> bytes:
    """A small digit somewhere on a large page."""
    size = int(rng.integers(60, 160))
    page = Image.new("L", (int(rng.integers(500, 900)), int(rng.integers(400, 700))), 255)
    x, y = int(rng.integers(0, page.width - size)), int(rng.integers(0, page.height - size))
    page.paste(ink_on_paper(digit, size), (x, y))
    return encode(page)


def phone_photo(digit, rng) -> bytes:
    """Coloured paper, uneven light, sensor noise, blur and JPEG compression."""
    size = int(rng.integers(300, 700))
    ink = np.asarray(ink_on_paper(digit, size // 2).resize((size, size)), np.float32) / 255.0  # 1 paper, 0 ink
    paper = np.array(rng.uniform([180, 170, 140], [250, 245, 230]), np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    light = 1.0 - 0.25 * (rng.uniform() * xx + rng.uniform() * yy)  # a shadow across the sheet
    pen = np.array(rng.uniform([10, 10, 40], [60, 60, 120]), np.float32)  # dark blue/black pen
    rgb = (ink[..., None] * paper + (1 - ink[..., None]) * pen) * light[..., None]
    rgb += rng.normal(0, 6, rgb.shape)
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    return encode(img, "JPEG", quality=int(rng.integers(40, 80)))


def canvas_drawing(digit, rng) -> bytes:
    """A browser canvas export: black strokes on a transparent background (RGBA PNG)."""
    size = int(rng.integers(200, 400))
    alpha = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC))
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 3] = alpha
    return encode(Image.fromarray(rgba, "RGBA"))


def thin_pen(digit, rng) -> bytes:
    """A fine pen: strokes much thinner than MNIST's, relative to the digit."""
    size = 280
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC))
    thin = Image.fromarray(big).filter(ImageFilter.MinFilter(9)).filter(ImageFilter.MinFilter(5))
    thin = np.asarray(thin)
    if thin.max() < 128:  # a digit too thin to survive erosion: keep a lighter erosion
        thin = np.asarray(Image.fromarray(big).filter(ImageFilter.MinFilter(7)))
    return encode(Image.fromarray(255 - thin))


def exif_rotated(digit, rng) -> bytes:
    """A phone JPEG stored sideways with an EXIF orientation tag saying how to turn it upright."""
    upright = ink_on_paper(digit, 240).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 means: rotate 270 to view
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


KINDS = {
    "scan": scan,
    "off_centre": off_centre,
    "phone_photo": phone_photo,
    "canvas_rgba": canvas_drawing,
    "thin_pen": thin_pen,
    "exif_rotated": exif_rotated,
}
