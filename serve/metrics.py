"""Prometheus metrics, correct under several gunicorn workers.

When PROMETHEUS_MULTIPROC_DIR is set (serve/gunicorn.conf.py sets it), every worker writes its
samples to files there and /metrics aggregates them; otherwise metrics live in this process.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self):
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode samples go to files, not to a registry; a private registry
        # keeps several apps in one process (tests) from colliding.
        self.registry = CollectorRegistry()
        reg = None if self.multiprocess else self.registry
        self.requests = Counter("digits_http_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=reg)
        self.latency = Histogram("digits_http_request_duration_seconds", "Request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=reg)
        # Per inference call: the dynamic batcher runs several requests' images in one call.
        self.inference = Histogram("digits_inference_seconds", "Model inference time per inference call",
                                   buckets=LATENCY_BUCKETS, registry=reg)
        self.inference_batch = Histogram("digits_inference_batch_size", "Images per inference call (several "
                                         "requests' images when batched)", buckets=BATCH_BUCKETS, registry=reg)
        self.batch_size = Histogram("digits_batch_size", "Images per request", buckets=BATCH_BUCKETS, registry=reg)
        self.images = Counter("digits_images_total", "Images classified", registry=reg)
        # Model versions (serve/service.py). The gauge is 1 per worker serving a version, summed over the
        # live workers: {version="2"} 2 means both workers serve version 2; during a rollout both series show.
        self.model_served = Gauge("digits_model_served", "Workers serving each model version",
                                  ["name", "version"], multiprocess_mode="livesum", registry=reg)
        self.model_reloads = Counter("digits_model_reloads_total", "Model reloads (SIGHUP, polling) by outcome: "
                                     "switched, unchanged, failed (the served version stays)", ["outcome"], registry=reg)
        self.model_refused = Counter("digits_model_refused_total", "Model version folders refused (checksum, "
                                     "load or warm-up), by version, counted once per worker", ["version"], registry=reg)

    def inference_call(self, images: int, seconds: float) -> None:
        """One run of the model (serve/batcher.py calls it from the inference thread)."""
        self.inference.observe(seconds)
        self.inference_batch.observe(images)

    def exposition(self) -> tuple[bytes, str]:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
