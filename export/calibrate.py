"""Calibration at export: a temperature fitted on validation, a rejection threshold, and their report.

The temperature is folded into the published graph (softmax(logits / T)), so every protocol
(/predict, /read, /v2) serves calibrated probabilities and nothing downstream repeats it. The
threshold goes into the manifest; serving flags answers whose top probability is under it.

Tuning data is the validation split only, split in two halves: half A fits the temperature, half
B chooses the threshold for a stated false-rejection rate on real digits. Both halves are drawn as
uploads (train/openset.py as_upload) and go through serving's preprocessing. The figures marked
"test" use data nothing was tuned on: MNIST test digits drawn as uploads, and non-digits from the
held-out fonts and photos of train/negatives.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from train import negatives as neg
from train import openset
from train.calibration import ece, fit_temperature, probabilities, reliability, threshold_at_frr
from train.loop import predict_logits

FALSE_REJECTION = 0.02  # of real digit uploads flagged, the rate the threshold is chosen for
ECE_BUDGET = 0.02  # calibration error allowed on validation half A when placing the "not a digit" logit (the target)
REJECT_LOGITS = tuple(float(b) for b in np.arange(0.0, -12.5, -0.5))  # candidates, most rejecting first
TEMPERATURES = tuple(np.exp(np.linspace(np.log(0.2), np.log(5.0), 61)))
REPORT_JSON = "calibration.json"
RELIABILITY_PNG = "reliability.png"


class Calibrated(nn.Layer):
    """The published graph's output: softmax(logits / T), or, for a model trained with the "not a
    digit" logit, softmax([logits / T, b]) without its last column (train.calibration.probabilities)."""

    def __init__(self, net: nn.Layer, temperature: float, reject_logit: float | None = None):
        super().__init__()
        self.net = net
        self.inv_t = 1.0 / float(temperature)
        self.reject_logit = reject_logit

    def forward(self, x):
        z = self.net(x) * self.inv_t
        if self.reject_logit is None:
            return F.softmax(z, axis=-1)
        p = F.softmax(paddle.concat([z, paddle.full_like(z[:, :1], self.reject_logit)], axis=1), axis=-1)
        return p[:, :-1]


@dataclass(frozen=True)
class Sizes:
    val: int = 5000  # validation digits used (both halves together)
    test: int = 2000  # MNIST test digits drawn as uploads for the test figures
    negatives: int = 2000  # non-digits, for tuning and again (held out) for test; at most as many as the digits


def fit_reject_logit(logits: np.ndarray, labels: np.ndarray, upload_logits: np.ndarray, upload_labels: np.ndarray):
    """(T, b) for softmax([z / T, b]): for each candidate b, the T of least NLL on the digits; the
    largest b (the most room for "not a digit") whose calibration error on the digit uploads stays
    within ECE_BUDGET. Training put the logit at 0; after a short run digits still leave it several
    percent, which makes the confidence understate accuracy."""
    def nll(t, b):
        p = probabilities(logits, t, b)
        return -np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean()

    best = None
    for b in REJECT_LOGITS:
        t = min(TEMPERATURES, key=lambda t: nll(t, b))
        p = probabilities(upload_logits, t, b)
        e = ece(p.max(1), p.argmax(1) == upload_labels)
        if best is None or e < best[2]:
            best = (float(t), b, e)
        if e <= ECE_BUDGET:
            return float(t), b
    return best[0], best[1]


def _answers(logits: np.ndarray, t: float, reject_logit: float | None) -> tuple[np.ndarray, np.ndarray]:
    p = probabilities(logits, t, reject_logit)
    return p.argmax(1), p.max(1)


def _figures(pred, conf, labels, thr) -> dict:
    kept = conf >= thr
    correct = pred == labels
    return {
        "digits": int(len(labels)),
        "accuracy": float(correct.mean()),
        "false_rejection": float(1 - kept.mean()),
        "unflagged_accuracy": float(correct[kept].mean()) if kept.any() else None,
        "ece": ece(conf, correct),
    }


def _rejection(model, negs: neg.Negatives, t: float, thr: float, reject_logit: float | None) -> dict:
    """Per kind: the share flagged (under the threshold) or refused by preprocessing."""
    _, conf = _answers(predict_logits(model, negs.images), t, reject_logit) if len(negs.images) else (None, np.zeros(0))
    out = {}
    for kind, refused in negs.refused.items():
        m = negs.kinds == kind
        n = int(m.sum()) + refused
        out[kind] = {"n": n, "rejected": float(((conf[m] < thr).sum() + refused) / max(n, 1))}
    total = sum(v["n"] for v in out.values())
    out["all"] = {"n": total, "rejected": float(sum(v["rejected"] * v["n"] for v in out.values()) / max(total, 1))}
    return out


