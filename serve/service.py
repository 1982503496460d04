"""The model behind the API: the version the policy chooses, verified, loaded and warmed up in each
worker, one predictor per thread; a new version replaces it only once it is ready.

Availability first (TF Serving's version policy, Triton's model control): a reload verifies, loads
and warms the chosen version beside the one being served and swaps only when all of that
succeeded; a version that fails is refused with its reason and the current one keeps serving. A
request holds the version it started on until it ends (hold/release), so its preprocessing, its
inference and the version named in its answer agree, and the old predictor is freed when the last
request on it is done: at most two versions are in memory, and only during a switch.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from serve.batcher import Batcher
from serve.config import ServeConfig
from serve.errors import NotReady
from serve.model_store import Candidates, ModelError, candidates, check_version, fingerprint, load_manifest, versions
from serve.preprocess import Spec

log = logging.getLogger("serve")
_LOAD_ERRORS = (ModelError, OSError, ValueError, KeyError, RuntimeError)


class LoadedModel:
    """One verified, warmed-up version: its manifest, its preprocessing spec and its predictors."""

    def __init__(self, folder: Path, manifest: dict, spec: Spec, base, config: ServeConfig,
                 on_batch: Callable[[int, float], None] | None = None):
        """on_batch(images, seconds): after each inference call (metrics)."""
        self.folder, self.manifest, self.spec = folder, manifest, spec
        self._on_batch = on_batch
        self.identity = {"name": manifest["name"], "version": manifest["version"]}
        self._base, self._base_taken = base, False
        self._local = threading.local()
        self._lock = threading.Lock()
        # One inference thread per version runs whatever its requests have queued. It calls
        # predictor() from its own thread, so it takes the warmed-up predictor and nobody shares it.
        self.batcher = Batcher(lambda batch: self.predictor()(batch), max_batch_size=config.max_batch_size,
                               max_delay_us=config.max_queue_delay_us,
                               max_queue_images=config.max_queue_images, on_batch=on_batch) if config.batching else None

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Through the batcher while this version serves; once it is retired (closed), the few requests
        still holding it run on their own thread's predictor, so a switch fails no request."""
        if self.batcher is not None:
            try:
                return self.batcher(batch)
            except NotReady:
                pass
        t = time.perf_counter()
        out = self.predictor()(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch), time.perf_counter() - t)
        return out

    def retire(self) -> None:
        """No new request reaches this version: end its inference thread once its queue is served."""
        if self.batcher is not None:
            self.batcher.close()

    def predictor(self):
        """This thread's predictor: the warmed-up one for the first thread, a clone (shared weights) for others."""
        p = getattr(self._local, "predictor", None)
        if p is None:
            with self._lock:
                if self._base_taken:
                    p = self._base.clone()
                else:
                    p, self._base_taken = self._base, True
            self._local.predictor = p
        return p


def warm_up(predictor, manifest: dict) -> None:
    """The first runs allocate and pick kernels. Their answers must also be what the manifest
    promises: a version whose files load but compute nonsense is refused here, never served."""
    n_labels = len(manifest["labels"])
    for n in (1, 8):
        out = predictor(np.zeros((n, *manifest["input"]["shape"][1:]), np.float32))
        if out.shape != (n, n_labels) or not np.isfinite(out).all():
            raise ModelError(f"warm-up: a batch of {n} gave shape {list(out.shape)}"
                             f"{'' if np.isfinite(out).all() else ' with non-finite values'}, expected [{n}, {n_labels}]")
        if "probabilities" in manifest["output"].get("semantics", ""):
            sums = out.sum(axis=1)
            # With a "not a digit" column left out of the graph's output, the ten sum to 1 - P(not a digit).
            open_set = manifest.get("calibration", {}).get("reject_logit") is not None
            if (out < -1e-6).any() or not (np.all(sums <= 1 + 1e-3) if open_set else np.allclose(sums, 1, atol=1e-3)):
                raise ModelError("warm-up: the outputs are not probabilities (rows do not sum to "
                                 f"{'at most 1' if open_set else '1'})")


