"""The attack surface, shown rather than asserted in prose:

- no endpoint loads a model, opens a path or fetches a URL that a client names: every route is
  called with hostile paths, file names and URLs in every place a client controls, while Python's
  audit hooks (PEP 578) record every file opened, directory listed, socket connected, process
  started and class unpickled;
- no admin endpoint exists: the routes are exactly the documented ones, none has an admin-like
  name, and the usual admin and model-repository paths answer 404 or 405;
- nothing is ever unpickled: serve/ imports no deserializer that can run code (AST scan), and
  loading and serving a model folder neither unpickles (audit event pickle.find_class) nor calls
  pickle, numpy.load or paddle.load (tripwires);
- the bare-metal default binds to loopback only.
"""
from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests import hostile
from tests.conftest import PYTHON, REPO, free_port, gunicorn_cmd, running_server
from tests.images import file_field

WATCHED = {"open", "os.listdir", "os.scandir", "os.remove", "os.rename", "os.mkdir", "shutil.rmtree", "shutil.copyfile",
           "socket.connect", "socket.getaddrinfo", "socket.bind", "urllib.Request", "http.client.connect",
           "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
           "pickle.find_class", "ctypes.dlopen"}


class AuditLog:
    """One audit hook for the whole test process (hooks cannot be removed): it records the watched
    events, with their first argument, only while recording."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self.active = False
        self._thread = None
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if self.active and event in WATCHED and threading.get_ident() == self._thread:
            first = args[0] if args else ""
            self.events.append((event, os.fsdecode(first) if isinstance(first, (str, bytes, os.PathLike)) else repr(first)))

    def __enter__(self):
        self.events, self.active, self._thread = [], True, threading.get_ident()
        return self

    def __exit__(self, *exc):
        self.active = False


AUDIT = AuditLog()


def python_install_dirs() -> tuple[str, ...]:
    """Where lazy imports legitimately read .py/.pyc files and package metadata from."""
    import sysconfig

    dirs = {sys.prefix, sys.base_prefix, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
    return tuple(os.path.realpath(d) for d in dirs)


def test_the_audit_log_sees_what_it_watches(tmp_path):
    """The recorder the tests below rely on does see opens, listings, connections and unpickling."""
    import pickle

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with AUDIT as audit:
        (tmp_path / "f").write_text("x")
        os.listdir(tmp_path)
        socket.create_connection(listener.getsockname(), timeout=2).close()
        pickle.loads(pickle.dumps(Path("x")))
    listener.close()
    seen = {event for event, _ in audit.events}
    assert {"open", "os.listdir", "socket.connect", "pickle.find_class"} <= seen, seen


# --- no client-chosen model, path or URL ----------------------------------------------------------

@pytest.fixture()
def trap(tmp_path, committed_model):
    """Things a client might point the server at: a valid model folder elsewhere, a secret file,
    and a loopback TCP listener that counts connections."""
    root = tmp_path / f"TRAP-{uuid.uuid4().hex[:8]}"
    shutil.copytree(committed_model, root / "mnist-cnn" / committed_model.name)
    (root / "secret.txt").write_text("secret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/model"
    values = [str(root), str(root / "mnist-cnn" / committed_model.name), str(root / "secret.txt"), "../" * 12 + str(root)[1:],
              f"file://{root}/secret.txt", url, url.replace("http", "https"), "/etc/passwd", "..\\..\\secret.txt"]
    yield root, listener, values
    listener.close()


def hostile_requests(app, values):
    """(method, url, kwargs) for every route and method, with the hostile values in the query,
    headers, path variables, JSON body, form fields and multipart file names."""
    png = hostile.save(hostile.digit(), "PNG")
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for value in values:
            path = rule.rule
            for arg in rule.arguments:
                converter = rule._converters[arg].__class__.__name__
                path = re.sub(rf"<[^>]*\b{arg}>", value if converter == "PathConverter" else quote(value, safe=""), path)
            query = "?" + "&".join(f"{k}={quote(value, safe='')}" for k in
                                   ("model", "model_dir", "model_name", "path", "file", "url", "uri", "name", "version", "src"))
            headers = {"X-Model-Dir": value, "X-Model": value, "X-Original-URL": value, "Referer": value,
                       "X-Forwarded-Host": "evil.example", "Content-Location": value}
            body = {"image": base64.b64encode(png).decode(), "model": value, "model_dir": value, "path": value,
                    "url": value, "name": value, "parameters": {"model": value, "url": value},
                    "inputs": [{"name": value, "shape": [1], "datatype": "BYTES", "data": [value]}]}
            for method in sorted(rule.methods | {"PUT", "DELETE", "PATCH"}):
                yield method, path + query, dict(headers=headers)
                if method in ("POST", "PUT", "PATCH"):
                    yield method, path + query, dict(headers=headers, json=body)
                    yield method, path + query, dict(headers=headers, content_type="multipart/form-data",
                                                     data={"image": file_field(png, value), "model": value})
                    yield method, path + query, dict(headers=headers, data=png, content_type="image/png")


def test_no_endpoint_loads_a_model_opens_a_path_or_fetches_a_url_a_client_names(app, client, trap):
    root, listener, values = trap
    before = client.post("/predict", data=hostile.save(hostile.digit(), "PNG"), content_type="image/png").json
    for method, url, kwargs in hostile_requests(app, values[:1]):  # warm up: lazy imports happen here
        client.open(url, method=method, **kwargs)
    requests_ = list(hostile_requests(app, values))
    with AUDIT as audit:
        statuses = [client.open(url, method=method, **kwargs).status_code for method, url, kwargs in requests_]
    assert not any(s >= 500 for s in statuses), "no hostile request made the server fail"
    touched = [(event, arg) for event, arg in audit.events if root.name in arg or "passwd" in arg or "secret" in arg]
    assert touched == [], "a client-supplied path was opened or listed"
    network = [e for e in audit.events if e[0].startswith(("socket.", "urllib.", "http."))]
    assert network == [], "a request made the server connect somewhere"
    spawned = [e for e in audit.events if e[0] in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork")]
    assert spawned == [] and not any(e[0] == "pickle.find_class" for e in audit.events)
    writes = [e for e in audit.events if e[0] in ("os.remove", "os.rename", "os.mkdir", "shutil.rmtree", "shutil.copyfile")]
    assert writes == [], "requests never change the filesystem"
    allowed = python_install_dirs() + (str(REPO / "serve"),)
    opened = {arg for event, arg in audit.events if event in ("open", "os.listdir", "os.scandir")}
    assert all(os.path.realpath(p).startswith(allowed) for p in opened), sorted(opened)
    with pytest.raises(socket.timeout):
        listener.accept()  # nobody dialled the URL we offered
    after = client.post("/predict", data=hostile.save(hostile.digit(), "PNG"), content_type="image/png").json
    assert after["model"] == before["model"] and after["probabilities"] == before["probabilities"], \
        "still the same model, loaded at start from the server's own configuration"
    print(f"\n{len(requests_)} hostile requests over {len(list(app.url_map.iter_rules()))} routes: "
          f"{len(audit.events)} watched events, none outside the Python install and serve/")


# --- no admin endpoint ----------------------------------------------------------------------------

ADMIN_WORDS = re.compile(r"admin|console|debug|shell|exec|eval|shutdown|reload|restart|config|env|upload|"
                         r"load|unload|repository|file|path|url|token|secret|login|user", re.IGNORECASE)
ADMIN_PATHS = ["/admin", "/console", "/debug", "/__debug__", "/shutdown", "/reload", "/config", "/env", "/.env",
               "/server-status", "/actuator", "/actuator/env", "/v1/models/load", "/v1/models/mnist-cnn/load",
               "/v2/repository/index", "/v2/repository/models/mnist-cnn/load", "/v2/repository/models/mnist-cnn/unload",
               "/upload", "/static/../serve/app.py", "/models/mnist-cnn/1/manifest.json", "/models/mnist-cnn/1/inference.pdiparams"]


def test_no_admin_endpoint_exists(app, client):
    doc = client.get("/openapi.json").json
    documented = {re.sub(r"\{(\w+)\}", r"<\1>", p) for p in doc["paths"]}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        generic = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
        assert generic in documented, f"{rule.rule} is not in the OpenAPI document"
        assert not ADMIN_WORDS.search(re.sub(r"<[^>]+>", "", rule.rule)), f"{rule.rule} looks like an admin endpoint"
        assert rule.methods <= {"GET", "HEAD", "OPTIONS", "POST"}, f"{rule.rule} accepts {rule.methods}"
    for path in ADMIN_PATHS:
        for method in ("GET", "POST", "PUT", "DELETE"):
            resp = client.open(path, method=method)
            assert resp.status_code in (404, 405), f"{method} {path} -> {resp.status_code}"
    assert not app.debug and not app.testing, "no debugger, exceptions never propagate to the client"
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200


# --- nothing is unpickled -------------------------------------------------------------------------

DESERIALIZERS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle",
                 "torch", "yaml"}
SUBPROCESS_AND_NETWORK = {"subprocess", "urllib.request", "http.client", "ftplib", "requests", "httpx", "urllib3", "socket"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "np.load", "numpy.load", "paddle.load", "paddle.jit.load",
                   "paddle.static.load", "paddle.static.load_inference_model", "os.system", "os.popen",
                   "importlib.import_module", "yaml.load", "torch.load"}


def dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def test_serve_imports_no_deserializer_and_calls_no_loader_that_can_run_code():
    files = sorted((REPO / "serve").rglob("*.py"))
    assert len(files) >= 10
    found = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in DESERIALIZERS or name in SUBPROCESS_AND_NETWORK or name.split(".")[0] in SUBPROCESS_AND_NETWORK - {"urllib", "http"}:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
            if isinstance(node, ast.Call):
                name = dotted(node.func)
                if name in FORBIDDEN_CALLS:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} calls {name}")
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} passes allow_pickle")
    assert found == []


def test_the_scan_catches_what_it_looks_for(tmp_path):
    """The AST scan above, run on a file that does the forbidden things, finds each of them."""
    bad = "import pickle\nfrom subprocess import run\nimport numpy as np\nnp.load('x', allow_pickle=True)\neval('1')\n"
    tree = ast.parse(bad)
    imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    calls = [dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "pickle" in imports and {"np.load", "eval"} <= set(calls) & FORBIDDEN_CALLS


def test_loading_and_serving_a_model_folder_never_unpickles(committed_model, monkeypatch):
    import pickle

    import numpy as np
    import paddle  # imported before recording: its own import is not what is tested
    import paddle.inference  # noqa: F401

    from serve.app import create_app

    calls = []

    def tripwire(name):
        def fail(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called while serving")
        return fail

    for module, attr in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (np, "load"),
                         (paddle, "load"), (paddle.jit, "load"), (paddle.static, "load"), (paddle.static, "load_inference_model")]:
        monkeypatch.setattr(module, attr, tripwire(f"{module.__name__}.{attr}"))
    png = hostile.save(hostile.digit(), "PNG")
    with AUDIT as audit:
        app = create_app({"model_dir": str(committed_model)})
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        assert client.post("/predict", data=png, content_type="image/png").json["digit"] == 7
        assert client.get("/v1/models").status_code == 200
    assert calls == []
    assert [e for e in audit.events if e[0] == "pickle.find_class"] == []
    model_files = {os.path.realpath(committed_model / f) for f in ["manifest.json", *json.loads(
        (committed_model / "manifest.json").read_text())["sha256"]]}
    opened = {os.path.realpath(arg) for event, arg in audit.events if event == "open"}
    # /proc/cpuinfo is the kernel's CPU description, read once to pick MKL's kernels (serve/cpu.py);
    # it is read only where MKL_DEBUG_CPU_TYPE is unset, so whether it shows here depends on the machine.
    opened.discard("/proc/cpuinfo")
    outside = {p for p in opened - model_files if not p.startswith(python_install_dirs() + (str(REPO / "serve"),))}
    assert outside == set(), "the server reads only the files its manifest lists"
    assert model_files <= opened, "every listed file is read (to verify its sha256) before it is served"


# --- loopback by default --------------------------------------------------------------------------

def env_without(*names) -> dict:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_the_bare_metal_default_binds_to_loopback(tmp_path):
    script = "import runpy; print(runpy.run_path('serve/gunicorn.conf.py')['bind'])"
    env = {**env_without("HOST", "PORT"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([PYTHON, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "127.0.0.1:8000"
    make = subprocess.run(["make", "-s", "-f", "Makefile", "-f", "-", "print-host"], cwd=REPO, env=env_without("HOST"),
                          input="print-host:\n\t@echo $(HOST)\n", capture_output=True, text=True, check=True)
    assert make.stdout.strip() == "127.0.0.1", "make serve binds to loopback unless HOST is set"
    script = "import runpy; print(runpy.run_path('serve/gunicorn.conf.py')['control_socket_disable'])"
    out = subprocess.run([PYTHON, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", "gunicorn's control socket (an admin interface) is off"
    # A real server started without HOST: its listening socket is on 127.0.0.1 only.
    port = free_port()
    (tmp_path / "prom").mkdir()
    env = {"PORT": str(port), "WORKERS": "1", "MODEL_DIR": str(tmp_path / "none"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           "LOG_FILE": str(tmp_path / "server.log"), "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    cmd = ["env", "-u", "HOST", *gunicorn_cmd()]
    with running_server(cmd, env, port, ready_path="/healthz"):
        listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
        assert [fields[1].split(":")[0] for fields in listening] == ["0100007F"], "bound to 127.0.0.1"
        v6 = Path("/proc/net/tcp6").read_text() if Path("/proc/net/tcp6").exists() else ""
        assert f":{port:04X} " not in v6, "not on IPv6 either"
    assert "Control socket" not in (tmp_path / "server.log").read_text()
    assert not list(tmp_path.rglob("*.ctl")), "no control socket was created"
