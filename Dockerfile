# Quorum service image: the bot (engine + health/status/metrics API) on Python 3.11.
#
#   docker build -t quorum .                      # or: podman build --format docker -t quorum .
#
# Behind a proxy that intercepts TLS, hand the build your CA bundle as a build secret; it is used
# by the downloads of the build stage only and is never written into a layer:
#
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t quorum .
#
# Podman: build with `--format docker`, or the HEALTHCHECK below is dropped (the OCI image format
# has no health check; docker-compose.yml declares it too).

# --- build: resolve the locked environment into /opt/venv ---------------------------------------
FROM docker.io/library/python:3.11-slim AS build

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
# Dependencies first (a layer that survives source changes), exactly as locked; then the project.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca PIP_CERT=/run/secrets/ca; fi; \
    pip install --no-cache-dir uv==0.13.9 \
    && uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    uv sync --frozen --no-dev

# --- runtime: the environment and what the service reads at run time, no build tools or caches ---
FROM docker.io/library/python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    LOG_FORMAT=json \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    VAR_DIR=/app/var

RUN useradd --create-home --uid 10001 quorum \
    && mkdir -p /app/var && chown quorum:quorum /app/var
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# the project is installed editable from /app/src: it finds migrations/ and prompts/ beside it
COPY src ./src
COPY migrations ./migrations
COPY prompts ./prompts
COPY data ./data
COPY health_server.py setup_database.py ./
# byte-compiled once here: with PYTHONDONTWRITEBYTECODE every start would compile src/ again
RUN python -m compileall -q src
USER quorum

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/health\", timeout=4)"]

# Quorum itself is the entry process (exec form, no shell in between), so `docker stop`'s SIGTERM
# reaches it: it finishes its step and exits 0 within seconds. `quorum run` applies the migrations
# (idempotent) before it trades.
STOPSIGNAL SIGTERM
CMD ["quorum", "run"]
