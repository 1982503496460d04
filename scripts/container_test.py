"""`make container-test`: the container image, proven by a real run on this machine.

Builds the image with podman from a locally made base image (this machine reaches no image
registry), brings docker-compose.yml up with podman-compose, waits for the container to report
healthy, classifies real MNIST test digits through the published port, rolls a new model version into
the mounted model folder under load (SIGHUP, no failed request; a corrupt version refused), checks that the service runs
as a non-root user without capabilities on a read-only root filesystem, stops it with SIGTERM and
checks that it exits 0, and tears everything down. Every HTTP request goes to 127.0.0.1.

Only this script knows about the machine's quirks (runc, ulimits, the TLS bundle for pip); the
Dockerfile and docker-compose.yml are what users with Docker run as they are.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from train.mnist import load_split  # noqa: E402  (reads and validates the gzip IDX files)

PROJECT = "digits-ctest"  # compose project name: keeps this run apart from anything else
SERVICE = "digits"
CONTAINER = f"{PROJECT}_{SERVICE}_1"  # podman-compose's name for the service's first container
IMAGE = "localhost/digits-serve:container-test"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# This machine's podman: runc (crun fails on its cgroups) and explicit rlimits (the defaults exceed
# the host's hard limits). docker-compose.yml sets the same rlimits for the running containers.
PODMAN = ["podman", "--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
STOP_TIMEOUT = 30  # seconds before podman would SIGKILL; gunicorn's graceful timeout is 20


class Failed(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", help="base image to build on (default: the local debootstrap image "
                                             "that scripts/container-host.sh builds once and caches)")
    parser.add_argument("--mnist-dir", default=os.environ.get("MNIST_DIR") or str(REPO.parent / "shared/data/mnist"),
                        help="folder with the MNIST gzip IDX files (default: $MNIST_DIR, else ../shared/data/mnist)")
    parser.add_argument("--digits", type=int, default=50, help="MNIST test digits to classify (default: 50)")
    parser.add_argument("--healthy-timeout", type=float, default=180, help="seconds to wait for healthy (default: 180)")
    parser.add_argument("--keep", action="store_true", help="leave the container running (default: tear down)")
    parser.add_argument("--report", default=str(REPO / "reports/container-test.json"),
                        help="where to write the measurements (default: reports/container-test.json)")
    args = parser.parse_args()

    # The host's model folder is mounted (deploy/compose.models.yml): a copy of models/, so that the
    # rollout step can publish new versions into it while the container serves.
    models = Path(tempfile.mkdtemp(prefix="digits-ctest-models-"))
    shutil.copytree(REPO / "models", models, dirs_exist_ok=True)
    os.chmod(models, 0o755)
    compose = [str(Path(sys.executable).parent / "podman-compose"), "--podman-args=--runtime=runc",
               "-p", PROJECT, "-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "deploy/compose.models.yml")]
    port = free_port()
    env = {**os.environ, "IMAGE": IMAGE, "PUBLISH_ADDR": "127.0.0.1", "PUBLISH_PORT": str(port),
           "MODELS_DIR": str(models)}
    report: dict = {"image": IMAGE}
    try:
        base = step("base image", report, lambda: base_image(args.base_image))
        report["base_image"] = base
        run(compose + ["down", "-t", "5"], env=env, check=False, quiet=True)  # leftovers of an interrupted run
        step("image build", report, lambda: build(base, report))
        report["image_size_mb"] = round(int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE)) / 1e6, 1)
        print(f"  image size: {report['image_size_mb']} MB (uncompressed)")
        check_image_config()

        def up() -> None:
            run(compose + ["up", "-d", "--no-build", SERVICE], env=env, quiet=True)
            wait_healthy(args.healthy_timeout)

        step("compose up -> healthy", report, up)
        base_url = f"http://127.0.0.1:{port}"
        step("classify MNIST digits", report, lambda: classify(base_url, Path(args.mnist_dir), args.digits, report))
        step("roll out a new version under load (SIGHUP), refuse a corrupt one", report,
             lambda: rollout(base_url, models, Path(args.mnist_dir), report))
        step("non-root, no capabilities, read-only root", report, check_hardening)
        if args.keep:
            print(f"kept running: {base_url} (tear down: {' '.join(compose)} down)")
            return 0
        step("SIGTERM -> clean exit", report, lambda: stop_cleanly(report))
    except Failed as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        show_logs()
        return 1
    finally:
        if not args.keep:
            run(compose + ["down", "-t", "5"], env=env, check=False, quiet=True)
            shutil.rmtree(models, ignore_errors=True)
        write_report(Path(args.report), report)
    print("container test passed")
    return 0


# ---- steps -----------------------------------------------------------------------------------------

def step(name: str, report: dict, fn):
    print(f"== {name}", flush=True)
    t = time.monotonic()
    result = fn()
    report.setdefault("seconds", {})[name] = round(time.monotonic() - t, 1)
    print(f"   ok ({report['seconds'][name]} s)", flush=True)
    return result


def base_image(given: str | None) -> str:
    """The given base image, else the cached local one (scripts/container-host.sh builds it if absent)."""
    if given:
        return given
    proc = subprocess.run([str(REPO / "scripts/container-host.sh")], stdout=subprocess.PIPE, text=True, timeout=900)
    expect(proc.returncode == 0, f"scripts/container-host.sh exited {proc.returncode}")
    return proc.stdout.strip().splitlines()[-1]


def build(base: str, report: dict) -> None:
    cmd = ["timeout", "1800", *PODMAN, "build",  # bounded: 30 minutes
           "--format", "docker",  # the docker image format keeps HEALTHCHECK (OCI has no such field)
           *ULIMITS,
           # pip inside the build reaches PyPI only through this machine's TLS setup.
           "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "--build-arg", f"PIP_CERT={CA_BUNDLE}",
           "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE, str(REPO)]
    log = REPO / "reports/container-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = cached = 0
    with open(log, "w") as out, subprocess.Popen(cmd, cwd=REPO, text=True, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:  # the whole log goes to the file, the steps to the terminal
            out.write(line)
            if " STEP " in line:
                steps += 1
                print("  " + line.rstrip()[:110], flush=True)
            elif line.startswith("--> Using cache"):
                cached += 1
        proc.wait(timeout=60)
    expect(proc.returncode == 0, f"podman build exited {proc.returncode}; see {log.relative_to(REPO)}")
    report["build_steps_cached"] = f"{cached}/{steps - 2}"  # the two FROM steps are never 'cached'
    print(f"  build steps from cache: {report['build_steps_cached']}")


def check_image_config() -> None:
    image = json.loads(podman("image", "inspect", IMAGE))[0]
    cfg = image["Config"]
    expect(cfg.get("User") not in (None, "", "0", "root") and not cfg["User"].startswith("0:"),
           f"image USER is {cfg.get('User')!r}")
    health = " ".join((image.get("Healthcheck") or {}).get("Test") or [])
    expect("/readyz" in health, f"image HEALTHCHECK does not probe /readyz: {health!r}")
    expect(cfg.get("Cmd") == ["python3", "deploy/front.py"], f"image CMD is {cfg.get('Cmd')}")


def wait_healthy(timeout: float) -> None:
    """Run the image's healthcheck until it passes. podman schedules healthchecks with systemd timers,
    which this machine lacks, so the test runs them itself (`podman healthcheck run`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}}", CONTAINER)
        expect(state in ("created", "running"), f"container is {state} before becoming healthy")
        if run(PODMAN + ["healthcheck", "run", CONTAINER], check=False, quiet=True, timeout=30) == "0":
            break
        time.sleep(1)
    health = podman("inspect", "--format", "{{.State.Health.Status}}", CONTAINER)
    expect(health == "healthy", f"not healthy after {timeout:.0f} s (health: {health})")


