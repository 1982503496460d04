"""gunicorn settings for `gunicorn -c serve/gunicorn.conf.py 'serve.app:create_app()'`.

Every value comes from the environment; defaults fit the machine. The app (and its predictor) is
created in each worker after fork: preload_app stays False.
"""
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WORKERS", multiprocessing.cpu_count()))
# Threaded workers by default: a client that trickles its body holds one thread, not the worker, so
# 64 of them leave /predict its latency (tests/test_slow_clients.py; make bench measures it), and
# concurrent requests' images meet in one inference call (serve/batcher.py). THREADS=1: sync workers.
threads = int(os.environ.get("THREADS", "64"))
# How often a thread holding the GIL is asked to pass it on (Python's default: 5 ms). A worker's
# threads take turns decoding and preprocessing; at 0.5 ms /predict answered 305 against 272 req/s
# at concurrency 8, 377 against 314 with 64 trickling clients (medians of 5 interleaved rounds,
# p99 unchanged; 0.2 ms was slower: README). Workers fork from this process and keep it.
sys.setswitchinterval(float(os.environ.get("GIL_SWITCH_MS", "0.5")) / 1000)
worker_class = "gthread" if threads > 1 else "sync"
preload_app = False
timeout = int(os.environ.get("TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("KEEPALIVE", "5"))
max_requests = int(os.environ.get("MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", "1000"))
limit_request_line = int(os.environ.get("LIMIT_REQUEST_LINE", "4094"))
limit_request_fields = int(os.environ.get("LIMIT_REQUEST_FIELDS", "64"))
limit_request_field_size = int(os.environ.get("LIMIT_REQUEST_FIELD_SIZE", "8190"))
# gunicorn's control socket (gunicornc: reload, add/kill workers, show config...) is an admin
# interface, and every instance of a user would share its default path: off. Signals do the same.
control_socket_disable = True
worker_tmp_dir = os.environ.get("WORKER_TMP_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Off by default: the app writes one JSON line per request (request id, route, status, duration,
# model version); ACCESS_LOG=- adds gunicorn's line, with the client's address and User-Agent.
accesslog = os.environ.get("ACCESS_LOG", "") or None
errorlog = "-"
access_log_format = (
    '{"ts":"%(t)s","remote":"%(h)s","method":"%(m)s","path":"%(U)s","query":"%(q)s","status":%(s)s,'
    '"bytes":%(B)s,"duration_us":%(D)s,"request_id":"%({x-request-id}o)s","user_agent":"%(a)s"}'
)


def _json_access_logger():
    """gunicorn's logger with every value escaped as JSON string content. Stock gunicorn escapes
    only '"': a backslash or a %0A in a path, a query or a User-Agent broke the line in two."""
    from gunicorn.glogging import Logger, SafeAtoms

    class JsonAtoms(SafeAtoms):
        def __init__(self, atoms):
            dict.__init__(self, {k: json.dumps(v)[1:-1] if isinstance(v, str) else "null" if v is None else v
                                 for k, v in atoms.items()})

    return type("JsonAccessLogger", (Logger,), {"atoms_wrapper_class": JsonAtoms})


logger_class = _json_access_logger()

# Prometheus multiprocess mode: workers write samples into this folder; it must be empty at start.
_prom_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _prom_dir:
    _prom_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="digits-prom-")


# The gunicorn master's PID, for `make reload` (kill -HUP); unset: no pidfile.
pidfile = os.environ.get("PIDFILE") or None


def on_starting(server):
    for entry in os.listdir(_prom_dir):
        path = os.path.join(_prom_dir, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    _hup_reloads_models(server)


def _hup_reloads_models(server):
    """SIGHUP to the master: every worker reloads its model in place (serve/service.py: load, verify
    and warm up the chosen version beside the served one, then swap; a broken one is refused and the
    current one keeps serving). gunicorn's own HUP re-reads this file, starts new workers and stops
    the old ones at once, before the new ones have imported Paddle and loaded the model: requests
    wait in the backlog meanwhile. Here HUP reloads models only; a changed setting takes a restart."""
    def handle_hup():
        server.log.info("Hang up: workers reload the model")
        server.kill_workers(signal.SIGHUP)

    server.handle_hup = handle_hup  # the master's loop calls handle_<signal name>()


def post_fork(server, worker):
    """From the moment gunicorn sets a worker's signals (before it loads the app), SIGHUP asks for a
    model reload instead of killing it (SIG_DFL), even while the worker is still starting."""
    init_signals = worker.init_signals

    def init_signals_with_hup():
        init_signals()
        signal.signal(signal.SIGHUP, lambda sig, frame: _request_reload(worker))
        signal.siginterrupt(signal.SIGHUP, False)

    worker.init_signals = init_signals_with_hup


def _request_reload(worker):
    service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("digits")
    if service is None:  # still loading the app: it may have listed the versions before this one
        worker.reload_pending = True
    else:
        service.request_reload()


def _watch_models(worker):
    service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("digits")
    if service is not None:
        if getattr(worker, "reload_pending", False):
            service.request_reload()
        service.watch()  # the thread that reloads on SIGHUP and every MODEL_POLL_S seconds


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Once a worker has loaded the app: give the signals back to gunicorn, and let SIGTERM drain."""
    if "paddle" in sys.modules:
        # Paddle's C++ handlers take SIGTERM (and SIGABRT, SIGSEGV...) and abort the worker, cutting
        # in-flight responses in half; gunicorn's own handlers make SIGTERM a graceful stop again.
        sys.modules["paddle"].disable_signal_handler()
    worker.init_signals()
    _watch_models(worker)
    if worker_class == "sync":
        _drain_on_sigterm(worker)


def _drain_on_sigterm(worker):
    """SIGTERM: serve the connections the kernel has already queued, then stop listening and exit.

    Stock gunicorn stops accepting at once, and whatever is queued in the listen backlog is reset
    when the last worker exits. Here the sync loop keeps accepting until none is waiting (at most
    half the graceful timeout under endless load), and the worker closes its listening socket as
    soon as the loop ends, so that new connections are refused rather than queued.
    """
    stopping = []
    parent_alive, notify, run = worker.is_parent_alive, worker.notify, worker.run

    def is_parent_alive():  # the sync loop asks this whenever no connection is waiting
        return not stopping and parent_alive()

    def notify_or_give_up():  # called before each accept: bounds the drain
        if stopping and time.monotonic() > stopping[0]:
            worker.alive = False
        notify()

    def run_then_stop_listening():
        try:
            run()
        finally:
            for s in worker.sockets:
                s.close()

    worker.is_parent_alive, worker.notify, worker.run = is_parent_alive, notify_or_give_up, run_then_stop_listening
    signal.signal(signal.SIGTERM, lambda sig, frame: stopping.append(time.monotonic() + graceful_timeout / 2))
    signal.siginterrupt(signal.SIGTERM, False)
