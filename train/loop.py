"""One training epoch and one evaluation pass; the model and optimizer are passed in."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import paddle
import paddle.nn.functional as F

from train.data import EVAL_BATCH, eval_batches
from train.optim import l1_penalty


def step_seed(seed: int, epoch: int, step: int) -> int:
    """Paddle's RNG (dropout) is reseeded every step from the run position, so resume is exact."""
    return int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0] & 0x7FFFFFFF)


def train_one_epoch(
    model,
    optimizer,
    schedule,
    batches,
    *,
    seed: int,
    epoch: int,
    l1: float = 0.0,
    label_smoothing: float = 0.0,
    on_step: Callable[[dict], bool] | None = None,
    loss_fn: Callable | None = None,
) -> dict:
    """Train on `batches` ((step, x, y) tuples). on_step gets each step's record; True stops early.

    loss_fn(logits, labels) replaces cross-entropy (train/openset.py); labels < 0 mark records
    that are no digit, left out of the accuracy."""
    model.train()
    seen = correct = 0
    loss_sum = 0.0
    t0 = time.perf_counter()
    for step, x, y in batches:
        paddle.seed(step_seed(seed, epoch, step))
        xt, yt = paddle.to_tensor(x), paddle.to_tensor(y)
        logits = model(xt)
        if loss_fn is not None:
            loss = loss_fn(logits, yt)
        elif label_smoothing:
            loss = F.cross_entropy(logits, yt, label_smoothing=label_smoothing)
        else:
            loss = F.cross_entropy(logits, yt)
        total = loss + l1_penalty(model, l1) if l1 else loss
        total.backward()
        optimizer.step()
        optimizer.clear_grad()
        schedule.step()
        loss_value = float(loss)
        batch_correct = int((logits.argmax(axis=1) == yt).astype("int64").sum())
        n = int((y >= 0).sum())
        seen += n
        correct += batch_correct
        loss_sum += loss_value * n
        record = {
            "epoch": epoch,
            "step": step,
            "loss": loss_value,
            "acc": batch_correct / max(n, 1),
            "lr": float(optimizer.get_lr()),
            "images_per_s": seen / max(time.perf_counter() - t0, 1e-9),
        }
        if on_step is not None and on_step(record):
            break
    elapsed = time.perf_counter() - t0
    return {
        "loss": loss_sum / max(seen, 1),
        "acc": correct / max(seen, 1),
        "images": seen,
        "seconds": elapsed,
        "images_per_s": seen / max(elapsed, 1e-9),
    }


@paddle.no_grad()
def predict_logits(model, images_u8: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Logits for uint8 images [N, 28, 28], in order."""
    model.eval()
    dummy = np.zeros(len(images_u8), dtype=np.int64)
    out = [model(paddle.to_tensor(x)).numpy() for x, _ in eval_batches(images_u8, dummy, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def evaluate(model, images_u8: np.ndarray, labels: np.ndarray, dist=None) -> dict:
    """Loss and accuracy over every record (no augmentation, no dropout).

    dist (train/distributed.py): each data-parallel process evaluates its own share of the records
    with rank 0's batch-norm statistics, and the sums are added up, so N processes give rank 0's
    figures in 1/N of the time (a record's logits do not depend on the batch it is in)."""
    share = slice(None)
    if dist is not None:
        dist.same_state(model)
        share = dist.share_of(len(labels))
    logits, y = predict_logits(model, images_u8[share]), labels[share]
    # Cross-entropy per record, summed in float64: the same total whichever process adds which part.
    losses = F.cross_entropy(paddle.to_tensor(logits), paddle.to_tensor(y), reduction="none").numpy()
    sums = np.array([losses.sum(dtype=np.float64), (logits.argmax(axis=1) == y).sum(), len(y)], np.float64)
    if dist is not None:
        sums = dist.all_sum(sums)
    loss, correct, n = sums.tolist()
    return {"loss": loss / max(n, 1), "acc": correct / max(n, 1), "n": int(n)}