def classify(base_url: str, mnist_dir: Path, n: int, report: dict) -> None:
    ready = get_json(base_url + "/readyz")
    model = ready["model"]
    print(f"  serving {model['name']} v{model['version']}")
    test = load_split(mnist_dir, "test")
    images, labels = test.images[:n], [int(x) for x in test.labels[:n]]

    # One digit, as a user uploads it: dark ink on white paper, larger than 28x28.
    resp = requests.post(base_url + "/predict", files={"image": ("digit.png", upload_png(images[0]), "image/png")},
                         timeout=30)
    expect(resp.status_code == 200, f"/predict answered {resp.status_code}: {resp.text[:300]}")
    one = resp.json()
    print(f"  one digit: label {labels[0]}, predicted {one['digit']} (confidence {one['confidence']:.3f})")
    expect(one["digit"] == labels[0], f"digit {labels[0]} classified as {one['digit']}")

    # A batch, to compare the accuracy with what the model's manifest claims.
    files = [("images", (f"d{i}.png", upload_png(img), "image/png")) for i, img in enumerate(images)]
    resp = requests.post(base_url + "/predict", files=files, timeout=60)
    expect(resp.status_code == 200, f"batch /predict answered {resp.status_code}: {resp.text[:300]}")
    predicted = [p["digit"] for p in resp.json()["predictions"]]
    accuracy = sum(p == t for p, t in zip(predicted, labels)) / n
    claimed = get_json(base_url + "/v1/models")["models"][0]["metrics"].get("test_acc")
    floor = (claimed - 0.1) if claimed else 0.5  # n=50 digits: a margin of ~3 standard deviations
    report.update(digits=n, accuracy=accuracy, manifest_test_acc=claimed)
    print(f"  {n} digits: accuracy {accuracy:.2f} (manifest: test accuracy {claimed}; floor {floor:.2f})")
    expect(accuracy >= floor, f"accuracy {accuracy:.2f} on {n} MNIST test digits is below {floor:.2f}")


