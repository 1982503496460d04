"""`make serve` really serves the committed model: gunicorn on a free port, a real HTTP request."""
import requests

from tests.conftest import free_port, running_server
from tests.images import as_upload, encode


def test_make_serve_classifies_an_mnist_digit(mnist_dir):
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    port = free_port()
    with running_server(["make", "-s", "serve"], {"PORT": str(port), "WORKERS": "1"}, port) as server:
        health = requests.get(server.base_url + "/healthz", timeout=5)
        assert health.status_code == 200
        for i in range(5):
            png = encode(as_upload(test.images[i]))
            resp = requests.post(server.base_url + "/predict", files={"image": ("d.png", png, "image/png")}, timeout=10)
            assert resp.status_code == 200, resp.text
            assert resp.json()["digit"] == int(test.labels[i])
