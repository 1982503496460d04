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


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics.

    Evaluated instead of the raw weights it smooths out the noise of a high learning rate, so
    validation accuracy is high long before the schedule anneals. The decay ramps up as
    min(decay, (1 + t) / (10 + t)) over steps t, so the first steps are not averaged with the
    random initialisation. Training itself never reads it: the raw weights follow the same path.
    """

    def __init__(self, model, decay: float):
        self.decay = decay
        self.steps = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @paddle.no_grad()
    def update(self, model) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if paddle.is_floating_point(v):
                paddle.assign(s * d + v.detach() * (1 - d), s)
            else:
                paddle.assign(v.detach(), s)

    def copy_to(self, model) -> None:
        model.set_state_dict(self.shadow)

    def state_dict(self) -> dict:
        return {**self.shadow, "__steps__": paddle.to_tensor([self.steps], dtype="int64")}

    def set_state_dict(self, state: dict) -> None:
        self.steps = int(state["__steps__"].numpy()[0])
        for k, v in state.items():
            if k != "__steps__":
                paddle.assign(v, self.shadow[k])
