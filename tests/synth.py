"""Small synthetic digit data written as real gzip IDX files, for tests that must not need MNIST."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from train.mnist import FILES, IMAGES_MAGIC, LABELS_MAGIC


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", IMAGES_MAGIC, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", LABELS_MAGIC, len(labels)) + labels.astype(np.uint8).tobytes())


def render_digit(digit: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A digit drawn with a TrueType font, light on black, jittered in size, position and angle."""
    font = ImageFont.load_default(size=int(rng.integers(17, 23)))
    img = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(img).text((size, size), str(digit), fill=255, font=font, anchor="mm",
                             stroke_width=int(rng.integers(0, 2)), stroke_fill=255)
    img = img.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    dx, dy = rng.integers(-2, 3, 2)
    half = size // 2
    return np.asarray(img.crop((half - dx, half - dy, half - dx + size, half - dy + size)))


def make_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    return np.stack([render_digit(int(d), rng) for d in labels]), labels.astype(np.int64)


def write_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A folder with the four standard MNIST file names, holding synthetic digits."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = make_digits(n, s)
        img_name, lbl_name = FILES[split]
        write_idx_images(folder / img_name, images)
        write_idx_labels(folder / lbl_name, labels)
    return folder
