"""Serving settings: defaults, then environment variables, then explicit overrides (tests)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    model_dir: str = "models"  # a version folder, a models/<name> folder, or models/ with one name
    model_version: str = ""  # "" or "latest": the newest valid version; a number pins that version
    model_poll_s: float = 0.0  # > 0: each worker looks for a new version this often (0: on SIGHUP only)
    max_upload_bytes: int = 10 * 1024 * 1024  # whole request body
    max_pixels: int = 40_000_000  # per image, checked from the header before decoding
    max_batch: int = 64  # images per request
    max_digits: int = 64  # digits per picture on /read
    max_form_parts: int = 128  # multipart parts per request
    uncertain_below: float | None = None  # flag answers under this confidence; None: the manifest's threshold
    top_k: int = 3
    predictor_threads: int = 1  # math threads per predictor
    onednn: bool = True
    backend: str = "paddle"  # or "onnxruntime": the model folder's model.onnx (serve/predictor.py)
    ir_optim: bool = True  # Paddle Inference's graph passes (fusions): faster at every batch size measured
    # Dynamic batching (serve/batcher.py): concurrent requests' images share one inference call.
    batching: bool = True  # on: faster than off at concurrency 1, 8 and 32 here (README, Benchmarks)
    max_batch_size: int = 64  # images per inference call
    max_queue_delay_us: int = 0  # how long the first waiting request may wait for more (0: never)
    max_queue_images: int = 512  # images waiting beyond this: 503 + Retry-After
    log_level: str = "INFO"

    # environment variable -> field
    ENV = {
        "MODEL_DIR": "model_dir",
        "MODEL_VERSION": "model_version",
        "MODEL_POLL_S": "model_poll_s",
        "MAX_UPLOAD_BYTES": "max_upload_bytes",
        "MAX_PIXELS": "max_pixels",
        "MAX_BATCH": "max_batch",
        "MAX_DIGITS": "max_digits",
        "MAX_FORM_PARTS": "max_form_parts",
        "UNCERTAIN_BELOW": "uncertain_below",
        "TOP_K": "top_k",
        "PREDICTOR_THREADS": "predictor_threads",
        "ONEDNN": "onednn",
        "BACKEND": "backend",
        "IR_OPTIM": "ir_optim",
        "BATCHING": "batching",
        "MAX_BATCH_SIZE": "max_batch_size",
        "MAX_QUEUE_DELAY_US": "max_queue_delay_us",
        "MAX_QUEUE_IMAGES": "max_queue_images",
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
        return {"int": int, "float": float, "str": str}[typ.removesuffix(" | None")](raw)
    except ValueError:
        raise SystemExit(f"environment variable {var}={raw!r} is not a valid {typ}") from None
