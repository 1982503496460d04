"""Shared fixtures: the real MNIST files, the committed model, a tiny model trained on synthetic data,
and a real gunicorn server on a free loopback port."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
PYTHON = sys.executable

sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ.get("MNIST_DIR") or SHARED_MNIST)
    assert (path / "t10k-images-idx3-ubyte.gz").is_file(), f"the MNIST files are expected in {path} (set MNIST_DIR)"
    return path


@pytest.fixture(scope="session")
def committed_model() -> Path:
    from serve.model_store import resolve

    return resolve(REPO / "models")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    from tests.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synthetic-mnist"), n_train=600, n_test=200)


def run_module(*args: str, cwd: Path = REPO, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <args>` like a user would; fail the test with its output if it fails."""
    proc = subprocess.run([PYTHON, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"python -m {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def tiny_run(synthetic_data, tmp_path_factory) -> Path:
    """One short epoch of the course's CNN on synthetic digits, through the real CLI."""
    runs = tmp_path_factory.mktemp("runs")
    run_module("train", "--data-dir", str(synthetic_data), "--runs-dir", str(runs), "--run-name", "tiny",
               "--model", "lenet", "--epochs", "1", "--batch-size", "32", "--val-size", "100",
               "--optimizer", "adam", "--lr", "0.003", "--schedule", "constant", "--no-progress")
    return runs / "tiny"


@pytest.fixture(scope="session")
def tiny_models(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported through the real CLI into a fresh models folder."""
    models = tmp_path_factory.mktemp("models")
    run_module("export", "--run", str(tiny_run), "--models-dir", str(models))
    return models


@pytest.fixture(scope="session")
def app(committed_model):
    from serve.app import create_app

    return create_app({"model_dir": str(committed_model)})


@pytest.fixture()
def client(app):
    return app.test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(cmd: list[str], env: dict, port: int, timeout: float = 120, ready_path: str = "/readyz"):
    """Start a server process group, wait until ready_path answers 200, yield its base URL, stop it."""
    log = open(Path(env.get("LOG_FILE", os.devnull)), "w") if env.get("LOG_FILE") else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"server exited early with {proc.returncode}: {' '.join(cmd)}"
            try:
                if requests.get(base + ready_path, timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # gunicorn's master accepts before a worker is up: a read can time out while it boots
            assert time.monotonic() < deadline, f"server not ready within {timeout}s"
            time.sleep(0.3)
        proc.base_url = base
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def gunicorn_cmd() -> list[str]:
    return [str(Path(PYTHON).parent / "gunicorn"), "-c", "serve/gunicorn.conf.py", "serve.app:create_app()"]
