"""Confidence that means what it says: temperature scaling, calibration error, rejection thresholds.

Pure numpy on logits or probabilities, so training's comparison, export and the tests share them.
"""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities(logits: np.ndarray, temperature: float = 1.0, reject_logit: float | None = None) -> np.ndarray:
    """The published graph's output: softmax(z / T), or with the "not a digit" logit (train/openset.py;
    0 in training, set at export) softmax([z / T, reject_logit]) without its last column (rows then
    sum to 1 - P(not a digit))."""
    if reject_logit is None:
        return softmax(logits, temperature)
    z = np.asarray(logits, np.float64) / temperature
    return softmax(np.concatenate([z, np.full((len(z), 1), float(reject_logit))], axis=1))[:, :-1]


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float, reject_logit: float | None = None) -> float:
    """Mean negative log-likelihood of the labels under probabilities(logits, temperature, reject_logit)."""
    p = probabilities(logits, temperature, reject_logit)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())


# The temperatures fitting chooses from: log-spaced, ~5.5% apart, over what a softmax net needs.
TEMPERATURES = tuple(np.exp(np.linspace(np.log(0.2), np.log(5.0), 61)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, reject_logit: float | None = None) -> float:
    """The T of TEMPERATURES minimising the negative log-likelihood of probabilities(logits, T,
    reject_logit): a fixed grid, so the fit is deterministic and the same T for the same logits."""
    return float(min(TEMPERATURES, key=lambda t: nll(logits, labels, t, reject_logit)))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> list[dict]:
    """Per equal-width confidence bin: count, mean confidence, accuracy (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                        "confidence": float(confidence[m].mean()), "accuracy": float(correct[m].mean())})
    return out


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over the bins."""
    n = max(len(confidence), 1)
    return float(sum(r["n"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability(confidence, correct, bins)))


def threshold_at_frr(digit_confidence: np.ndarray, frr: float, refused: int = 0) -> float:
    """The confidence threshold under which a fraction `frr` of real digits falls, counting the
    `refused` ones preprocessing already turned away (a 422 is a false rejection too)."""
    conf = np.asarray(digit_confidence, np.float64)
    if not len(conf):
        return 0.0
    q = float(np.clip((frr * (len(conf) + refused) - refused) / len(conf), 0.0, 1.0))
    return float(np.quantile(conf, q))


def auroc(digit_score: np.ndarray, other_score: np.ndarray) -> float:
    """Probability that a digit scores above a non-digit (ties count half)."""
    s = np.concatenate([digit_score, other_score])
    ranks = np.argsort(np.argsort(s, kind="stable"), kind="stable").astype(np.float64) + 1
    # average ranks of ties
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, ranks)
    ranks = (sums / counts)[inv]
    n1 = len(digit_score)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / max(n1 * len(other_score), 1))
