"""Rolling model versions: the version policy, pinning, and a rollout under load on a real gunicorn
(publish v2 + SIGHUP, a corrupt v3 + SIGHUP, pin back to v1 + SIGHUP) with no failed request."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from export.publish import publish, staging_dir
from serve.model_store import PIN_FILE, ModelError, candidates, write_pin
from tests import hostile
from tests.conftest import PYTHON, REPO, free_port, gunicorn_cmd, run_module, running_server
from tests.load import Load
from tests.procs import children, status_kb, wait_for

PNG = hostile.save(hostile.digit(), "PNG")
NAME = "mnist-cnn"


def publish_copy(committed: Path, models: Path, corrupt: bool = False) -> Path:
    """A new version of the committed model through export/publish.py's atomic publish (the next
    version number, checksums recomputed); `corrupt` then flips a byte of the published params."""
    staging = staging_dir(models, NAME)
    manifest = json.loads((committed / "manifest.json").read_text())
    for role in ("model", "params"):
        shutil.copy(committed / manifest["files"][role], staging)
    folder = publish(staging, manifest)
    if corrupt:
        params = folder / manifest["files"]["params"]
        raw = bytearray(params.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        params.write_bytes(bytes(raw))
    return folder


@pytest.fixture()
def models(committed_model, tmp_path) -> Path:
    root = tmp_path / "models"
    (root / NAME).mkdir(parents=True)
    publish_copy(committed_model, root)  # version 1 of a fresh folder, whichever version is committed
    return root


def test_policy_newest_first_a_pin_file_beats_model_version(models, committed_model):
    publish_copy(committed_model, models)
    assert [f.name for f in candidates(models).folders] == ["2", "1"]
    assert [f.name for f in candidates(models, "latest").folders] == ["2", "1"]
    pinned = candidates(models, "1")
    assert [f.name for f in pinned.folders] == ["1"] and pinned.pinned_by == "MODEL_VERSION"
    write_pin(models / NAME, 2)
    by_file = candidates(models, "1")
    assert [f.name for f in by_file.folders] == ["2"] and by_file.pinned_by == f"{PIN_FILE} file"
    write_pin(models / NAME, None)
    assert not (models / NAME / PIN_FILE).exists()
    with pytest.raises(ModelError, match="version 7, pinned by MODEL_VERSION, is not under"):
        candidates(models, "7")
    (models / NAME / PIN_FILE).write_text("two\n")
    with pytest.raises(ModelError, match="expected a version number"):
        candidates(models)
    with pytest.raises(ModelError, match="no version 9"):
        write_pin(models / NAME, 9)


def test_pin_and_unpin_from_the_command_line(models, committed_model):
    publish_copy(committed_model, models)
    run_module("serve.model_store", "pin", "1", "--model-dir", str(models))
    assert (models / NAME / PIN_FILE).read_text() == "1\n"
    run_module("serve.model_store", "unpin", "--model-dir", str(models / NAME))
    assert not (models / NAME / PIN_FILE).exists()
    bad = subprocess.run([PYTHON, "-m", "serve.model_store", "pin", "5", "--model-dir", str(models)], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "no version 5" in bad.stderr


def test_refusals_and_polling_in_one_process(models, committed_model):
    """A copied folder whose manifest names another version is refused; a pinned broken version
    leaves the service not ready with the reason; MODEL_POLL_S finds a new version by itself."""
    from serve.app import create_app

    shutil.copytree(models / NAME / "1", models / NAME / "2")  # copied, manifest still says 1
    app = create_app({"model_dir": str(models), "model_poll_s": 0.2})
    service, client = app.extensions["digits"], app.test_client()
    ready = client.get("/readyz").json
    assert ready["model"]["version"] == 1
    assert ready["versions"][0]["state"] == "refused" and "the manifest says version 1, the folder is 2" in \
        ready["versions"][0]["reason"]
    service.watch()
    shutil.rmtree(models / NAME / "2")
    publish_copy(committed_model, models)  # a real version 2
    wait_for(lambda: service.identity["version"] == 2, 30, what="the poller serving version 2")
    assert client.post("/predict", data=PNG, content_type="image/png").json["model"]["version"] == 2

    broken = create_app({"model_dir": str(models), "model_version": "3"})
    assert broken.test_client().get("/readyz").status_code == 503
    publish_copy(committed_model, models, corrupt=True)
    assert broken.extensions["digits"].reload() == "failed"
    ready = broken.test_client().get("/readyz")
    assert ready.status_code == 503 and "does not match its sha256" in ready.json["error"]["message"]
    assert ready.json["policy"] == {"mode": "pinned", "version": 3, "set_by": "MODEL_VERSION"}


def metric(url: str, line_start: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(line_start))


FOOTPRINT = """
import sys; sys.path.insert(0, {repo!r})
from pathlib import Path
from serve.model_store import load_manifest
from serve.service import warm_up
import serve.predictor, paddle.inference
rss = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
before = rss()
p = serve.predictor.Predictor(Path({model!r}), load_manifest(Path({model!r})))
warm_up(p, p.manifest)
print(rss() - before)
"""


def test_rollout_under_load_never_fails_a_request_nor_serves_a_broken_version(models, committed_model, tmp_path):
    # One model's memory (a warmed-up predictor, Paddle already imported), measured while the server starts.
    footprint = subprocess.Popen([PYTHON, "-c", FOOTPRINT.format(repo=str(REPO), model=str(committed_model))],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = free_port()
    (tmp_path / "prom").mkdir()
    env = {"HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "2", "THREADS": "1", "MODEL_DIR": str(models),
           "MAX_REQUESTS": "0", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           "LOG_FILE": str(tmp_path / "server.log"), "ACCESS_LOG": ""}
    with running_server(gunicorn_cmd(), env, port) as server:
        url = server.base_url
        workers = children(server.pid)
        load = Load(url + "/predict", PNG, total=1_000_000, concurrency=4, timeout=30,
                    keep=lambda r: r.json()["model"]["version"]).start()

        def answers_since(t: float) -> set:
            return {v for at, v in list(load.kept) if at > t}

        def switched_to(version: int, since: float):
            """The time after which every answer names `version` (a second of answers, all of it)."""
            def check():
                last_other = max((at for at, v in list(load.kept) if at > since and v != version), default=since)
                return last_other if time.monotonic() - last_other > 1.0 and answers_since(last_other) else None
            return wait_for(check, 30, interval=0.1, what=f"every answer from version {version}")

        try:
            wait_for(lambda: load.done() >= 200, 60, what="200 answers")
            rss_before = {w: status_kb(w, "VmRSS") for w in workers}
            for w in workers:  # reset the peak (VmHWM) to the current RSS: start-up is not measured
                Path(f"/proc/{w}/clear_refs").write_text("5")

            publish_copy(committed_model, models)  # version 2
            t_hup2 = time.monotonic()
            os.kill(server.pid, signal.SIGHUP)
            to_v2 = switched_to(2, t_hup2) - t_hup2

            publish_copy(committed_model, models, corrupt=True)  # version 3
            t_hup3 = time.monotonic()
            os.kill(server.pid, signal.SIGHUP)
            wait_for(lambda: metric(url, 'digits_model_refused_total{version="3"}') == 2, 30, what="both workers refusing v3")
            n = load.done()
            wait_for(lambda: load.done() >= n + 100, 60, what="100 answers after the refusal")
            after_v3 = answers_since(t_hup3)

            write_pin(models / NAME, 1)
            t_pin = time.monotonic()
            os.kill(server.pid, signal.SIGHUP)
            to_v1 = switched_to(1, t_pin) - t_pin
            rss_after = {w: status_kb(w, "VmRSS") for w in workers}
            peak = {w: status_kb(w, "VmHWM") for w in workers}
            status = requests.get(url + "/v1/models", timeout=10).json()["models"][0]
            ready = requests.get(url + "/readyz", timeout=10).json()
            served = {v: metric(url, f'digits_model_served{{name="{NAME}",version="{v}"}}') for v in (1, 2, 3)}
            switched = metric(url, 'digits_model_reloads_total{outcome="switched"}')
        finally:
            load.stop()
            results = load.wait(timeout=120)
        assert children(server.pid) == workers, "the workers reloaded in place: none was replaced"
    model_kib = int(footprint.communicate(timeout=120)[0])
    versions_seen = [v for _, v in load.kept]
    p99 = load.percentile(0.99) * 1000
    # Latency of the answers that ended within 2 s after a SIGHUP, against all (kept[i] is latencies[i]).
    near = sorted(lat for (at, _), lat in zip(load.kept, load.latencies)
                  if any(0 <= at - t < 2 for t in (t_hup2, t_hup3, t_pin)))
    steady = sorted(lat for (at, _), lat in zip(load.kept, load.latencies) if at < t_hup2)
    near_p99, steady_p99 = (x[min(len(x) - 1, int(0.99 * len(x)))] * 1000 for x in (near, steady))
    print(f"\n{load.done()} requests at concurrency {load.concurrency}: {dict(results)}; answers from v2 "
          f"{to_v2:.2f} s after its SIGHUP, from v1 {to_v1:.2f} s after the pin; p99 {p99:.1f} ms; before the first SIGHUP {len(steady)} answers, p99 {steady_p99:.1f} ms, "
          f"max {steady[-1] * 1000:.0f} ms; within 2 s after a SIGHUP "
          f"{len(near)} answers, p99 {near_p99:.1f} ms, max {near[-1] * 1000:.0f} ms; one model "
          f"{model_kib / 1024:.1f} MiB; per worker RSS before {[v // 1024 for v in rss_before.values()]} MiB, after "
          f"{[v // 1024 for v in rss_after.values()]} MiB, peak {[v // 1024 for v in peak.values()]} MiB")

    assert load.failures == 0 and set(results) == {200}, results
    assert 3 not in versions_seen, "the corrupt version was never served"
    assert {1, 2} <= set(versions_seen) and after_v3 == {2}, "after the corrupt publish, version 2 kept serving"
    assert versions_seen[-1] == 1 and to_v2 < 15 and to_v1 < 15
    assert [(v["version"], v["state"]) for v in status["versions"]] == [(3, "refused"), (2, "present"), (1, "serving")]
    assert "does not match its sha256" in status["versions"][0]["reason"]
    assert ready["policy"] == {"mode": "pinned", "version": 1, "set_by": f"{PIN_FILE} file"}
    assert served == {1: 2, 2: 0, 3: 0} and switched == 4  # each of the 2 workers: 1 -> 2, then 2 -> 1
    for w in workers:  # old and new side by side during a switch: at most one more model than in steady state
        assert peak[w] - rss_before[w] <= model_kib, (peak, rss_before, model_kib)
    log = (tmp_path / "server.log").read_text()
    assert "Hang up: workers reload the model" in log and "Booting worker" in log
    assert log.count("Booting worker") == 2, "SIGHUP started no new worker"


def test_a_sighup_while_a_worker_starts_neither_kills_it_nor_is_lost(models, tmp_path):
    """Stock gunicorn's HUP would replace the booting worker, and a HUP reaching a worker before it
    has set its handlers would kill it (SIG_DFL): here the worker keeps booting and reloads once up."""
    port = free_port()
    (tmp_path / "prom").mkdir()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "1", "MODEL_DIR": str(models),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "ACCESS_LOG": ""}
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(gunicorn_cmd(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        (worker,) = wait_for(lambda: children(proc.pid), 60, interval=0.05, what="a forked worker")
        time.sleep(0.3)  # past gunicorn's signal set-up, well before Paddle and the model are loaded
        os.kill(proc.pid, signal.SIGHUP)

        def reloaded():
            try:
                r = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
            except requests.RequestException:
                return None
            return r if (r.get("last_reload") or {}).get("outcome") == "unchanged" else None

        ready = wait_for(reloaded, 90, what="the worker up, then reloading once")
        assert ready["model"]["version"] == 1
        assert children(proc.pid) == [worker], "the same worker: neither killed nor replaced"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    text = (tmp_path / "server.log").read_text()
    assert text.count("Booting worker") == 1 and "Hang up: workers reload the model" in text
