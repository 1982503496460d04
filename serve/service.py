"""The model behind the API: loaded and verified once per worker, warmed up, one predictor per thread."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from serve.batcher import Batcher
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
        self._batcher = None
        self._local = threading.local()
        self._load()

    def _load(self) -> None:
        from serve.predictor import load_predictor

        try:
            self.model_dir = resolve(self.config.model_dir)
            self.manifest = load_manifest(self.model_dir, verify=True)
            self.spec = Spec.from_manifest(self.manifest)
            self._base = load_predictor(self.model_dir, self.manifest, self.config)
            self._local.predictor = self._base
            t = time.perf_counter()
            for n in (1, 8):  # warm-up: the first runs allocate and pick kernels
                self._base(np.zeros((n, *self.manifest["input"]["shape"][1:]), np.float32))
            if self.config.batching:  # one inference thread runs the warmed-up predictor for every request
                self._batcher = Batcher(self._base, max_batch_size=self.config.max_batch_size, max_delay_us=self.config.max_queue_delay_us,
                                        max_queue_images=self.config.max_queue_images)
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
        if self._batcher is not None and self.ready:
            return self._batcher(batch)
        return self.predictor()(batch)