def calibrate(model, val_x, val_y, test_x, test_y, seed: int, sizes: Sizes = Sizes(), open_set: bool = False) -> dict:
    """Fit T on validation half A, the threshold on half B; measure on test uploads and held-out non-digits."""
    model.eval()
    n = min(sizes.val, len(val_y))
    ux, uy = openset.upload_digits(val_x[:n], val_y[:n], seed=seed)
    half = len(uy) // 2
    la, lb = predict_logits(model, ux[:half]), predict_logits(model, ux[half:])
    # Half A as uploads and as MNIST itself: the temperature must suit both kinds of input.
    fit_logits = np.concatenate([la, predict_logits(model, val_x[: n // 2])])
    fit_labels = np.concatenate([uy[:half], val_y[: n // 2]])
    if open_set:
        t, reject_logit = fit_reject_logit(fit_logits, fit_labels, la, uy[:half])
    else:
        t, reject_logit = fit_temperature(fit_logits, fit_labels), None
    pred_b, conf_b = _answers(lb, t, reject_logit)
    thr = threshold_at_frr(conf_b, FALSE_REJECTION)
    _, raw_b = _answers(lb, 1.0, 0.0 if open_set else None)

    k = min(sizes.test, len(test_y))
    tx, ty = openset.upload_digits(test_x[:k], test_y[:k], seed=seed + 1)
    pred_t, conf_t = _answers(predict_logits(model, tx), t, reject_logit)
    n_neg = min(sizes.negatives, len(uy))
    return {
        "temperature": t,
        "reject_logit": reject_logit,
        "threshold": thr,
        "false_rejection_target": FALSE_REJECTION,
        "validation": {
            **_figures(pred_b, conf_b, uy[half:], thr),
            "ece_uncalibrated": ece(raw_b, pred_b == uy[half:]),
            "non_digits": _rejection(model, neg.make(n_neg, seed=seed + 0x7E57), t, thr, reject_logit),
            "reliability": reliability(conf_b, pred_b == uy[half:]),
        },
        "test": {
            **_figures(pred_t, conf_t, ty, thr),
            "non_digits": _rejection(model, neg.make(n_neg, seed=seed + 0x7E58, sources=neg.Sources.held_out()), t, thr, reject_logit),
            "reliability": reliability(conf_t, pred_t == ty),
        },
    }


def manifest_sections(report: dict, open_set: bool) -> dict:
    """What serving reads (calibration, rejection) and what a reader wants to see, without the bins."""
    summary = {part: {k: v for k, v in report[part].items() if k != "reliability"} for part in ("validation", "test")}
    return {
        "calibration": {
            "method": "temperature scaling, applied in the graph: " + (
                "softmax([logits / temperature, reject_logit]) without the last ('not a digit') column: probabilities "
                "sum to 1 - P(not a digit)" if report["reject_logit"] is not None else "softmax(logits / temperature)"),
            "temperature": report["temperature"],
            "reject_logit": report["reject_logit"],
            "fitted_on": "validation half A: MNIST digits as they are and drawn as uploads through serving's preprocessing",
        },
        "rejection": {
            "score": "the calibrated top probability (the answer's confidence)",
            "threshold": report["threshold"],
            "false_rejection_target": report["false_rejection_target"],
            "chosen_on": "validation half B drawn as uploads",
            "open_set": open_set,  # trained with non-digits: a flagged answer is reported as not a digit
            **summary,
        },
    }


def write_report(report: dict, folder: Path, title: str) -> Path:
    """calibration.json and reliability.png (confidence vs accuracy) into folder."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=2))
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    for ax, part in zip(fig.subplots(1, 2), ("validation", "test")):
        bins = report[part]["reliability"]
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
        ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=[b["hi"] - b["lo"] for b in bins],
               align="edge", alpha=0.6, edgecolor="k", label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="C3", label="mean confidence")
        ax.axvline(report["threshold"], color="C2", lw=1, label=f"threshold {report['threshold']:.3f}")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence", ylabel="accuracy",
               title=f"{part}: ECE {report[part]['ece']:.4f}, {report[part]['digits']} uploads")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"{title}: T = {report['temperature']:.3f}")
    FigureCanvasAgg(fig)
    fig.savefig(folder / RELIABILITY_PNG, dpi=100)
    return folder / RELIABILITY_PNG
