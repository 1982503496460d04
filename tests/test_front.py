"""The container's entry point (deploy/front.py): nginx in front of sync gunicorn workers, one PID 1.

Sync workers alone are held by two trickling clients (tests/test_slow_clients.py says why the
bare-metal default is threaded); behind the front, 64 of them are held by nginx and normal requests
keep being answered. SIGHUP reaches gunicorn, SIGTERM stops both with exit code 0, and if gunicorn
dies the front stops nginx and exits non-zero so that the container is restarted."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from deploy.front import NGINX_CONF, nginx_conf
from tests.conftest import PYTHON, free_port, running_server
from tests.images import encode
from tests.procs import alive, children, wait_for
from tests.slow_clients import SlowClients


def test_the_proxy_is_the_compose_proxy_pointed_at_one_gunicorn():
    template = NGINX_CONF.read_text()
    conf = nginx_conf(template, 8001, "0.0.0.0:8000", Path("/run/front"))
    assert "server 127.0.0.1:8001 " in conf and "listen 0.0.0.0:8000;" in conf
    assert "worker_processes 1;" in conf and "access_log off;" in conf  # the app logs each request once
    assert "replica:8000" not in conf and "/tmp/" not in conf and "/run/front/client_body" in conf
    for line in ("proxy_next_upstream error timeout http_502 http_503 non_idempotent;", "client_max_body_size 10m;"):
        assert line in template and line in conf  # what the proxy does to requests stays the compose file's
    with pytest.raises(ValueError, match="replica:8000"):
        nginx_conf(template.replace("server replica:8000", "server app:8000"), 8001, "0.0.0.0:8000", Path("/run/x"))


def front(committed_model, tmp_path):
    port = free_port()
    (tmp_path / "prom").mkdir(exist_ok=True)
    env = {"PORT": str(port), "UPSTREAM_PORT": str(free_port()), "WORKERS": "2", "THREADS": "1", "BATCHING": "0",
           "MODEL_DIR": str(committed_model), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           "LOG_FILE": str(tmp_path / "server.log")}
    return running_server([PYTHON, "deploy/front.py"], env, port)


PNG = encode(np.pad(np.full((40, 10), 0, np.uint8), 40, constant_values=255))  # a "1"


def predict(base_url: str):
    try:
        return requests.post(base_url + "/predict", files={"image": ("d.png", PNG, "image/png")}, timeout=3).status_code
    except requests.RequestException as e:
        return type(e).__name__


def test_behind_the_front_trickling_clients_hold_no_sync_worker_and_sigterm_stops_both_cleanly(committed_model, tmp_path):
    with front(committed_model, tmp_path) as proc:
        with SlowClients(int(proc.base_url.rsplit(":", 1)[1]), 64, interval_s=0.2) as slow:
            time.sleep(0.5)
            outcomes = [predict(proc.base_url) for _ in range(20)]
            time.sleep(0.3)
            held = slow.sent
        assert outcomes == [200] * 20, outcomes
        assert held >= 64 and slow.closed_by_server == 0, "the slow clients were not kept open: the test proves nothing"

        proc.send_signal(signal.SIGHUP)  # to gunicorn: the workers reload the model in place
        time.sleep(1.0)
        assert [predict(proc.base_url) for _ in range(5)] == [200] * 5
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
    log = (tmp_path / "server.log").read_text()
    assert "Handling signal: term" in log and "Hang up: workers reload the model" in log


def test_if_gunicorn_dies_the_front_stops_nginx_and_exits_non_zero(committed_model, tmp_path):
    with front(committed_model, tmp_path) as proc:
        kids = children(proc.pid)
        names = {pid: Path(f"/proc/{pid}/comm").read_text().strip() for pid in kids}
        (master,) = [pid for pid, name in names.items() if name != "nginx"]
        (nginx,) = [pid for pid, name in names.items() if name == "nginx"]
        os.kill(master, signal.SIGKILL)
        assert proc.wait(timeout=40) != 0
        wait_for(lambda: not alive(nginx), 10, what="nginx stopped")
    assert "gunicorn exited with -9; stopping" in (tmp_path / "server.log").read_text()
