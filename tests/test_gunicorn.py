"""A real gunicorn server, 2 workers x 2 threads: concurrent requests each get their own answer,
and /metrics (multiprocess mode) counts them all."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from tests.conftest import free_port, gunicorn_cmd, running_server
from tests.images import as_upload, encode


def metric(text: str, prefix: str) -> float:
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(prefix))


def test_concurrent_requests_under_two_workers_and_two_threads(mnist_dir, committed_model, tmp_path):
    from train.mnist import load_split

    from serve.app import create_app

    test = load_split(mnist_dir, "test")
    # Each image's expected answer, computed alone in this process: concurrency must not change it.
    reference = create_app({"model_dir": str(committed_model)}).test_client()
    uploads = []
    for i in range(60):
        png = encode(as_upload(test.images[i]))
        uploads.append((png, reference.post("/predict", data=png, content_type="image/png").json["probabilities"]))
    port = free_port()
    env = {"PORT": str(port), "WORKERS": "2", "THREADS": "2", "MODEL_DIR": str(committed_model),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "LOG_FILE": str(tmp_path / "server.log")}
    (tmp_path / "prom").mkdir()
    with running_server(gunicorn_cmd(), env, port) as server:
        url = server.base_url

        def call(item):
            i, (png, probs) = item
            # Alternate single images and batches of two, so requests of different shapes interleave.
            if i % 3 == 0:
                r = requests.post(url + "/predict", files=[("images", ("a.png", png)), ("images", ("b.png", png))], timeout=30)
                return r.status_code, [p["probabilities"] for p in r.json()["predictions"]], [probs, probs]
            r = requests.post(url + "/predict", files={"image": ("d.png", png, "image/png")},
                              headers={"X-Request-ID": f"req-{i}"}, timeout=30)
            assert r.headers["X-Request-ID"] == f"req-{i}"
            return r.status_code, [r.json()["probabilities"]], [probs]

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(call, enumerate(uploads)))
        assert all(status == 200 for status, _, _ in results)
        for _, got, want in results:
            assert np.allclose(got, want, atol=1e-5), "every answer belongs to its own request"
        expected_images = sum(len(want) for _, _, want in results)

        text = requests.get(url + "/metrics", timeout=5).text
        assert metric(text, "digits_images_total") == expected_images
        assert metric(text, 'digits_http_requests_total{method="POST",route="/predict",status="200"}') == len(uploads)
        assert metric(text, "digits_batch_size_count") == len(uploads)
        # Per inference call: concurrent requests' images may share one call, every image is run once.
        calls = metric(text, "digits_inference_batch_size_count")
        assert metric(text, "digits_inference_batch_size_sum") == expected_images and 1 <= calls <= len(uploads)
        assert metric(text, "digits_inference_seconds_count") == calls
    log = (tmp_path / "server.log").read_text()
    assert log.count('"message": "model ready"') == 2, "one predictor per worker, created after fork"


def test_the_gil_switch_interval_is_set_before_workers_fork(tmp_path):
    """serve/gunicorn.conf.py sets it in the master, which the workers fork from (default 0.5 ms)."""
    import os
    import subprocess

    from tests.conftest import PYTHON, REPO

    code = "import runpy, sys; runpy.run_path('serve/gunicorn.conf.py'); print(sys.getswitchinterval())"
    for env, expected in (({}, 0.0005), ({"GIL_SWITCH_MS": "2"}, 0.002)):
        environ = {k: v for k, v in os.environ.items() if k != "GIL_SWITCH_MS"} | env
        environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)  # or the config makes a temp folder of its own
        out = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True, check=True)
        assert abs(float(out.stdout.split()[-1]) - expected) < 1e-9
