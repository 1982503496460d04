"""Slow clients cannot starve the service: with 64 connections trickling their bodies into the
default gunicorn setup, a normal client's requests keep succeeding, each well within its timeout.
(With sync workers, THREADS=1, two such connections hold both workers and every normal request
times out: make bench measures both.)"""
from __future__ import annotations

import json
import time

import numpy as np
import requests

from tests.conftest import free_port, gunicorn_cmd, running_server
from tests.images import encode
from tests.slow_clients import SlowClients


def test_64_trickling_connections_do_not_starve_normal_requests(committed_model, tmp_path):
    port = free_port()
    (tmp_path / "prom").mkdir()
    env = {"PORT": str(port), "WORKERS": "2", "MODEL_DIR": str(committed_model),  # THREADS: the default
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "LOG_FILE": str(tmp_path / "server.log")}
    png = encode(np.pad(np.full((40, 10), 0, np.uint8), 40, constant_values=255))
    with running_server(gunicorn_cmd(), env, port) as server:
        # Both workers must be up before the slow clients arrive, or they would all land on one.
        for _ in range(20):
            requests.get(server.base_url + "/readyz", timeout=5)
        with SlowClients(port, 64, interval_s=0.2) as slow:
            time.sleep(0.5)  # every slow connection accepted and sending
            outcomes = []
            for _ in range(20):
                try:
                    r = requests.post(server.base_url + "/predict", files={"image": ("d.png", png, "image/png")}, timeout=3)
                    outcomes.append(r.status_code)
                except requests.RequestException as e:
                    outcomes.append(type(e).__name__)
            time.sleep(0.3)
            held = slow.sent
        assert outcomes == [200] * 20, outcomes
        assert held >= 64 and slow.closed_by_server == 0, "the slow clients were not kept open: the test proves nothing"
    # The lean hot path: one log line per request, the app's, carrying route and model version.
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines() if line.startswith("{")]
    version = json.loads((committed_model / "manifest.json").read_text())["version"]
    predicts = [e for e in lines if e.get("path") == "/predict"]  # the slow clients' too, cut off when they closed
    assert [e["status"] for e in predicts].count(200) == 20
    assert all(e["route"] == "/predict" and e["model_version"] == version and e["request_id"] for e in predicts)
    assert not [e for e in lines if "user_agent" in e], "gunicorn's access line is off by default"
