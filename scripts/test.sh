#!/usr/bin/env bash
# Set up everything from the lock file and run the gates: ruff, mypy (strict on the whole package), pytest.
# Needs Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_uv.sh
quorum_sync
$UV run ruff check src tests benchmarks
$UV run mypy
$UV run pytest "$@"
