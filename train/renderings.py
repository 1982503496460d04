"""Digits (and non-digits) drawn as the pictures users really upload, for tuning at export.

Calibration and the rejection threshold must be fitted on what the service sees: encoded PNG and
JPEG uploads that go through serving's own `prepare` (decode, orientation, alpha, grayscale, ink
search, segmentation, centring). Each kind here is a function (28x28 light-on-black drawing, rng)
-> upload bytes. They are written for tuning and seeded apart from everything else; the test
generators in tests/uploads.py are deliberately other code with other ranges, so the figures
reported on them measure how the tuning generalises rather than repeat it.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from serve.preprocess import Spec, prepare
from train import negatives as neg
from train.negatives import REFUSED, SPEC  # a 422 before the model: a false rejection for a digit


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _ink(drawing: np.ndarray, size: int) -> np.ndarray:
    """The drawing scaled to size x size, as float ink in [0, 1] (1 = ink)."""
    return np.asarray(Image.fromarray(drawing).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255.0


def _pen(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pen finer or broader than MNIST's: grey erosion or dilation by a random odd size."""
    k = int(rng.choice([3, 5, 7, 9, 11]))
    img = Image.fromarray((ink * 255).astype(np.uint8))
    img = img.filter(ImageFilter.MinFilter(k) if rng.uniform() < 0.6 else ImageFilter.MaxFilter(k))
    out = np.asarray(img, np.float32) / 255.0
    return out if out.max() > 0.5 else ink  # a stroke eroded away: keep the original pen


def _rotate(ink: np.ndarray, rng: np.random.Generator, deg: float) -> np.ndarray:
    img = Image.fromarray((ink * 255).astype(np.uint8)).rotate(float(rng.uniform(-deg, deg)), Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32) / 255.0


def _on_paper(ink: np.ndarray, rng: np.random.Generator, grain: float = 5.0) -> Image.Image:
    """Dark ink on paper of a random grey, with sensor grain: mode L."""
    paper, pen = rng.uniform(185, 255), rng.uniform(0, 90)
    gray = paper - ink * (paper - pen) + rng.normal(0, rng.uniform(0, grain), ink.shape)
    return Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))


def paper(drawing: np.ndarray, rng: np.random.Generator) -> bytes:
    """A scan or a drawing program's export: dark on grey-to-white paper, sometimes tilted, PNG."""
    ink = _ink(drawing, int(rng.integers(64, 480)))
    if rng.uniform() < 0.5:
        ink = _rotate(ink, rng, 10)
    return _bytes(_on_paper(ink, rng))


def pens(drawing: np.ndarray, rng: np.random.Generator) -> bytes:
    """Fine liners and markers: the stroke far thinner or bolder than MNIST's."""
    ink = _pen(_ink(drawing, int(rng.integers(160, 360))), rng)
    return _bytes(_on_paper(ink, rng))


def sheet(drawing: np.ndarray, rng: np.random.Generator) -> bytes:
    """A small digit somewhere on a large sheet of paper."""
    side = int(rng.integers(40, 200))
    w, h = int(rng.integers(side + 40, 1000)), int(rng.integers(side + 40, 800))
    ink = np.zeros((h, w), np.float32)
    y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    ink[y : y + side, x : x + side] = _ink(drawing, side)
    return _bytes(_on_paper(ink, rng, grain=3.0))


