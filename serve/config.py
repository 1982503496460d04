"""Serving settings: defaults, then environment variables, then explicit overrides (tests)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    model_dir: str = "models"  # a version folder, a models/<name> folder, or models/ with one name
    max_upload_bytes: int = 10 * 1024 * 1024  # whole request body
    max_pixels: int = 40_000_000  # per image, checked from the header before decoding
    max_batch: int = 64  # images per request
    max_digits: int = 64  # digits per picture on /read
    max_form_parts: int = 128  # multipart parts per request
    uncertain_below: float = 0.6  # confidence under which a prediction is flagged uncertain
    top_k: int = 3
    predictor_threads: int = 1  # math threads per predictor
    onednn: bool = True
    log_level: str = "INFO"

    # environment variable -> field
    ENV = {
        "MODEL_DIR": "model_dir",
        "MAX_UPLOAD_BYTES": "max_upload_bytes",
        "MAX_PIXELS": "max_pixels",
        "MAX_BATCH": "max_batch",
        "MAX_DIGITS": "max_digits",
        "MAX_FORM_PARTS": "max_form_parts",
        "UNCERTAIN_BELOW": "uncertain_below",
        "TOP_K": "top_k",
        "PREDICTOR_THREADS": "predictor_threads",
        "ONEDNN": "onednn",
        "LOG_LEVEL": "log_level",
    }

    @classmethod
    def load(cls, overrides: dict | None = None, environ=os.environ) -> "ServeConfig":
        values = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for var, name in cls.ENV.items():
            if var in environ:
                values[name] = _parse(environ[var], types[name], var)
        values.update(overrides or {})
        return cls(**values)


def _parse(raw: str, typ: str, var: str):
    try:
        if typ == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return {"int": int, "float": float, "str": str}[typ](raw)
    except ValueError:
        raise SystemExit(f"environment variable {var}={raw!r} is not a valid {typ}") from None
