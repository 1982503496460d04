"""The answer of POST /read: the digits found on a picture, each as /predict describes one digit,
and which reading of ambiguous ink (one wide digit, or digits that touch) the model believes."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from serve.errors import ApiError, SeveralDigits


def choose(found: list, probs: np.ndarray) -> list[int]:
    """Indices of `found` (serve/preprocess.py's Digits, with their `choice` and `option`) to keep:
    every digit without alternatives, and of each ambiguous group the reading whose digits the
    model is most sure of together: the product of their calibrated top probabilities (which
    count "not a digit" against them) is the chance that every one of them is read right."""
    score: dict[tuple[int, int], float] = {}
    for d, row in zip(found, probs):
        if d.choice >= 0:
            key = (d.choice, d.option)
            score[key] = score.get(key, 0.0) + float(np.log(max(float(row.max()), 1e-12)))
    best: dict[int, tuple[float, int]] = {}
    for (choice, option), s in score.items():
        if choice not in best or s > best[choice][0]:  # a tie keeps the reading the shapes favour
            best[choice] = (s, option)
    return [i for i, d in enumerate(found) if d.choice < 0 or best[d.choice][1] == d.option]


def one_digit(found: list, probs: np.ndarray) -> int:
    """Index of the digit a one-digit picture holds, among its candidates (serve/preprocess.py's
    `candidates`: one Digit, or the readings of a lone piece of ink that may be one wide digit or
    digits that touch): the reading `choose` keeps, refused as SeveralDigits when it is the cut."""
    keep = choose(found, probs)
    if len(keep) > 1:
        raise SeveralDigits.holding(len(keep))
    return keep[0]


def one_digit_each(found: Sequence[list | ApiError], infer: Callable[[np.ndarray], np.ndarray]) -> list:
    """Each picture as /predict reads it, from its candidates or the fault that refused it before the
    model: every candidate of every picture in one inference, then per picture the reading `one_digit`
    keeps, as (probability row, Digit), or the fault refusing it (the fault given, or SeveralDigits).
    The classifier raises the first fault with its index; a measurement counts each as refused."""
    flat = [d.tensor for digits in found if not isinstance(digits, ApiError) for d in digits]
    probs = infer(np.stack(flat)) if flat else np.zeros((0, 0), np.float32)
    out, start = [], 0
    for digits in found:
        if isinstance(digits, ApiError):
            out.append(digits)
            continue
        rows, start = probs[start : start + len(digits)], start + len(digits)
        try:
            k = one_digit(digits, rows)
        except SeveralDigits as e:
            out.append(e)
            continue
        out.append((rows[k], digits[k]))
    return out


def reading(described: list[dict], found: list, model: dict) -> dict:
    """{"text", "digits", "uncertain", "model"} from each digit's /predict-style description (built
    by the same function as /predict's answer, so whatever it decides about a digit holds here)
    and where it was found (box, line of text)."""
    digits, text, line = [], "", found[0].line if found else 0
    for d, f in zip(described, found):
        item = {k: v for k, v in d.items() if k != "model"}
        item["box"] = list(f.box)
        digits.append(item)
        text += ("\n" if f.line != line else "") + (str(item["digit"]) if item.get("digit") is not None else "?")
        line = f.line
    return {"text": text, "digits": digits, "uncertain": any(bool(d.get("uncertain")) for d in digits), "model": model}
