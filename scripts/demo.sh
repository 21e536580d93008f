#!/usr/bin/env bash
# Set up everything from the lock file and run the main job: a paper session on the bundled data.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_uv.sh
quorum_sync
exec $UV run quorum demo "$@"
