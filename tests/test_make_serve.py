"""`make serve` really serves the committed model: gunicorn on a free port, a real HTTP request."""
import os
import subprocess

import pytest
import requests

from tests.conftest import REPO, free_port, running_server
from tests.images import as_upload, encode
from tests.procs import wait_for


@pytest.mark.parametrize("front", ["", "nginx"])
def test_make_serve_classifies_an_mnist_digit(mnist_dir, committed_model, front):
    """Also with FRONT=nginx: nginx on PORT in front of sync workers (deploy/front.py), as the container
    runs; `make reload` still reaches gunicorn's master through its pidfile."""
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    port = free_port()
    cmd = ["make", "-s", "serve", *([f"FRONT={front}"] if front else [])]
    with running_server(cmd, {"PORT": str(port), "WORKERS": "1", "UPSTREAM_PORT": str(free_port())}, port) as server:
        health = requests.get(server.base_url + "/healthz", timeout=5)
        assert health.status_code == 200
        for i in range(5):
            png = encode(as_upload(test.images[i]))
            resp = requests.post(server.base_url + "/predict", files={"image": ("d.png", png, "image/png")}, timeout=10)
            assert resp.status_code == 200, resp.text
            assert resp.json()["digit"] == int(test.labels[i])
        # `make reload` finds the master through the pidfile `make serve` wrote: the worker reloads in
        # place and, with nothing new published, keeps serving the same version.
        subprocess.run(["make", "-s", "reload"], cwd=REPO, env={**os.environ, "PORT": str(port)}, check=True, timeout=60)
        ready = wait_for(lambda: (lambda r: r if r["last_reload"]["outcome"] == "unchanged" else None)(
            requests.get(server.base_url + "/readyz", timeout=5).json()), 30, what="a reload")
        assert ready["status"] == "ready" and ready["model"]["version"] == int(committed_model.name)  # the newest
