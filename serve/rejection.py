"""When an answer is flagged: the one rule every protocol applies to the model's calibrated output.

The threshold is UNCERTAIN_BELOW when set, else the manifest's (chosen at export for a stated
false-rejection rate on real digits), else 0.6 for a model published before calibration. A model
trained with non-digits (manifest rejection.open_set) reports a flagged answer as not a digit.
"""
from __future__ import annotations

LEGACY_THRESHOLD = 0.6
NOT_A_DIGIT = "not_a_digit"


def threshold(manifest: dict, uncertain_below: float | None) -> float:
    if uncertain_below is not None:
        return float(uncertain_below)
    return float(manifest.get("rejection", {}).get("threshold", LEGACY_THRESHOLD))


def flags(confidence: float, manifest: dict, uncertain_below: float | None) -> tuple[bool, bool]:
    """(uncertain, not_a_digit) for an answer's top probability."""
    uncertain = bool(confidence < threshold(manifest, uncertain_below))
    return uncertain, uncertain and bool(manifest.get("rejection", {}).get("open_set"))
