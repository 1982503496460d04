"""Where one request's CPU time goes, in-process on one core (Flask test client, no HTTP server):
/healthz against /predict, /predict split into its steps, and the same PNG through /v2 infer as
image_bytes (binary tensor data), its calls alternated with /predict's. This is what bounds /predict ÷ /healthz
and images/s, whatever the server settings.

python -m bench.request_cost [--runs N] [--model-dir models]
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import uuid

import numpy as np

from bench.common import emit, stats_ms


def per_call(fn, runs: int) -> float:
    """Median seconds per call over `runs` calls, after a warm-up."""
    for _ in range(max(5, runs // 10)):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def alternated(fa, fb, runs: int) -> tuple[float, float]:
    """Median seconds per call of fa and of fb, called in turn (a shared machine's drift hits both alike)."""
    for _ in range(max(5, runs // 10)):
        fa(), fb()
    ta, tb = [], []
    for _ in range(runs):
        for fn, times in ((fa, ta), (fb, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return float(np.median(ta)), float(np.median(tb))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.request_cost", description=__doc__)
    p.add_argument("--model-dir", default="models")
    p.add_argument("--runs", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-prom-"))

    from flask import Request
    from werkzeug.test import EnvironBuilder

    from bench.http_load import BOUNDARY, multipart, upload_png, v2_body
    from serve.app import create_app
    from serve.inputs import read_images
    from serve.preprocess import prepare

    app = create_app({"model_dir": args.model_dir})
    for h in logging.getLogger("serve").handlers:  # log every request as served, into the void
        if isinstance(h, logging.StreamHandler):
            h.setStream(open(os.devnull, "w"))
    service, core = app.extensions["digits"], app.extensions["digits.classifier"]
    client = app.test_client()
    out = {}
    for kind in ("small_png", "mnist_png"):
        png = upload_png(kind)
        single = multipart([("image", "digit.png", png)])
        batch_pngs = [upload_png(kind, seed=100 + i) for i in range(args.batch)]
        batch = multipart([("images", f"d{i}.png", p) for i, p in enumerate(batch_pngs)])

        def post(body, fixed=False):
            b = BOUNDARY if fixed else uuid.uuid4().hex  # clients send a fresh boundary with every request
            r = client.post("/predict", data=body.replace(BOUNDARY.encode(), b.encode()),
                            content_type=f"multipart/form-data; boundary={b}")
            assert r.status_code == 200, r.data

        def parse(body, fixed=False):
            b = BOUNDARY if fixed else uuid.uuid4().hex
            env = EnvironBuilder(method="POST", data=body.replace(BOUNDARY.encode(), b.encode()),
                                 content_type=f"multipart/form-data; boundary={b}").get_environ()
            return read_images(Request(env))[0]

        prepared = [prepare(png, service.spec, core.limits)]
        x = np.stack([p.tensor for p in prepared])
        prediction = core.classify_tensor(x)[0]
        with app.test_request_context():
            describe_s = per_call(lambda: app.json.response(core.describe(prediction)), args.runs)
        steps = {
            "multipart parse, new boundary": per_call(lambda: parse(single), args.runs),
            "multipart parse, same boundary": per_call(lambda: parse(single, True), args.runs),
            "decode + preprocess": per_call(lambda: prepare(png, service.spec, core.limits), args.runs),
            "inference (batch 1)": per_call(lambda: service.probabilities(x), args.runs),
            "describe + JSON": describe_s,
        }
        v2_url = f"/v2/models/{service.manifest['name']}/infer"

        def post_v2(files):
            body, head = v2_body(files)

            def call():
                r = client.post(v2_url, data=body, headers={"Inference-Header-Content-Length": str(head)},
                                content_type="application/octet-stream")
                assert r.status_code == 200, r.data
            return call

        whole, v2 = alternated(lambda: post(single), post_v2([png]), args.runs)
        healthz = per_call(lambda: client.get("/healthz"), args.runs)
        batch_s, v2_batch_s = alternated(lambda: post(batch), post_v2(batch_pngs), max(10, args.runs // 20))
        out[kind] = {
            "png_bytes": len(png),
            "healthz_ms": round(healthz * 1000, 4),
            "predict_ms": round(whole * 1000, 4),
            "predict_over_healthz_cost": round(whole / healthz, 2),
            "v2_image_bytes_ms": round(v2 * 1000, 4),
            "v2_over_predict_cost": round(v2 / whole, 3),
            "steps_ms": {k: round(v * 1000, 4) for k, v in steps.items()},
            "framework_and_rest_ms": round((whole - sum(v for k, v in steps.items() if "same boundary" not in k)) * 1000, 4),
            f"batch_{args.batch}_ms": round(batch_s * 1000, 3),
            f"batch_{args.batch}_images_per_s_one_core": round(args.batch / batch_s, 1),
            f"v2_batch_{args.batch}_over_predict_cost": round(v2_batch_s / batch_s, 3),
        }
    emit(out)


if __name__ == "__main__":
    main()
