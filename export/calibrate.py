"""Calibration at export: a temperature fitted on validation, a rejection threshold, and their report.

The temperature (and, for a model trained with the "not a digit" class, that class's logit) is
folded into the published graph, so every protocol (/predict, /read, /v2) serves calibrated
probabilities and nothing downstream repeats it. The threshold goes into the manifest; serving
flags answers whose top probability is under it (serve/rejection.py).

Tuning data is what the service sees: the run's validation digits rendered as uploads of many
kinds (train/renderings.py: scans, sheets, phone photos, canvases, pens, EXIF-turned JPEGs,
thumbnails), encoded, and passed through serving's own `prepare`; non-digits from the training
sources rendered the same way. Validation half A fits the temperature for each candidate
"not a digit" logit b; of the b whose calibration error on half A stays within ECE_BUDGET, the one
that rejects most tuning non-digits at the stated false-rejection rate on half B is taken, and the
threshold is placed on half B for that rate. The figures marked "test" use data nothing was tuned
on: MNIST test digits rendered with other seeds, and non-digits from the held-out fonts and photos
of train/negatives.py. A picture preprocessing refuses (422 no_digit / several_digits) counts as
flagged, as the service answers it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from train import negatives as neg
from train import renderings
from train.calibration import auroc, ece, fit_temperature, probabilities, reliability, threshold_at_frr
from train.loop import predict_logits

# Of real digit uploads flagged or refused: the rate the threshold is chosen for (<= 3% allowed).
# Validation digits come from the training writers, so unseen writers are flagged more at the same
# threshold (MNIST test digits: about 1.3x at every rate, README): 2% leaves that margin.
FALSE_REJECTION = 0.02
# Calibration error allowed on validation half A for a candidate "not a digit" logit: half the
# issue's 0.02, a margin for writers and uploads unlike validation's. Rejection varies little
# over the b within it, calibration a lot.
ECE_BUDGET = 0.01
REJECT_LOGITS = tuple(float(b) for b in np.arange(0.0, -12.5, -0.5))  # candidates, most rejecting first
TRADEOFF_FRR = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1)
# Seeds (added to the run's): validation and test renderings, tuning and held-out non-digits.
SEED_VAL, SEED_TEST, SEED_TUNE_NEG, SEED_HELD_NEG = 0x0CA1, 0x0CA2, 0x7E57, 0x7E58
REPORT_JSON = "calibration.json"
RELIABILITY_PNG = "reliability.png"
TRADEOFF_PNG = "tradeoff.png"

# Rejection scores from the published probabilities p (rows sum to 1 - P(not a digit)) or the raw logits z.
SCORES = {
    "top_probability": lambda p, z: p.max(1),  # the answer's confidence: what serving thresholds
    "digit_probability": lambda p, z: p.sum(1),  # 1 - P(not a digit): the energy logsumexp(z / T) against b
    "top_share": lambda p, z: p.max(1) / np.clip(p.sum(1), 1e-30, None),  # softmax over the digits alone
    "max_logit": lambda p, z: z.max(1),
}
SERVED_SCORE = "top_probability"


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
    val: int = 5000  # validation digits rendered as uploads (both halves together)
    test: int = 2000  # MNIST test digits rendered as uploads for the test figures
    negatives: int = 2000  # non-digits, for tuning and again (held out) for test; at most as many as the digits


@dataclass
class Seen:
    """A set of uploads as the model saw them: logits of those preprocessing answered, and the refusals."""

    logits: np.ndarray
    kinds: np.ndarray  # per logits row
    refused: dict = field(default_factory=dict)  # kind -> uploads refused with a 422 before the model
    stroke_like: dict = field(default_factory=dict)  # kind -> answered but a single stroke (a 1 to a writer)
    labels: np.ndarray | None = None

    @property
    def n_refused(self) -> int:
        return sum(self.refused.values())


def seen(model, uploads: list[bytes], kinds: np.ndarray, labels=None, drop_stroke_like: bool = False) -> Seen:
    images, refused = renderings.prepared(uploads)
    kept_kinds = kinds[~refused]
    stroke = np.array([neg.elongation(im) < neg.STROKE_LIKE for im in images], bool)
    names = list(dict.fromkeys(kinds.tolist()))
    out = Seen(predict_logits(model, images) if len(images) else np.zeros((0, 10), np.float32), kept_kinds,
               {k: int((refused & (kinds == k)).sum()) for k in names},
               {k: int((stroke & (kept_kinds == k)).sum()) for k in names},
               None if labels is None else labels[~refused])
    if drop_stroke_like:  # tuning non-digits: teaching the threshold to doubt 1s would cost real digits
        out.logits, out.kinds = out.logits[~stroke], out.kinds[~stroke]
    return out


def rejected(score: np.ndarray, negs: Seen, thr: float) -> float:
    """Share of non-digits flagged (score under thr) or refused by preprocessing."""
    return float(((score < thr).sum() + negs.n_refused) / max(len(score) + negs.n_refused, 1))


def fit_reject_logit(a: Seen, b_digits: Seen, negs: Seen, frr: float = FALSE_REJECTION) -> tuple[float, float, list]:
    """(T, b, table) for softmax([z / T, b]): for each candidate b, the T of least NLL on half A; of the
    b whose ECE on half A stays within ECE_BUDGET, the one rejecting most tuning non-digits at frr on
    half B. A larger b gives "not a digit" more room: the top probability then weighs the energy of
    the logits more and the margin between digits less."""
    table = []
    for b in REJECT_LOGITS:
        t = fit_temperature(a.logits, a.labels, b)
        pa, pb = probabilities(a.logits, t, b), probabilities(b_digits.logits, t, b)
        thr = threshold_at_frr(pb.max(1), frr, b_digits.n_refused)
        table.append({"reject_logit": b, "temperature": t, "ece_half_a": ece(pa.max(1), pa.argmax(1) == a.labels),
                      "non_digits_rejected": rejected(probabilities(negs.logits, t, b).max(1), negs, thr)})
    ok = [r for r in table if r["ece_half_a"] <= ECE_BUDGET] or [min(table, key=lambda r: r["ece_half_a"])]
    best = max(ok, key=lambda r: (r["non_digits_rejected"], r["reject_logit"]))
    return best["temperature"], best["reject_logit"], table


def _digit_figures(digits: Seen, t, b, thr) -> dict:
    p = probabilities(digits.logits, t, b)
    conf, correct = p.max(1), p.argmax(1) == digits.labels
    kept = conf >= thr
    n = len(conf) + digits.n_refused
    per_kind = {}
    for k in sorted(set(digits.kinds.tolist()) | set(digits.refused)):
        m = digits.kinds == k
        per_kind[k] = {"n": int(m.sum()) + digits.refused.get(k, 0),
                       "accuracy": float(correct[m].mean()) if m.any() else None,
                       "false_rejection": float(((~kept & m).sum() + digits.refused.get(k, 0)) / max(m.sum() + digits.refused.get(k, 0), 1)),
                       "ece": ece(conf[m], correct[m]) if m.any() else None}
    return {
        "digits": int(n),
        "refused": digits.n_refused,
        "accuracy": float(correct.mean()),
        "false_rejection": float(((~kept).sum() + digits.n_refused) / max(n, 1)),
        "unflagged_accuracy": float(correct[kept].mean()) if kept.any() else None,
        "ece": ece(conf, correct),
        "by_kind": per_kind,
    }


def _rejection(negs: Seen, t, b, thr) -> dict:
    """Per kind: the share flagged (under the threshold) or refused by preprocessing."""
    conf = probabilities(negs.logits, t, b).max(1)
    out = {}
    for kind, refused in negs.refused.items():
        m = negs.kinds == kind
        n = int(m.sum()) + refused
        out[kind] = {"n": n, "rejected": float(((conf[m] < thr).sum() + refused) / max(n, 1)),
                     "refused": refused, "stroke_like": negs.stroke_like.get(kind, 0)}
    total = sum(v["n"] for v in out.values())
    out["all"] = {"n": total, "rejected": float(sum(v["rejected"] * v["n"] for v in out.values()) / max(total, 1)),
                  "refused": negs.n_refused, "stroke_like": sum(negs.stroke_like.values())}
    return out


def compare_scores(digits: Seen, thr_digits: Seen, negs: Seen, t, b, frr: float = FALSE_REJECTION) -> dict:
    """Each score's AUROC (digits vs non-digits) and non-digits flagged or refused when its threshold,
    set on thr_digits for frr, is applied."""
    out = {}
    for name, score in SCORES.items():
        s_thr = score(probabilities(thr_digits.logits, t, b), thr_digits.logits)
        s_dig = score(probabilities(digits.logits, t, b), digits.logits)
        s_neg = score(probabilities(negs.logits, t, b), negs.logits)
        thr = threshold_at_frr(s_thr, frr, thr_digits.n_refused)
        out[name] = {"auroc": auroc(s_dig, s_neg), "non_digits_rejected": rejected(s_neg, negs, thr),
                     "digits_flagged": float(((s_dig < thr).sum() + digits.n_refused) / max(len(s_dig) + digits.n_refused, 1))}
    return out


def tradeoff(val_b: Seen, val_negs: Seen, test: Seen, test_negs: Seen, t, b) -> list[dict]:
    """Thresholds set on half B for each false-rejection rate: non-digits flagged on validation, and
    digits and non-digits flagged on the held-out sets at the same threshold."""
    conf = {k: probabilities(s.logits, t, b).max(1) for k, s in
            (("vb", val_b), ("vn", val_negs), ("t", test), ("tn", test_negs))}
    rows = []
    for frr in TRADEOFF_FRR:
        thr = threshold_at_frr(conf["vb"], frr, val_b.n_refused)
        rows.append({"frr_target": frr, "threshold": thr,
                     "validation": {"digits_flagged": frr, "non_digits_flagged": rejected(conf["vn"], val_negs, thr)},
                     "test": {"digits_flagged": float(((conf["t"] < thr).sum() + test.n_refused) / max(len(conf["t"]) + test.n_refused, 1)),
                              "non_digits_flagged": rejected(conf["tn"], test_negs, thr)}})
    return rows


def calibrate(model, val_x, val_y, test_x, test_y, seed: int, sizes: Sizes = Sizes(), open_set: bool = False) -> dict:
    """Fit T (and b) on validation half A, the threshold on half B; measure on test uploads and held-out non-digits."""
    model.eval()
    n = min(sizes.val, len(val_y))
    half = n // 2
    uploads, kinds = renderings.render(val_x[:n], seed=seed + SEED_VAL)
    val_a = seen(model, uploads[:half], kinds[:half], val_y[:half])
    val_b = seen(model, uploads[half:], kinds[half:], val_y[half:n])
    n_neg = min(sizes.negatives, n)
    val_negs = seen(model, *renderings.negative_uploads(n_neg, seed=seed + SEED_TUNE_NEG), drop_stroke_like=True)
    if open_set:
        t, b, table = fit_reject_logit(val_a, val_b, val_negs)
    else:
        t, b, table = fit_temperature(val_a.logits, val_a.labels), None, []
    thr = threshold_at_frr(probabilities(val_b.logits, t, b).max(1), FALSE_REJECTION, val_b.n_refused)

    k = min(sizes.test, len(test_y))
    test = seen(model, *renderings.render(test_x[:k], seed=seed + SEED_TEST), test_y[:k])
    test_negs = seen(model, *renderings.negative_uploads(n_neg, seed=seed + SEED_HELD_NEG, sources=neg.Sources.held_out()))
    p_b, p_t = probabilities(val_b.logits, t, b), probabilities(test.logits, t, b)
    raw_b = probabilities(val_b.logits, 1.0, 0.0 if open_set else None)
    return {
        "temperature": t,
        "reject_logit": b,
        "threshold": thr,
        "false_rejection_target": FALSE_REJECTION,
        "ece_budget": ECE_BUDGET,
        "reject_logit_candidates": table,
        "validation": {
            **_digit_figures(val_b, t, b, thr),
            "ece_uncalibrated": ece(raw_b.max(1), raw_b.argmax(1) == val_b.labels),
            "non_digits": _rejection(val_negs, t, b, thr),
            "scores": compare_scores(val_b, val_b, val_negs, t, b),
            "reliability": reliability(p_b.max(1), p_b.argmax(1) == val_b.labels),
        },
        "test": {
            **_digit_figures(test, t, b, thr),
            "non_digits": _rejection(test_negs, t, b, thr),
            "scores": compare_scores(test, val_b, test_negs, t, b),
            "reliability": reliability(p_t.max(1), p_t.argmax(1) == test.labels),
        },
        "tradeoff": tradeoff(val_b, val_negs, test, test_negs, t, b),
    }


def manifest_sections(report: dict, open_set: bool) -> dict:
    """What serving reads (calibration, rejection) and what a reader wants to see, without the bins."""
    summary = {part: {k: v for k, v in report[part].items() if k not in ("reliability", "by_kind")}
               for part in ("validation", "test")}
    return {
        "calibration": {
            "method": "temperature scaling, applied in the graph: " + (
                "softmax([logits / temperature, reject_logit]) without the last ('not a digit') column: probabilities "
                "sum to 1 - P(not a digit)" if report["reject_logit"] is not None else "softmax(logits / temperature)"),
            "temperature": report["temperature"],
            "reject_logit": report["reject_logit"],
            "fitted_on": "validation half A: the run's validation digits rendered as uploads of many kinds "
                         "(train/renderings.py), encoded, through serving's own preprocessing",
            "reject_logit_chosen": f"most tuning non-digits rejected at the false-rejection target among those with "
                                   f"ECE <= {report['ece_budget']} on half A" if report["reject_logit"] is not None else None,
        },
        "rejection": {
            "score": f"{SERVED_SCORE}: the calibrated top probability (the answer's confidence); "
                     "compared with the alternatives in validation.scores and test.scores",
            "threshold": report["threshold"],
            "false_rejection_target": report["false_rejection_target"],
            "chosen_on": "validation half B rendered as uploads; a digit preprocessing refuses counts as rejected",
            "open_set": open_set,  # trained with non-digits: a flagged answer is reported as not a digit
            **summary,
        },
    }


def write_report(report: dict, folder: Path, title: str) -> Path:
    """calibration.json, reliability.png (confidence vs accuracy) and tradeoff.png (non-digits vs
    real digits flagged, by threshold) into folder."""
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
    fig.suptitle(f"{title}: T = {report['temperature']:.3f}, not-a-digit logit {report['reject_logit']}")
    FigureCanvasAgg(fig)
    fig.savefig(folder / RELIABILITY_PNG, dpi=100)

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    for part, style in (("validation", "o-"), ("test", "s--")):
        rows = report["tradeoff"]
        ax.plot([100 * r[part]["digits_flagged"] for r in rows], [100 * r[part]["non_digits_flagged"] for r in rows],
                style, label=f"{part} ({report[part]['digits']} digits, {report[part]['non_digits']['all']['n']} non-digits)")
    ax.axvline(100 * report["false_rejection_target"], color="C2", lw=1, label=f"chosen: {report['false_rejection_target']:.1%} on validation")
    ax.set(xlabel="real digit uploads flagged or refused (%)", ylabel="non-digits flagged or refused (%)",
           title=f"{title}: rejection trade-off (threshold set on validation)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    FigureCanvasAgg(fig)
    fig.savefig(folder / TRADEOFF_PNG, dpi=100)
    return folder / RELIABILITY_PNG