def rollout(base_url: str, models: Path, mnist_dir: Path, report: dict) -> None:
    """Publish version 2 into the mounted folder and SIGHUP the container (deploy/front.py, PID 1, passes it to gunicorn) while
    clients keep asking: every request answered, then version 2 answers. Then a version 3 whose
    params do not match their checksum, SIGHUP again: refused, version 2 keeps serving."""
    from export.publish import publish, staging_dir

    name_dir = next(p for p in models.iterdir() if p.is_dir())
    newest = name_dir / str(max(int(p.name) for p in name_dir.iterdir() if p.name.isdigit()))
    manifest = json.loads((newest / "manifest.json").read_text())
    png = upload_png(load_split(mnist_dir, "test").images[0])
    seen: dict = {}
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                r = requests.post(base_url + "/predict", files={"image": ("d.png", png, "image/png")}, timeout=30)
                key = r.json()["model"]["version"] if r.status_code == 200 else r.status_code
            except requests.RequestException as e:
                key = type(e).__name__
            seen[key] = seen.get(key, 0) + 1

    def new_version(corrupt: bool) -> int:
        staging = staging_dir(models, name_dir.name)
        for role in ("model", "params"):
            shutil.copy(newest / manifest["files"][role], staging)
        folder = publish(staging, json.loads(json.dumps(manifest)))
        for p in [folder, *folder.iterdir()]:  # world-readable for the container's user (mkstemp/mkdtemp)
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        if corrupt:
            params = folder / manifest["files"]["params"]
            raw = bytearray(params.read_bytes())
            raw[len(raw) // 2] ^= 0x01
            params.write_bytes(bytes(raw))
        return int(folder.name)

    def served_everywhere(version: int) -> bool:  # every worker: the gauge counts workers per version
        text = requests.get(base_url + "/metrics", timeout=10).text
        lines = [l for l in text.splitlines() if l.startswith("digits_model_served{")]
        return all(f'version="{version}"' in l or l.endswith(" 0.0") for l in lines) and \
            any(f'version="{version}"' in l and not l.endswith(" 0.0") for l in lines)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        v2 = new_version(corrupt=False)
        t0 = time.monotonic()
        run(PODMAN + ["kill", "--signal", "HUP", CONTAINER], quiet=True)
        wait(lambda: served_everywhere(v2), 60, f"every worker serving version {v2}")
        report["rollout_s"] = round(time.monotonic() - t0, 2)
        v3 = new_version(corrupt=True)
        run(PODMAN + ["kill", "--signal", "HUP", CONTAINER], quiet=True)
        wait(lambda: any(v["version"] == v3 and v["state"] == "refused"
                         for v in get_json(base_url + "/v1/models")["models"][0]["versions"]), 60,
             f"version {v3} refused")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    report["rollout_answers"] = {str(k): n for k, n in seen.items()}
    print(f"  version {v2} on every worker {report['rollout_s']} s after SIGHUP; corrupt version {v3} refused; "
          f"answers by version or failure: {report['rollout_answers']}")
    expect(set(seen) <= {v2 - 1, v2}, f"failed or unexpected answers during the rollout: {seen}")
    expect(get_json(base_url + "/readyz")["model"]["version"] == v2, "version 2 no longer served")


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        expect(time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s")
        time.sleep(0.3)


def check_hardening() -> None:
    inspect = json.loads(podman("inspect", "--format", "{{json .HostConfig}}", CONTAINER))
    expect(inspect.get("ReadonlyRootfs") is True, "the root filesystem is not mounted read-only")
    limits = {k: inspect.get(k) for k in ("Memory", "NanoCpus", "PidsLimit")}
    expect(all(limits.values()), f"resource limits missing: {limits}")
    expect(inspect.get("RestartPolicy", {}).get("Name") == "unless-stopped", f"restart: {inspect.get('RestartPolicy')}")
    print(f"  limits: {limits['Memory'] / 2**30:.1f} GiB, {limits['NanoCpus'] / 1e9:g} CPUs, {limits['PidsLimit']} pids")
    # Every process in the container: deploy/front.py (PID 1), nginx, gunicorn's master and workers.
    procs = container_sh("for s in /proc/[0-9]*/status; do "
                         "awk '/^(Name|Uid|CapEff|NoNewPrivs):/{printf \"%s \", $2} END{print \"\"}' $s; done")
    rows = [line.split() for line in procs.splitlines() if line.strip()]
    rows = [r for r in rows if r[0] not in ("sh", "awk")]  # the probe itself
    expect(any(r[0] == "gunicorn" for r in rows), f"no gunicorn process in {rows}")
    expect(any(r[0] == "nginx" for r in rows), f"no nginx process in {rows}")
    for name, uid, cap_eff, no_new_privs in rows:
        expect(uid != "0", f"{name} runs as root")
        expect(int(cap_eff, 16) == 0, f"{name} has capabilities {cap_eff}")
        expect(no_new_privs == "1", f"{name} may gain privileges (NoNewPrivs={no_new_privs})")
    pid1 = container_sh("tr '\\0' ' ' </proc/1/cmdline")
    expect("deploy/front.py" in pid1, f"PID 1 is not deploy/front.py: {pid1}")
    print(f"  {len(rows)} processes, uid {sorted({r[1] for r in rows})}, no capabilities; PID 1: {pid1.strip()}")
    # Read-only means read-only even for uid 0 (which has no capabilities here either).
    root_mount = container_sh("awk '$2 == \"/\" {print $4}' /proc/mounts")
    expect("ro" in root_mount.split(","), f"/ is mounted {root_mount.strip()}")
    denied = run(PODMAN + ["exec", "--user", "0", CONTAINER, "touch", "/app/probe"], check=False, capture=True)
    expect("Read-only file system" in denied, f"writing /app as root: {denied.strip()!r}")
    container_sh("touch /tmp/probe && rm /tmp/probe")  # the tmpfs is writable
    tools = container_sh("for t in gcc cc c++ g++ make; do command -v $t || true; done")
    expect(not tools.strip(), f"build tools in the image: {tools.split()}")
    caches = run(PODMAN + ["exec", "--user", "0", CONTAINER, "sh", "-c",
                           "ls -d /root/.cache /var/lib/apt/lists/*Packages* /var/cache/apt/*.bin 2>/dev/null || true"],
                 capture=True)
    expect(not caches.strip(), f"caches left in the image: {caches.split()}")


def stop_cleanly(report: dict) -> None:
    """`podman stop` sends the image's STOPSIGNAL (SIGTERM) and waits; exit code 0 proves a clean exit."""
    t = time.monotonic()
    run(PODMAN + ["stop", "-t", str(STOP_TIMEOUT), CONTAINER], quiet=True, timeout=STOP_TIMEOUT + 30)
    report["stop_s"] = round(time.monotonic() - t, 1)
    state = json.loads(podman("inspect", "--format", "{{json .State}}", CONTAINER))
    logs = run(["podman", "logs", CONTAINER], capture=True)
    print(f"  exit code {state['ExitCode']} after {report['stop_s']} s")
    expect("Handling signal: term" in logs, "gunicorn did not log receiving SIGTERM")
    expect(state["ExitCode"] == 0 and not state.get("OOMKilled"), f"exit code {state['ExitCode']}")
    expect(report["stop_s"] < STOP_TIMEOUT, "the stop took as long as the SIGKILL timeout")
    expect(state["Status"] == "exited", f"after the stop the container is {state['Status']} (restarted?)")


# ---- helpers ---------------------------------------------------------------------------------------

def upload_png(mnist_digit: np.ndarray, size: int = 140) -> bytes:
    """An MNIST digit as a user would upload it: inverted to dark ink on white, scaled up, PNG."""
    img = Image.fromarray(255 - mnist_digit).resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def get_json(url: str) -> dict:
    resp = requests.get(url, timeout=10)
    expect(resp.status_code == 200, f"GET {url} answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(*args: str) -> str:
    return run(["podman", *args], capture=True).strip()


def container_sh(script: str) -> str:
    return run(PODMAN + ["exec", CONTAINER, "sh", "-c", script], capture=True)


def run(cmd: list[str], *, env=None, check=True, capture=False, quiet=False, timeout: float = 300) -> str:
    """Run a command; return its output (capture=True) or its exit status as a string."""
    try:
        proc = subprocess.run(cmd, env=env, cwd=REPO, text=True, timeout=timeout,
                              stdout=subprocess.PIPE if capture or quiet else None,
                              stderr=subprocess.STDOUT if capture or quiet else None)
    except subprocess.TimeoutExpired:
        raise Failed(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from None
    if check and proc.returncode != 0:
        raise Failed(f"exit {proc.returncode}: {' '.join(cmd)}\n{(proc.stdout or '')[-3000:]}")
    return proc.stdout if capture else str(proc.returncode)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def show_logs() -> None:
    if shutil.which("podman") and run(["podman", "container", "exists", CONTAINER], check=False, quiet=True) == "0":
        print(f"--- last log lines of {CONTAINER}:", file=sys.stderr)
        print(run(["podman", "logs", "--tail", "40", CONTAINER], check=False, capture=True), file=sys.stderr)


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
