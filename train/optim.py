"""Optimizers, learning-rate schedules and regularization, built from the config."""
from __future__ import annotations

import paddle

OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")


def build_schedule(name: str, lr: float, total_steps: int, warmup_steps: int | None = None):
    """A paddle LRScheduler stepped once per batch (so its state resumes exactly).

    onecycle warms up over warmup_steps (default: a quarter of the run), then anneals to the end.
    """
    total_steps = max(total_steps, 1)
    if name == "constant":
        return paddle.optimizer.lr.LambdaDecay(lr, lambda step: 1.0)
    if name == "cosine":
        return paddle.optimizer.lr.CosineAnnealingDecay(lr, T_max=total_steps)
    if name == "onecycle":
        phase = 0.25 if warmup_steps is None else min(max(warmup_steps / total_steps, 0.01), 0.5)
        return paddle.optimizer.lr.OneCycleLR(max_learning_rate=lr, total_steps=total_steps, phase_pct=phase)
    raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")


def build_optimizer(name: str, parameters, schedule, *, momentum: float = 0.9, weight_decay: float = 0.0):
    """One of the four classic optimizers (plus AdamW). L2 is weight decay; L1 is added to the loss."""
    if name == "adamw":
        return paddle.optimizer.AdamW(learning_rate=schedule, parameters=parameters, weight_decay=weight_decay)
    l2 = paddle.regularizer.L2Decay(weight_decay) if weight_decay else None
    if name == "sgd":
        return paddle.optimizer.SGD(learning_rate=schedule, parameters=parameters, weight_decay=l2)
    if name == "momentum":
        return paddle.optimizer.Momentum(learning_rate=schedule, momentum=momentum, parameters=parameters, weight_decay=l2)
    if name == "adagrad":
        return paddle.optimizer.Adagrad(learning_rate=schedule, parameters=parameters, weight_decay=l2)
    if name == "adam":
        return paddle.optimizer.Adam(learning_rate=schedule, parameters=parameters, weight_decay=l2)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def l1_penalty(model, strength: float):
    """strength * sum |w| over weight matrices and kernels (biases and norm scales are left free)."""
    terms = [p.abs().sum() for p in model.parameters() if p.ndim > 1]
    return strength * paddle.add_n(terms)
