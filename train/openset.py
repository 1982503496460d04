"""Open-set training: negatives mixed into every batch and the loss that teaches the model to reject them.

Two ways, measured against each other and the plain model by `python -m train.openset`:
- "extra" (the default): a "not a digit" class whose logit is fixed at 0, beside the ten digit
  logits the network already has. A free eleventh output would add nothing: softmax only sees
  logit differences, and the last layer is linear, so z_d - z_reject is again a linear layer of
  ten outputs. So the network, its checkpoints, reports and the published graph's shape stay as
  they are; export folds the zero logit in: probabilities = softmax([z / T, 0])[:10], and
  1 - their sum is the probability that the picture is not a digit.
- "oe", outlier exposure (Hendrycks et al., 2019): cross-entropy on the digits plus, on the
  negatives, cross-entropy to the uniform distribution over the ten digits.

The hook into training is two calls: `mix` wraps the batch iterator, `loss_for` replaces
cross-entropy. Negatives are drawn once per run (train/negatives.py, seeded) and sampled per step
from (seed, epoch, step), so a resumed run sees the batches an uninterrupted one would.
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F

from train import negatives as neg
from train.distributed import Dist
from train.data import normalize

NEGATIVE = -1  # the label a negative carries through the batch


def pool(n: int, seed: int, small_share: float, dist: Dist = Dist(), digits: np.ndarray | None = None,
         shares: dict[str, float] | None = None) -> np.ndarray:
    """The run's negatives (uint8 [M, 28, 28]): made once, a function of the seed alone. Under
    data-parallel training each rank draws its share and all ranks gather the same whole.
    shares: draws of each kind made from `digits` (training digits: train/negatives.py
    FROM_DIGITS) per draw of the other kinds; added after them, which stay as they are."""
    part = (dist.rank, dist.world_size)
    made = [neg.make(n, seed=seed + 0x5EED, part=part, small_share=small_share)]
    for kind, share in sorted((shares or {}).items()):
        if digits is not None and (draws := round(n * share)):
            made.append(neg.from_digits(kind, draws, seed=seed + 0x5EED, digits=digits, part=part))
    return np.concatenate([neg.Negatives.merge(dist.gather(m)).images for m in made])


def pool_size(limit: int, fraction: float, batch_size: int, steps_per_epoch: int) -> int:
    """Negatives worth making for a run: twice what one epoch draws, at most `limit` (a short run on a
    small dataset draws few, and making one costs about as much as a training step)."""
    return min(limit, 2 * steps_per_epoch * round(batch_size * fraction))


def mix(batches, images: np.ndarray, fraction: float, *, seed: int, epoch: int, labels: np.ndarray | None = None,
        salt: int = 0x4E):
    """Add round(B * fraction) of `images` to each (step, x, y) batch at shuffled places (so
    data-parallel ranks, which take contiguous slices, each get their share), labelled NEGATIVE,
    or with their `labels` (digits read from rows: read_pool). salt: a stream of its own per pool."""
    for step, x, y in batches:
        k = int(round(len(y) * fraction))
        if k == 0 or len(images) == 0:
            yield step, x, y
            continue
        rng = np.random.default_rng([seed, epoch, step, salt])
        idx = rng.choice(len(images), k, replace=False)
        order = rng.permutation(len(y) + k)
        x = np.concatenate([x, normalize(images[idx])])[order]
        added = np.full(k, NEGATIVE, y.dtype) if labels is None else labels[idx].astype(y.dtype)
        yield step, x, np.concatenate([y, added])[order]


READ_SALT = 0x52  # mix's stream for the digits read from rows
MISS_SALT = 0x4D  # ... and for their wrong readings


def read_pool(n: int, seed: int, dist: Dist, digits: np.ndarray, labels: np.ndarray,
              misses: bool = False, underlines: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, misses): about n training digits as /read cuts them out of written rows
    (train/read_digits.py), made once, a function of the seed; each rank draws its share of the rows.
    misses: also the readings of those rows that take two touching digits together (else none);
    underlines: the share of rows with a line drawn under one digit."""
    from train import read_digits

    rows = -(-n * 10 // 27)  # ~2.7 digits kept per row
    got = read_digits.ReadDigits.merge(dist.gather(read_digits.make(rows, seed + 0x8EAD, digits, labels,
                                                                    part=(dist.rank, dist.world_size), misses=misses,
                                                                    underlines=underlines)))
    return got.images, got.labels, got.misses


def loss(logits, labels, weight: float = 0.5):
    """Mean cross-entropy over the digits + weight x mean cross-entropy to uniform over the negatives."""
    is_digit = (labels >= 0).astype(logits.dtype)
    ce = F.cross_entropy(logits, paddle.clip(labels, min=0), reduction="none").squeeze(-1)
    to_uniform = paddle.logsumexp(logits, axis=1) - logits.mean(axis=1)
    n_digit = is_digit.sum()
    n_neg = (1 - is_digit).sum()
    total = (ce * is_digit).sum() / paddle.clip(n_digit, min=1.0)
    return total + weight * (to_uniform * (1 - is_digit)).sum() / paddle.clip(n_neg, min=1.0)


def with_reject_logit(logits):
    """[N, 10] digit logits -> [N, 11]: the "not a digit" logit, fixed at 0, appended."""
    return paddle.concat([logits, paddle.zeros_like(logits[:, :1])], axis=1)


def extra_class_loss(logits, labels):
    """Cross-entropy over the ten digits and "not a digit", the class every negative belongs to."""
    z = with_reject_logit(logits)
    return F.cross_entropy(z, paddle.where(labels < 0, paddle.full_like(labels, z.shape[1] - 1), labels))


METHODS = ("extra", "oe")


def loss_for(method: str, weight: float):
    """The training loss of an open-set method: loss(logits, labels)."""
    if method == "extra":
        return extra_class_loss
    if method == "oe":
        return lambda logits, labels: loss(logits, labels, weight)
    raise ValueError(f"unknown open-set method {method!r}; choose from {', '.join(METHODS)}")


# --- python -m train.openset: outlier exposure vs an extra output vs the plain model ------------

def _score(logits: np.ndarray, extra: bool) -> tuple[np.ndarray, np.ndarray]:
    """(predicted digit, its probability) from the ten digit logits."""
    from train.calibration import probabilities

    p = probabilities(logits, 1.0, reject_logit=0.0 if extra else None)
    return p.argmax(1), p.max(1)


def compare(argv=None) -> int:
    """Train the three variants with the same data, seed and budget; print one table."""
    import argparse
    import json
    import time

    from train.calibration import auroc, threshold_at_frr
    from train.config import TrainConfig
    from train.data import Augment, load_data, steps_per_epoch, train_batches
    from train.loop import predict_logits, train_one_epoch
    from train.models import build_model
    from train.optim import build_optimizer, build_schedule
    from train.renderings import upload_digits
    from train.runner import setup_device

    ap = argparse.ArgumentParser(prog="python -m train.openset", description=compare.__doc__)
    ap.add_argument("--limit-train", type=int, default=15000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--frr", type=float, default=0.02)
    ap.add_argument("--variants", default="plain,oe,extra")
    ap.add_argument("--out", help="write the table as JSON here")
    args = ap.parse_args(argv)
    cfg = TrainConfig(limit_train=args.limit_train, epochs=args.epochs).resolved()
    setup_device(cfg)
    data = load_data(cfg)
    negs = pool(cfg.negatives_pool, cfg.seed, cfg.negatives_small)
    tune = neg.make(2000, seed=cfg.seed + 0x7E57)  # tuning negatives: other seed than training's
    up_x, up_y, _ = upload_digits(data.val_x[:2000], data.val_y[:2000], seed=cfg.seed)
    rows = []
    for variant in args.variants.split(","):
        paddle.seed(cfg.seed)
        model = build_model(cfg.model, cfg.dropout)
        steps = steps_per_epoch(len(data.train_y), cfg.batch_size, True)
        sched = build_schedule(cfg.schedule, cfg.lr, cfg.epochs * steps)
        opt = build_optimizer(cfg.optimizer, model.parameters(), sched, weight_decay=cfg.weight_decay)
        lf = None if variant == "plain" else loss_for(variant, cfg.negatives_weight)
        t0 = time.perf_counter()
        for epoch in range(cfg.epochs):
            b = train_batches(data.train_x, data.train_y, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch, augment=Augment())
            if variant != "plain":
                b = mix(b, negs, cfg.negatives, seed=cfg.seed, epoch=epoch)
            train_one_epoch(model, opt, sched, b, seed=cfg.seed, epoch=epoch, loss_fn=lf)
        wall = time.perf_counter() - t0
        extra = variant == "extra"
        val_pred, _ = _score(predict_logits(model, data.val_x), extra)
        up_pred, up_conf = _score(predict_logits(model, up_x), extra)
        _, neg_conf = _score(predict_logits(model, tune.images), extra)
        thr = threshold_at_frr(up_conf, args.frr)
        kept = up_conf >= thr
        rows.append({
            "variant": variant, "train_s": round(wall, 1),
            "val_acc": float((val_pred == data.val_y).mean()),
            "upload_acc": float((up_pred == up_y).mean()),
            "threshold": thr, "upload_acc_unflagged": float((up_pred[kept] == up_y[kept]).mean()),
            "negatives_rejected": float((neg_conf < thr).mean()),
            "auroc": auroc(up_conf, neg_conf),
        })
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(compare())
