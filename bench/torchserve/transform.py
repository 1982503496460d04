"""What the bench's TorchServe handler does to an upload before the network, as named pure steps.

Imports only numpy and Pillow, so it is packed into the model archive beside the handler and tested
without TorchServe. Like the example's handler: decode, one gray channel, the network's size, then
(x/255 - mean) / std. The numbers are passed in (the archive carries them from train/mnist.py).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def decode_gray(data: bytes) -> Image.Image:
    """The upload's picture as one 8-bit gray channel (RGB or RGBA uploads are converted)."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("L")


def fit(im: Image.Image, size: int) -> Image.Image:
    """size x size; a 28x28 MNIST-style upload passes through untouched."""
    return im if im.size == (size, size) else im.resize((size, size), Image.Resampling.BILINEAR)


def normalize(im: Image.Image, mean: float, std: float) -> np.ndarray:
    """float32 [1, H, W] scaled to [0, 1], then standardized."""
    x = np.asarray(im, dtype=np.float32) / 255.0
    return ((x - mean) / std)[None]


def to_input(data: bytes, *, size: int, mean: float, std: float) -> np.ndarray:
    return normalize(fit(decode_gray(data), size), mean, std)
