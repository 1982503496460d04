"""Encode arrays as the files clients upload."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image, fmt: str = "PNG", **kwargs) -> bytes:
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def as_upload(mnist_digit: np.ndarray, size: int = 140) -> Image.Image:
    """An MNIST digit as a user would draw it: dark ink on white paper, larger than 28x28."""
    return Image.fromarray(255 - mnist_digit).resize((size, size), Image.Resampling.BICUBIC)


def file_field(data: bytes, name: str = "digit.png") -> tuple:
    """A multipart file value for Flask's test client."""
    return (io.BytesIO(data), name)
