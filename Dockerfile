# syntax=docker/dockerfile:1
# The digit-recognition service: gunicorn + Flask + Paddle Inference, serving the committed model.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_DIR=/app/models \
    WORKER_TMP_DIR=/tmp \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN python3 -m venv /opt/venv \
    && pip install --no-compile -r requirements.txt -c constraints.txt \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

COPY serve/ serve/
COPY models/ models/

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /tmp/prometheus && chown app /tmp/prometheus
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os,urllib.request,sys; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/readyz', timeout=2).status != 200)"]
CMD ["gunicorn", "-c", "serve/gunicorn.conf.py", "serve.app:create_app()"]
