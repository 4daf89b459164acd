# twin in a container: the web app on port 8765, all data in the /data volume.
#
#   docker build -t twin .
#   docker run -d --name twin -p 127.0.0.1:8765:8765 -v twin-data:/data twin
#   open http://127.0.0.1:8765/
#
# The app listens on 0.0.0.0 inside the container only; publish the port on 127.0.0.1 as above
# (or reach it through an SSH tunnel). Reaching it under another name needs that name in
# TWIN_ALLOWED_HOSTS, e.g. -e TWIN_ALLOWED_HOSTS='["twin.home.arpa"]'; keep the published port
# equal to TWIN_PORT, since the Host check compares it.
#
# GPU build (CUDA wheels of the same torch; run with --gpus all):
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t twin:cuda .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# torch goes in first and on its own, from the index that matches the hardware: asked for
# through litgpt, pip would pull the multi-GB CUDA build even for a CPU image.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /app
COPY pyproject.toml README.md ./
COPY twin ./twin
# Editable, so that the package finds migrations/ and web/ next to it in /app.
RUN pip install -e .
COPY migrations ./migrations
COPY web ./web
COPY samples ./samples
COPY alembic.ini ./
COPY docker/entrypoint.sh ./docker/entrypoint.sh

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 twin \
    && useradd --system --uid 10001 --gid twin --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin twin \
    && mkdir -p /data \
    && chown twin:twin /data \
    && chmod 0700 /data
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TWIN_DATA_DIR=/data \
    TWIN_HOST=0.0.0.0 \
    TWIN_PORT=8765
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8765
# The login page answers without a session; urllib follows its redirect to /setup on first run.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TWIN_PORT', '8765') + '/healthz', timeout=4)"]
ENTRYPOINT ["/bin/sh", "/app/docker/entrypoint.sh"]
