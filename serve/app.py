"""The Flask app factory: `gunicorn 'serve.app:create_app()'`.

/predict and /read are codecs over the classification core (serve/classifier.py), as /v2 is
(serve/kserve.py). The model is loaded in create_app, which gunicorn calls in each worker after
fork (never at import, never with --preload).
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, jsonify, request
from flask.json.provider import DefaultJSONProvider

from serve import logs
from serve.classifier import Classifier
from serve.config import ServeConfig
from serve.errors import ApiError, BadRequest, install_handlers
from serve.inputs import read_images
from serve.kserve import bp as kserve_blueprint
from serve.metrics import Metrics
from serve.openapi import openapi_document
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
    core = Classifier(service, cfg, metrics)
    app.extensions["digits"] = service
    app.extensions["digits.metrics"] = metrics
    app.extensions["digits.classifier"] = core  # what the /v2 blueprint classifies with
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

    # This protocol's error shape, {"error": {"code", "message"}}; the status is serve/errors.py's,
    # the same on every route (/v2 writes the same faults in its own shape).
    install_handlers(app, ApiError.body)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        if not core.ready:
            return jsonify({"status": "not ready", "error": {"code": "not_ready", "message": service.error},
                            **service.status()}), 503
        return jsonify({"status": "ready", "model": service.identity, **service.status()})

    @app.get("/v1/models")
    def models():
        m = core.manifest()
        return jsonify({"models": [{
            **service.identity, "created": m["created"], "format": m["format"], "input": m["input"],
            "output": m["output"], "labels": m["labels"], "preprocessing": m["preprocessing"], "metrics": m["metrics"],
            "paddle_version": m["paddle_version"], **service.status(),
        }]})

    def debug_requested() -> bool:
        return request.args.get("debug", "").lower() in ("1", "true", "yes")

    # /predict and /read: codecs over the classification core (serve/classifier.py).
    @app.post("/predict")
    def predict():
        core.manifest()  # not ready: 503 before the body is read
        images, batch = read_images(request)
        debug = debug_requested()
        results = [core.describe(p, debug) for p in core.classify(images, "images" if batch else None)]
        if batch:
            return jsonify({"predictions": results, "model": core.identity})
        return jsonify(results[0])

    @app.post("/read")
    def read_number():
        """Every digit on one picture, in reading order: a number, a meter reading, a page."""
        core.manifest()
        images, batch = read_images(request)
        if batch or len(images) != 1:
            raise BadRequest("/read takes one picture, in field 'image'")
        predictions, found = core.read(images[0])
        debug = debug_requested()
        return jsonify(reading([core.describe(p, debug) for p in predictions], found, core.identity))

    @app.get("/metrics")
    def prometheus():
        body, ctype = metrics.exposition()
        return body, 200, {"Content-Type": ctype}

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_document(cfg, service.identity))

    app.register_blueprint(kserve_blueprint)  # the Open Inference Protocol under /v2
    return app

