"""The model behind the API: loaded and verified once per worker, warmed up, one predictor per thread."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from serve.config import ServeConfig
from serve.errors import NotReady
from serve.model_store import ModelError, load_manifest, resolve
from serve.preprocess import Limits, Spec

log = logging.getLogger("serve")


class ModelService:
    """Holds the manifest and predictors. If loading fails the service stays up but not ready."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.limits = Limits(max_pixels=config.max_pixels)
        self.manifest: dict | None = None
        self.spec: Spec | None = None
        self.model_dir: Path | None = None
        self.error: str | None = None
        self._base = None
        self._local = threading.local()
        self._load()

    def _load(self) -> None:
        from serve.predictor import Predictor

        try:
            self.model_dir = resolve(self.config.model_dir)
            self.manifest = load_manifest(self.model_dir, verify=True)
            self.spec = Spec.from_manifest(self.manifest)
            self._base = Predictor(self.model_dir, self.manifest, threads=self.config.predictor_threads, onednn=self.config.onednn)
            self._local.predictor = self._base
            t = time.perf_counter()
            for n in (1, 8):  # warm-up: the first runs allocate and pick kernels
                self._base(np.zeros((n, *self.manifest["input"]["shape"][1:]), np.float32))
            log.info("model ready", extra={"model_dir": str(self.model_dir), "warmup_ms": round((time.perf_counter() - t) * 1000, 1)})
        except (ModelError, OSError, ValueError, KeyError, RuntimeError) as e:
            self.error = f"{type(e).__name__}: {e}"
            self._base = None
            log.error("model not loaded", extra={"model_dir": str(self.config.model_dir), "reason": self.error})

    @property
    def ready(self) -> bool:
        return self._base is not None

    @property
    def identity(self) -> dict:
        return {"name": self.manifest["name"], "version": self.manifest["version"]} if self.manifest else {}

    def predictor(self):
        """This thread's predictor: a clone of the warmed-up one, made on first use."""
        if not self.ready:
            raise NotReady(f"model not loaded: {self.error}")
        p = getattr(self._local, "predictor", None)
        if p is None:
            p = self._local.predictor = self._base.clone()
        return p

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.predictor()(batch)
