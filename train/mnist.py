"""What MNIST is and how to read it: the facts every later stage relies on, and a validating IDX reader.

The normalization, input shape and labels defined here travel to export through the checkpoint's
config and from there to serving through manifest.json; serving never imports this module.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28
INPUT_SHAPE = (1, IMAGE_SIZE, IMAGE_SIZE)  # C, H, W: what every model in the zoo takes
LABELS = tuple(str(d) for d in range(10))
# Mean and std of the MNIST training pixels scaled to [0, 1]; applied as (x/255 - MEAN) / STD.
MEAN = 0.1307
STD = 0.3081
# MNIST digits were size-normalized into a 20x20 box, then centred by centre of mass in 28x28.
DIGIT_BOX = 20

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
COUNTS = {"train": 60000, "test": 10000}
# sha256 of the *uncompressed* standard files: independent of how a mirror gzipped them.
KNOWN_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


class DataError(ValueError):
    """A data file is missing, corrupt, truncated or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Split:
    """Images as uint8 [N, 28, 28], labels as int64 [N], and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    sha256: dict  # file name -> sha256 of its uncompressed bytes
    standard: bool  # True when every file is the published MNIST file

    def __len__(self) -> int:
        return len(self.labels)


def _read_gzip(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None


def parse_idx_images(raw: bytes, source: str) -> np.ndarray:
    """Parse an IDX3 unsigned-byte image file, checking magic, shape and length."""
    if len(raw) < 16:
        raise DataError(f"{source}: truncated header ({len(raw)} bytes, need 16)")
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IMAGES_MAGIC:
        raise DataError(f"{source}: bad magic number 0x{magic:08x}, expected 0x{IMAGES_MAGIC:08x} (IDX3 images)")
    if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{source}: images are {rows}x{cols}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    expected = 16 + n * rows * cols
    if len(raw) != expected:
        raise DataError(f"{source}: {len(raw)} bytes for {n} images, expected {expected} (truncated or padded)")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def parse_idx_labels(raw: bytes, source: str) -> np.ndarray:
    """Parse an IDX1 unsigned-byte label file, checking magic, length and the 0-9 range."""
    if len(raw) < 8:
        raise DataError(f"{source}: truncated header ({len(raw)} bytes, need 8)")
    magic, n = struct.unpack(">II", raw[:8])
    if magic != LABELS_MAGIC:
        raise DataError(f"{source}: bad magic number 0x{magic:08x}, expected 0x{LABELS_MAGIC:08x} (IDX1 labels)")
    if len(raw) != 8 + n:
        raise DataError(f"{source}: {len(raw)} bytes for {n} labels, expected {8 + n} (truncated or padded)")
    labels = np.frombuffer(raw, dtype=np.uint8, offset=8)
    if labels.size and labels.max() >= len(LABELS):
        bad = int(np.argmax(labels >= len(LABELS)))
        raise DataError(f"{source}: label {labels[bad]} at record {bad} is outside 0-{len(LABELS) - 1}")
    return labels.astype(np.int64)


def load_split(data_dir: str | os.PathLike, split: str) -> Split:
    """Read and validate one split ('train' or 'test') from a folder of gzip IDX files."""
    data_dir = Path(data_dir)
    names = FILES[split]
    raws = {name: _read_gzip(data_dir / name) for name in names}
    sha = {name: hashlib.sha256(raw).hexdigest() for name, raw in raws.items()}
    images = parse_idx_images(raws[names[0]], str(data_dir / names[0]))
    labels = parse_idx_labels(raws[names[1]], str(data_dir / names[1]))
    if len(images) != len(labels):
        raise DataError(
            f"{data_dir / names[0]} has {len(images)} images but {data_dir / names[1]} has {len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{data_dir / names[0]}: no records")
    standard = all(KNOWN_SHA256[n] == sha[n] for n in names)
    if not standard and len(images) == COUNTS[split]:
        # Full-size files that are not the published ones: a corrupted download, not a custom set.
        bad = [n for n in names if KNOWN_SHA256[n] != sha[n]]
        raise DataError(f"{', '.join(str(data_dir / n) for n in bad)}: sha256 differs from the published MNIST file")
    return Split(images=images, labels=labels, sha256=sha, standard=standard)


def resolve_data_dir(data_dir: str | None) -> Path:
    """The folder to read: --data-dir, else $MNIST_DIR, else Paddle's downloader (needs internet)."""
    data_dir = data_dir or os.environ.get("MNIST_DIR")
    if data_dir:
        return Path(data_dir)
    return download()


def download() -> Path:
    """Fetch the four files with Paddle's own downloader and return the folder holding them."""
    from paddle.dataset.common import DATA_HOME, download as paddle_download
    from paddle.vision.datasets.mnist import MNIST

    for url, digest in [
        (MNIST.TRAIN_IMAGE_URL, MNIST.TRAIN_IMAGE_MD5),
        (MNIST.TRAIN_LABEL_URL, MNIST.TRAIN_LABEL_MD5),
        (MNIST.TEST_IMAGE_URL, MNIST.TEST_IMAGE_MD5),
        (MNIST.TEST_LABEL_URL, MNIST.TEST_LABEL_MD5),
    ]:
        paddle_download(url, MNIST.NAME, digest)
    return Path(DATA_HOME) / MNIST.NAME
