"""The Flask app factory: `gunicorn 'serve.app:create_app()'`.

preprocess -> inference -> postprocess are separate steps; the model is loaded in create_app,
which gunicorn calls in each worker after fork (never at import, never with --preload).
"""
from __future__ import annotations

import base64
import io
import logging
import re
import time
import uuid

import numpy as np
from flask import Flask, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from PIL import Image
from werkzeug.exceptions import HTTPException

from serve import logs, rejection
from serve.config import ServeConfig
from serve.errors import ApiError, BadRequest, NotReady
from serve.inputs import read_images
from serve.kserve import bp as kserve_blueprint
from serve.metrics import Metrics
from serve.openapi import openapi_document
from serve.preprocess import prepare, read
from serve.reading import reading
from serve.service import ModelService
from serve.web import bp as web_page

log = logging.getLogger("serve")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Metric labels take only known values: a client-chosen method name would add a series per request.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _JSONProvider(DefaultJSONProvider):
    """JSON nested deeper than the parser's stack raises RecursionError, which Flask would answer
    with a 500; as a ValueError it is the 400 of any other malformed body, for every blueprint."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(config: dict | None = None) -> Flask:
    """Build the app: config from defaults, then environment, then `config` overrides."""
    cfg = ServeConfig.load(config)
    logs.configure(cfg.log_level)
    app = Flask(__name__)
    app.json = _JSONProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=cfg.max_upload_bytes, MAX_FORM_PARTS=cfg.max_form_parts, JSON_SORT_KEYS=False)
    metrics = Metrics()
    service = ModelService(cfg, metrics)
    app.extensions["digits"] = service
    app.extensions["digits.metrics"] = metrics
    app.register_blueprint(web_page)  # GET /: the page to draw or upload a digit

    @app.before_request
    def start():
        g.t0 = time.perf_counter()
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        service.hold()  # the whole request sees one model version, even if a reload swaps it meanwhile

    @app.teardown_request
    def end(exc):
        service.release()

    @app.after_request
    def finish(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        response.headers["X-Request-ID"] = g.get("request_id", "")
        method = request.method if request.method in _METHODS else "other"
        metrics.requests.labels(route, method, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(elapsed)
        # The one line per request (gunicorn's access log is off by default: ACCESS_LOG).
        log.info("request", extra={"request_id": g.get("request_id"), "method": request.method, "path": request.path,
                                   "route": route, "status": response.status_code, "duration_ms": round(elapsed * 1000, 2),
                                   "model_version": service.manifest["version"] if service.manifest else None})
        return response

    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return jsonify(e.body()), e.status, e.headers()

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        code = re.sub(r"[^a-z]+", "_", (e.name or "error").lower()).strip("_")
        return jsonify({"error": {"code": code, "message": e.description or e.name}}), e.code

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return jsonify({"error": {"code": "internal", "message": "internal server error"}}), 500

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        if not service.ready:
            return jsonify({"status": "not ready", "error": {"code": "not_ready", "message": service.error},
                            **service.status()}), 503
        return jsonify({"status": "ready", "model": service.identity, **service.status()})

    @app.get("/v1/models")
    def models():
        if not service.ready:
            return api_error(_not_ready(service))
        m = service.manifest
        return jsonify({"models": [{
            **service.identity, "created": m["created"], "format": m["format"], "input": m["input"],
            "output": m["output"], "labels": m["labels"], "preprocessing": m["preprocessing"], "metrics": m["metrics"],
            "paddle_version": m["paddle_version"], **service.status(),
        }]})

    def infer(inputs) -> np.ndarray:
        """Probabilities for the prepared inputs of one request (/predict's images, /read's digits), timed."""
        t = time.perf_counter()
        probs = service.probabilities(np.stack([x.tensor for x in inputs]))
        metrics.inference.observe(time.perf_counter() - t)
        metrics.batch_size.observe(len(inputs))
        metrics.images.inc(len(inputs))
        return probs

    def debug_requested() -> bool:
        return request.args.get("debug", "").lower() in ("1", "true", "yes")

    @app.post("/predict")
    def predict():
        if not service.ready:
            raise _not_ready(service)
        images, batch = read_images(request, cfg.max_batch)
        prepared = []
        for i, data in enumerate(images):
            try:
                prepared.append(prepare(data, service.spec, service.limits))
            except ApiError as e:
                if batch:
                    e.message = f"images[{i}]: {e.message}"
                raise
        probs = infer(prepared)
        debug = debug_requested()
        results = [describe(p, service, cfg, prep.image if debug else None) for p, prep in zip(probs, prepared)]
        if batch:
            return jsonify({"predictions": results, "model": service.identity})
        return jsonify(results[0])

    @app.post("/read")
    def read_number():
        """Every digit on one picture, in reading order: a number, a meter reading, a page."""
        if not service.ready:
            raise _not_ready(service)
        images, batch = read_images(request, 1)
        if batch:
            raise BadRequest("/read takes one picture, in field 'image'")
        found = read(images[0], service.spec, service.limits, cfg.max_digits)
        probs = infer(found)
        debug = debug_requested()
        return jsonify(reading([describe(p, service, cfg, d.image if debug else None) for p, d in zip(probs, found)],
                               found, service.identity))

    @app.get("/metrics")
    def prometheus():
        body, ctype = metrics.exposition()
        return body, 200, {"Content-Type": ctype}

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_document(cfg, service.identity))

    app.register_blueprint(kserve_blueprint)  # the Open Inference Protocol under /v2
    return app


def _not_ready(service: ModelService) -> NotReady:
    return NotReady(f"model not loaded: {service.error}")


def describe(probs: np.ndarray, service: ModelService, cfg: ServeConfig, image: np.ndarray | None = None) -> dict:
    """One prediction as the API returns it.

    `uncertain` and `not_a_digit` follow serve/rejection.py; a non-digit answers `"digit": null`,
    and top_k still shows the closest digits.
    """
    labels = service.manifest["labels"]
    order = np.argsort(-probs, kind="stable")
    best = int(order[0])
    uncertain, not_a_digit = rejection.flags(float(probs[best]), service.manifest, cfg.uncertain_below)
    out = {
        "digit": None if not_a_digit else int(labels[best]),
        "confidence": float(probs[best]),
        "probabilities": [float(p) for p in probs],
        "top_k": [{"digit": int(labels[i]), "probability": float(probs[i])} for i in order[: cfg.top_k]],
        "uncertain": uncertain,
        "not_a_digit": not_a_digit,
        "model": service.identity,
    }
    if image is not None:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out["input_image"] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return out
