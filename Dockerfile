# Quorum service image: the bot (engine + health/status/metrics API) on Python 3.11.
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LOG_FORMAT=json \
    API_HOST=0.0.0.0 \
    API_PORT=8000

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
# Dependencies first (cached layer), exactly as locked.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
COPY migrations ./migrations
COPY prompts ./prompts
COPY data ./data
COPY health_server.py setup_database.py ./
RUN uv sync --frozen --no-dev

RUN useradd --create-home --uid 10001 quorum && mkdir -p /app/var && chown -R quorum:quorum /app/var
USER quorum

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/health\", timeout=4)" || exit 1

# Migrations are idempotent: apply them, then run the service.
CMD ["sh", "-c", "python setup_database.py && quorum run"]