def camera(drawing: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo: tinted paper, a coloured pen, light falling off across the sheet, grain,
    focus blur and JPEG compression."""
    size = int(rng.integers(240, 800))
    ink = _ink(drawing, int(size * rng.uniform(0.35, 0.8)))
    pad = size - ink.shape[0]
    top, left = int(rng.integers(0, pad + 1)), int(rng.integers(0, pad + 1))
    ink = np.pad(ink, ((top, pad - top), (left, pad - left)))[..., None]
    sheet_rgb = rng.uniform([165, 160, 130], [255, 250, 240]).astype(np.float32)
    pen_rgb = rng.uniform([0, 0, 0], [90, 90, 140]).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.uniform(0, 2 * np.pi)
    light = 1.0 - rng.uniform(0, 0.35) * (0.5 + 0.5 * (np.cos(a) * xx + np.sin(a) * yy))
    rgb = (sheet_rgb * (1 - ink) + pen_rgb * ink) * light[..., None] + rng.normal(0, rng.uniform(2, 9), (size, size, 3))
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 2.0))))
    return _bytes(img, "JPEG", quality=int(rng.integers(30, 90)))


def canvas(drawing: np.ndarray, rng: np.random.Generator) -> bytes:
    """A browser canvas: coloured (or white) strokes on a transparent background, RGBA PNG."""
    size = int(rng.integers(140, 480))
    alpha = (_ink(drawing, size) * 255).astype(np.uint8)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 80, 3) if rng.uniform() < 0.8 else 255
    rgba[..., 3] = alpha
    return _bytes(Image.fromarray(rgba, "RGBA"))


def sideways(drawing: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone JPEG stored turned, with the EXIF orientation that puts it upright again."""
    orientation, stored_as = [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90),
                              (8, Image.Transpose.ROTATE_270)][int(rng.integers(3))]
    img = _on_paper(_ink(drawing, int(rng.integers(120, 400))), rng).convert("RGB").transpose(stored_as)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _bytes(img, "JPEG", quality=int(rng.integers(60, 95)), exif=exif.tobytes())


def thumbnail(drawing: np.ndarray, rng: np.random.Generator) -> bytes:
    """A small, soft picture: a crop of a photo or a downscaled message attachment, JPEG."""
    ink = _ink(drawing, int(rng.integers(36, 96)))
    if rng.uniform() < 0.5:
        ink = _rotate(ink, rng, 12)
    img = _on_paper(ink, rng).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    return _bytes(img, "JPEG", quality=int(rng.integers(35, 85)))


KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "paper": paper, "pens": pens, "sheet": sheet, "camera": camera, "canvas": canvas, "sideways": sideways,
    "thumbnail": thumbnail,
}


def prepared(uploads: list[bytes], spec: Spec = SPEC) -> tuple[np.ndarray, np.ndarray]:
    """What serving's `prepare` makes of each upload: (uint8 [K, 28, 28] of those it answers,
    bool [N] refused with a 422)."""
    images, refused = [], np.zeros(len(uploads), bool)
    for i, data in enumerate(uploads):
        try:
            images.append(prepare(data, spec).image)
        except REFUSED:
            refused[i] = True
    return (np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)), refused


def render(drawings: np.ndarray, seed: int) -> tuple[list[bytes], np.ndarray]:
    """Each drawing as one upload, the kinds taken in turn: (uploads, kind names)."""
    names = sorted(KINDS)
    kinds = np.array([names[i % len(names)] for i in range(len(drawings))])
    return [KINDS[k](d, np.random.default_rng([seed, i, 0x0B5])) for i, (k, d) in enumerate(zip(kinds, drawings))], kinds


def negative_uploads(n: int, seed: int, sources=None) -> tuple[list[bytes], np.ndarray]:
    """n non-digit uploads of train/negatives.py's kinds (by its WEIGHTS): drawn kinds through this
    module's upload kinds in turn, every other one drawn 28x28 first (negatives.as_mnist), as the
    digits are; photo crops, textures and noise sent as the JPEG/PNG they are."""
    src = sources or neg.Sources.for_training()
    chosen = neg.choose_kinds(n, seed)
    upload_kinds = sorted(KINDS)
    out = []
    for i, kind in enumerate(chosen):
        rng = np.random.default_rng([seed, i])
        gray = neg.draw(kind, src, rng)
        if kind in ("photos", "textures"):
            out.append(_bytes(Image.fromarray(gray).convert("RGB"), "JPEG", quality=int(rng.integers(50, 95))))
        elif kind == "noise":
            out.append(_bytes(Image.fromarray(gray)))
        else:
            ink = neg.ink_of(gray)
            drawing = neg.as_mnist(ink) if i % 2 else (ink * 255).astype(np.uint8)
            out.append(KINDS[upload_kinds[i % len(upload_kinds)]](drawing, rng))
    return out, chosen


def upload_digits(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digits rendered as uploads and prepared as serving prepares them: (images the model sees,
    their labels, kind names of those), refused ones (a false rejection by preprocessing) dropped."""
    uploads, kinds = render(images, seed)
    seen, refused = prepared(uploads)
    return seen, labels[~refused], kinds[~refused]
