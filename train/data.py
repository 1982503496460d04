"""From validated arrays to training batches: the validation split, augmentation and a prefetching loader.

Every random choice is a pure function of (seed, epoch, step), so a resumed run sees exactly the
batches an uninterrupted one would, whatever thread produced them.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
from PIL import Image

from train.mnist import IMAGE_SIZE, MEAN, STD, load_split, resolve_data_dir

if TYPE_CHECKING:
    from train.config import TrainConfig


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): val_size records drawn per class in proportion to its frequency."""
    if not 0 < val_size < len(labels):
        raise ValueError(f"val_size must be between 1 and {len(labels) - 1}, got {val_size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / len(labels) * val_size).astype(int)
    # Hand out the remainder to the classes with the largest fractional share, deterministically.
    remainder = val_size - quota.sum()
    frac = counts / len(labels) * val_size - quota
    quota[np.argsort(-frac, kind="stable")[:remainder]] += 1
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)])
    val.sort()
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


@dataclass
class Dataset:
    """The three splits as uint8 images [N, 28, 28] and int64 labels, and where they came from."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    info: dict


def load_data(cfg: "TrainConfig") -> Dataset:
    """Validated train/validation/test arrays. The test set is only read here and used once, at the end."""
    data_dir = resolve_data_dir(cfg.data_dir)
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    train_idx, val_idx = stratified_split(train.labels, cfg.val_size, cfg.seed)
    if cfg.limit_train:
        train_idx = train_idx[: cfg.limit_train]
    info = {
        "dir": str(data_dir),
        "standard_mnist": train.standard and test.standard,
        "sha256": {**train.sha256, **test.sha256},
        "train": int(len(train_idx)),
        "val": int(len(val_idx)),
        "test": int(len(test)),
    }
    return Dataset(
        train.images[train_idx], train.labels[train_idx],
        train.images[val_idx], train.labels[val_idx],
        test.images, test.labels, info,
    )



def normalize(images_u8: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] with the training normalization."""
    x = images_u8.astype(np.float32) / 255.0
    return ((x - MEAN) / STD)[:, None, :, :]


@dataclass(frozen=True)
class Augment:
    """Small plausible distortions: writers rotate, scale, shear and misplace their digits."""

    max_rotate_deg: float = 12.0
    max_scale: float = 0.12
    max_shear: float = 0.15
    max_shift_px: float = 2.5

    def params(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The distortions of n images: inverse matrices [n, 2, 2] and offsets [n, 2] (output -> input pixel)."""
        angle = np.deg2rad(rng.uniform(-self.max_rotate_deg, self.max_rotate_deg, n))
        scale = 1.0 + rng.uniform(-self.max_scale, self.max_scale, n)
        shear = rng.uniform(-self.max_shear, self.max_shear, n)
        shift = rng.uniform(-self.max_shift_px, self.max_shift_px, (n, 2))
        cos, sin = np.cos(angle), np.sin(angle)
        # forward = rotate @ shear @ scale, about the centre; sampling needs its inverse.
        forward = np.stack([np.stack([cos, cos * shear - sin], -1), np.stack([sin, sin * shear + cos], -1)], 1)
        inv = np.linalg.inv(forward * scale[:, None, None])
        c = (IMAGE_SIZE - 1) / 2.0
        offset = c - np.einsum("nij,nj->ni", inv, c + shift)
        return inv, offset

    def apply(self, images_u8: np.ndarray, rng: np.random.Generator, part: slice = slice(None)) -> np.ndarray:
        """Distort images_u8[part] with the draws for the whole of images_u8, so a batch split between
        processes gives every image the distortion it gets in one process, and each process warps
        only its own slice. PIL's C warp (~0.1 ms an image) beats a vectorised numpy gather here."""
        inv, offset = self.params(len(images_u8), rng)
        idx = np.arange(len(images_u8))[part]
        out = np.empty((len(idx), *images_u8.shape[1:]), images_u8.dtype)
        for j, i in enumerate(idx):
            coeffs = (inv[i, 0, 0], inv[i, 0, 1], offset[i, 0], inv[i, 1, 0], inv[i, 1, 1], offset[i, 1])
            pil = Image.fromarray(images_u8[i])
            out[j] = np.asarray(pil.transform(pil.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR))
        return out


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled record order of one epoch: a function of (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch, 0]).permutation(n)


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    augment: Augment | None = None,
    augment_from_epoch: int = 0,
    drop_last: bool = True,
    prefetch: int = 4,
    part: slice = slice(None),
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (step, x float32 [B,1,28,28], y int64 [B]) for one epoch, from start_step on.

    The last short batch is dropped by default: a tiny batch gives a noisy step and skews batch
    norm statistics, and the shuffle puts those records into other batches next epoch.
    Batches are built in a background thread so the trainer never waits on augmentation.
    `part` keeps only that slice of every batch (a data-parallel rank's share), augmenting only it.
    Epochs before `augment_from_epoch` are plain: early on the distortions only slow learning down.
    """
    if epoch < augment_from_epoch:
        augment = None
    order = epoch_order(len(labels), seed, epoch)
    total = steps_per_epoch(len(labels), batch_size, drop_last)

    def make(step: int):
        idx = order[step * batch_size : (step + 1) * batch_size]
        if augment is None:
            x = images[idx[part]]
        else:  # the whole batch's draws, applied to this part only
            x = augment.apply(images[idx], np.random.default_rng([seed, epoch, step + 1]), part)
        return step, normalize(x), labels[idx[part]]

    yield from _prefetch((make(s) for s in range(start_step, total)), prefetch)


# Images per forward pass when evaluating: batch 128 takes 0.6x the time of 1000 on one core (a
# thousand images' activations overflow the caches) and gives bit-identical logits.
EVAL_BATCH = 128


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int = EVAL_BATCH):
    """Yield (x, y) in file order, the last short batch included: evaluation must see every record."""
    for i in range(0, len(labels), batch_size):
        yield normalize(images[i : i + batch_size]), labels[i : i + batch_size]


_DONE = object()


def _prefetch(it, depth: int):
    """Run an iterator in a daemon thread, `depth` items ahead; errors are re-raised in the consumer."""
    if depth <= 0:
        yield from it
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker():
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as e:  # hand the failure to the consumer
            q.put(e)

    t = threading.Thread(target=worker, daemon=True, name="batch-prefetch")
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not q.empty():  # unblock a producer waiting on a full queue
            q.get_nowait()
