# syntax=docker/dockerfile:1
# The digit-recognition service: gunicorn + Flask + Paddle Inference, serving the committed model.
#
#   docker build -t digits-serve .                       # python:3.11-slim
#   docker build --build-arg BASE_IMAGE=my/python:3.11 .  # any Debian-based image with python3 (3.11)
#                                                         # and python3-venv, e.g. a debootstrap'd bookworm
# Both stages use the same base, so the venv's interpreter symlink is valid in the final image
# (/usr/local/bin/python3 in python:3.11-slim, /usr/bin/python3 in Debian's own python3).
ARG BASE_IMAGE=python:3.11-slim

# ---- build: a venv with the pinned dependencies (pip and its cache stay in this stage) ----
FROM ${BASE_IMAGE} AS build
# Optional, for build machines behind a TLS-inspecting proxy: the path of a CA bundle for pip, made
# available to the build with a mount (e.g. `podman build -v /etc/ssl/certs/ca-certificates.crt:...`).
# Unset or empty, pip uses its own CA bundle. It lives in this stage only, never in the final image.
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements.txt constraints.txt ./
# The pip cache is a build cache mount: reused between builds, never part of a layer. pip compiles
# .pyc files on purpose: the container's root filesystem is read-only, so without them every worker
# would recompile Paddle's Python modules on each start.
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install -r requirements.txt -c constraints.txt

# ---- runtime: the base image, libgomp, the venv, the service code and the committed model ----
FROM ${BASE_IMAGE}
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_DIR=/app/models \
    WORKER_TMP_DIR=/tmp \
    UPSTREAM_PORT=8001 \
    THREADS=1 \
    BATCHING=0
# PROMETHEUS_MULTIPROC_DIR is left unset: serve/gunicorn.conf.py then creates a fresh, private one
# under /tmp at each start. docker-compose.yml sets it to its own tmpfs.

# Paddle's bundled libcommon.so/libdnnl.so link against the system OpenMP runtime (libgomp.so.1),
# which neither python:3.11-slim nor a minimal Debian has. DL3008 (pin apt versions) is ignored:
# libgomp1 comes from the base image's own Debian release, which fixes its version; a pinned version
# string would break the build as soon as that release ships an update and drops the old one.
# nginx-light is the buffering front of deploy/front.py (slow clients never reach a worker); the
# policy-rc.d stub keeps its package from starting a server during the build.
# hadolint ignore=DL3008
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 nginx-light \
    && rm /usr/sbin/policy-rc.d \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code and model stay root-owned: the service user can read them, not change them. The export writes
# version folders 0700 (mkdtemp, then rename), so grant read access where it is missing; only those
# entries change, so the model's files are not copied into a second layer.
COPY serve/ serve/
COPY deploy/front.py deploy/nginx.conf deploy/
COPY models/ models/
RUN find serve models \( -type d ! -perm -0555 -o -type f ! -perm -0444 \) -exec chmod a+rX {} + \
    && python3 -m compileall -q serve

USER 10001:10001
EXPOSE 8000
# Ready means a worker has loaded and warmed up the model; /healthz would only say the process is up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; u = f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/readyz\"; sys.exit(urllib.request.urlopen(u, timeout=2).status != 200)"]
# deploy/front.py is PID 1 (exec form): nginx on $PORT in front of gunicorn's sync workers on
# 127.0.0.1:$UPSTREAM_PORT (THREADS=1, BATCHING=0: faster behind a buffering proxy, README). SIGTERM
# from `docker stop` stops both gracefully; SIGHUP reaches gunicorn (model reload).
STOPSIGNAL SIGTERM
CMD ["python3", "deploy/front.py"]
