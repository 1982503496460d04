"""The answer of POST /read: the digits found on a picture, each as /predict describes one digit."""
from __future__ import annotations


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
