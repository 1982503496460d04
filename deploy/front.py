"""The container's entry point: nginx in front of gunicorn's sync workers, under one PID 1.

nginx reads every request body before it passes the request on, so a client that trickles its
upload holds an nginx connection (cheap) and never a worker; behind it sync workers serve faster
and with a shorter tail than threaded ones without a proxy (README, Benchmarks: *Sync workers behind
nginx*). The proxy is deploy/nginx.conf beside this file, the compose `lb` profile's own file, pointed at gunicorn
on loopback (nginx_conf).

    python3 deploy/front.py        # from the repository root: nginx on $HOST:$PORT, gunicorn on 127.0.0.1:$UPSTREAM_PORT

Signals: SIGTERM or SIGINT stops both gracefully (gunicorn finishes and drains its requests, nginx
its connections) and the exit code is 0 when both stopped cleanly; SIGHUP goes to gunicorn (every
worker reloads its model, serve/gunicorn.conf.py). If either process dies, the other is stopped and
the container exits non-zero, so its restart policy brings both back. It lives outside serve/, whose
code never starts a process (tests/test_attack_surface.py).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

NGINX_CONF = Path(__file__).resolve().with_name("nginx.conf")


def nginx_conf(conf: str, upstream_port: int, listen: str, folder: Path) -> str:
    """The compose proxy's nginx.conf for one gunicorn on loopback: its upstream, where it listens
    (host:port), one worker, no access log (the app writes one line per request), temporary files
    in `folder`. Raises ValueError if the file no longer holds what is rewritten."""
    for old, new in (("server replica:8000", f"server 127.0.0.1:{upstream_port}"),
                     ("listen 8080;", f"listen {listen};"),
                     ("worker_processes auto;", "worker_processes 1;"),
                     ("access_log /dev/stdout;", "access_log off;"),
                     ("/tmp/", f"{folder}/")):
        if old not in conf:
            raise ValueError(f"nginx.conf no longer holds {old!r}")
        conf = conf.replace(old, new)
    return conf


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SystemExit("nginx is not installed (Debian: apt-get install nginx-light)")
    return found


def start_nginx(upstream_port: int, listen: str, **popen) -> tuple[subprocess.Popen, Path]:
    """nginx in the foreground with its conf and temporary files in a fresh folder (returned)."""
    # World-readable: when started by root, nginx's workers run as another user and must reach it.
    folder = Path(tempfile.mkdtemp(prefix="nginx-"))
    folder.chmod(0o755)
    (folder / "nginx.conf").write_text(nginx_conf(NGINX_CONF.read_text(), upstream_port, listen, folder))
    # -e: the error log from the first line on (the compiled-in path is not writable in the container).
    cmd = [nginx_binary(), "-e", "stderr", "-c", str(folder / "nginx.conf"), "-g", "daemon off;"]
    return subprocess.Popen(cmd, **popen), folder


def main() -> int:
    listen = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
    upstream = int(os.environ.get("UPSTREAM_PORT", "8001"))
    beside = Path(sys.executable).with_name("gunicorn")  # the venv's, whatever PATH says
    gunicorn = subprocess.Popen([str(beside) if beside.exists() else "gunicorn", "-c", "serve/gunicorn.conf.py",
                                 "serve.app:create_app()"], env={**os.environ, "HOST": "127.0.0.1", "PORT": str(upstream)})
    nginx, folder = start_nginx(upstream, listen)
    stopping = False

    def stop(sig=None, frame=None):
        nonlocal stopping
        stopping = True
        for proc, how in ((nginx, signal.SIGQUIT), (gunicorn, signal.SIGTERM)):  # SIGQUIT: nginx's graceful stop
            if proc.poll() is None:
                proc.send_signal(how)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda sig, frame: gunicorn.send_signal(signal.SIGHUP))
    # No siginterrupt(False) here: os.wait() must be interrupted for a handler to run (PEP 475 retries it).
    try:
        codes, crashed = {}, None
        while len(codes) < 2:
            try:
                pid, status = os.wait()
            except ChildProcessError:  # stop()'s poll() reaped the last one: its code is on the Popen
                codes.update({name: 1 if proc.returncode is None else proc.returncode
                              for name, proc in (("gunicorn", gunicorn), ("nginx", nginx)) if name not in codes})
                break
            for name, proc in (("gunicorn", gunicorn), ("nginx", nginx)):
                if proc.pid == pid:
                    proc.returncode = codes[name] = os.waitstatus_to_exitcode(status)
                    if not stopping:  # it died on its own: take the other down too
                        crashed = name
                        print(f"deploy/front.py: {name} exited with {codes[name]}; stopping", file=sys.stderr, flush=True)
                        stop()
        if crashed:
            return codes[crashed] or 1
        return next((c for c in codes.values() if c), 0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