class ModelService:
    """Serves one version at a time. If no version can be loaded the service stays up but not ready."""

    def __init__(self, config: ServeConfig, metrics=None):
        self.config = config
        self.metrics = metrics
        self.error: str | None = None  # why the last reload served nothing new, when it failed
        self.last_reload: dict | None = None
        self.candidates: Candidates | None = None
        self.refused: dict[Path, tuple[tuple, str]] = {}  # folder -> (its fingerprint, the reason)
        self._current: LoadedModel | None = None
        self._held = threading.local()
        self._reload_lock = threading.Lock()
        self._wake: tuple[int, int] | None = None
        self._pending = False
        self._refresh()

    # ---- what a request sees -------------------------------------------------------------------------

    def hold(self) -> None:
        """Pin this thread's request to the version served now, until release()."""
        self._held.model = self._current

    def release(self) -> None:
        self._held.model = None

    @property
    def model(self) -> LoadedModel | None:
        return getattr(self._held, "model", None) or self._current

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def manifest(self) -> dict | None:
        return self.model.manifest if self.model else None

    @property
    def spec(self) -> Spec | None:
        return self.model.spec if self.model else None

    @property
    def identity(self) -> dict:
        return dict(self.model.identity) if self.model else {}

    @property
    def model_dir(self) -> Path | None:
        return self.model.folder if self.model else None

    def predictor(self):
        model = self.model
        if model is None:
            raise NotReady(f"model not loaded: {self.error}")
        return model.predictor()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        model = self.model
        if model is None:
            raise NotReady(f"model not loaded: {self.error}")
        return model.probabilities(batch)

    # ---- choosing, loading and swapping versions -----------------------------------------------------

    def reload(self) -> str:
        """Serve the version the policy chooses now: 'switched', 'unchanged', or 'failed' (whatever
        was served keeps serving)."""
        outcome = self._refresh()
        if self.metrics is not None:
            self.metrics.model_reloads.labels(outcome).inc()
        return outcome

    def _refresh(self) -> str:
        with self._reload_lock:
            current = self._current
            try:
                self.candidates = candidates(self.config.model_dir, self.config.model_version)
            except (ModelError, OSError) as e:
                return self._failed(f"{type(e).__name__}: {e}", current)
            self.refused = {f: r for f, r in self.refused.items() if f.is_dir()}  # deleted folders
            reasons = []
            for folder in self.candidates.folders:
                if current is not None and folder == current.folder:
                    return self._done("unchanged", current)
                stamp = fingerprint(folder)
                known = self.refused.get(folder)
                if known is not None and known[0] == stamp:
                    reasons.append(f"version {folder.name}: {known[1]}")
                    continue
                t = time.perf_counter()
                try:
                    new = self._load(folder, current)
                except _LOAD_ERRORS as e:
                    reason = f"{type(e).__name__}: {e}"
                    self.refused[folder] = (stamp, reason)
                    reasons.append(f"version {folder.name}: {reason}")
                    log.error("model version refused", extra={"model_dir": str(folder), "reason": reason})
                    if self.metrics is not None:
                        self.metrics.model_refused.labels(folder.name).inc()
                    continue
                self._swap(new, current, load_ms=round((time.perf_counter() - t) * 1000, 1))
                return self._done("switched", new)
            return self._failed("no valid version: " + "; ".join(reasons), current)

    def _load(self, folder: Path, current: LoadedModel | None) -> LoadedModel:
        manifest = load_manifest(folder, verify=True)  # before Paddle ever reads a file of the folder
        check_version(folder, manifest)
        if current is not None and manifest["name"] != current.manifest["name"]:
            raise ModelError(f"{folder}: the manifest names model {manifest['name']!r}; "
                             f"this server serves {current.manifest['name']!r}")
        spec = Spec.from_manifest(manifest)
        from serve.predictor import load_predictor

        base = load_predictor(folder, manifest, self.config)
        warm_up(base, manifest)
        return LoadedModel(folder, manifest, spec, base, self.config,
                           on_batch=self.metrics.inference_call if self.metrics is not None else None)

    def _swap(self, new: LoadedModel, old: LoadedModel | None, load_ms: float) -> None:
        self._current = new  # one reference assignment: each request sees either version, whole
        if old is not None:
            old.retire()
        if self.metrics is not None:
            if old is not None:
                self.metrics.model_served.labels(old.identity["name"], str(old.identity["version"])).set(0)
            self.metrics.model_served.labels(new.identity["name"], str(new.identity["version"])).set(1)
        log.info("model ready", extra={"model_dir": str(new.folder), "version": new.identity["version"],
                                       "previous": old.identity["version"] if old else None, "load_ms": load_ms})

    def _done(self, outcome: str, model: LoadedModel) -> str:
        self.error = None
        self.last_reload = {"outcome": outcome, "version": model.identity["version"], "at": _now()}
        return outcome

    def _failed(self, reason: str, current: LoadedModel | None) -> str:
        repeated, self.error = reason == self.error, reason
        self.last_reload = {"outcome": "failed", "reason": reason, "at": _now()}
        if repeated:  # polling: say it once, not every MODEL_POLL_S seconds
            return "failed"
        if current is None:
            log.error("model not loaded", extra={"model_dir": str(self.config.model_dir), "reason": reason})
        else:
            log.warning("reload failed: the served version stays", extra={"version": current.identity["version"],
                                                                          "reason": reason})
        return "failed"

    def status(self) -> dict:
        """The versions present, which one is served, which were refused and why; the policy."""
        c, model = self.candidates, self.model
        folders = c.folders if c is not None else []
        if c is not None and c.name_dir is not None:
            folders = [c.name_dir / str(v) for v in reversed(versions(c.name_dir))]
        rows = []
        for folder in folders:
            row = {"version": int(folder.name) if folder.name.isdigit() else folder.name, "state": "present"}
            if model is not None and folder == model.folder:
                row["state"] = "serving"
            elif folder in self.refused:
                row.update(state="refused", reason=self.refused[folder][1])
            rows.append(row)
        pinned = c.pinned if c is not None else None
        policy = {"mode": "pinned", "version": pinned, "set_by": c.pinned_by} if pinned is not None else {"mode": "latest"}
        return {"versions": rows, "policy": policy, "last_reload": self.last_reload}

    # ---- triggers: SIGHUP (serve/gunicorn.conf.py) and polling -----------------------------------------

    def request_reload(self) -> None:
        """Ask the watcher thread for a reload. Safe in a signal handler: one write to a pipe (or,
        before watch() has started the thread, a flag that it reads)."""
        if self._wake is None:
            self._pending = True
        else:
            try:
                os.write(self._wake[1], b"r")
            except OSError as e:  # a full pipe already holds a request
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise

    def watch(self) -> None:
        """Start this process's watcher thread: reloads on request_reload(), and every MODEL_POLL_S
        seconds when that is set. Loading runs there, so the serving threads never wait for it."""
        if self._wake is not None:
            return
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake = (r, w)
        threading.Thread(target=self._watch, name="model-watcher", daemon=True).start()
        if self._pending:
            self.request_reload()

    def _watch(self) -> None:
        poll = self.config.model_poll_s if self.config.model_poll_s > 0 else None
        r = self._wake[0]
        while True:
            select.select([r], [], [], poll)
            try:
                while os.read(r, 4096):  # several requests made while busy are one reload
                    pass
            except BlockingIOError:
                pass
            try:
                self.reload()
            except Exception:  # never let the watcher die: the next trigger tries again
                log.exception("reload crashed")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
