#!/usr/bin/env bash
# The production image, built and run for real with Podman (Docker's engine does not run here).
#
# 1. A stand-in for the Dockerfile's base image `docker.io/library/python:3.11-slim`, made with
#    debootstrap: Debian bookworm (the slim image's Debian) with its Python 3.11, pip,
#    ca-certificates, netbase and tzdata; `python`, `python3`, `python3.11`, `pip` and `pip3` on
#    /usr/local/bin (where the official image has them) and no PEP 668 lock. How faithful: the same
#    Debian release, Python minor version and tools on the same paths; not the same Python build
#    (Debian's 3.11.2 with dist-packages instead of a source build of the latest 3.11 with
#    site-packages) and ~70 MB larger. The Dockerfile never bends to the stand-in.
# 2. `podman build --format docker` of the real Dockerfile (this machine intercepts TLS: its CA
#    bundle goes in as the build secret `ca`, as a user behind a corporate proxy would do; it is
#    never stored in a layer — checked below).
# 3. `quorum demo --days 1` in the image, as its non-root user, against the embedded Postgres:
#    /health from the host through the published port, the image's health check, uid 10001, then
#    SIGTERM (`podman stop`) must end it cleanly (exit 0) within seconds.
# Everything lives under one scratch directory (Podman's storage included) removed at the end.
# Prints each stage's time and a JSON summary line; exits 1 when a check fails.
#
# With --compose it then starts docker-compose.yml itself with podman-compose (from PyPI, in a
# scratch virtual environment): stand-ins for its Postgres and Redis images are built from the
# same Debian base (Debian's postgresql-15 behind an entrypoint honouring POSTGRES_USER/PASSWORD/DB,
# and redis-server), tagged with the compose file's fully qualified names, and the stack must come
# up in order: Postgres and Redis healthy, then the bot, whose /health shows the database and
# Redis answering (the exchange is unreachable from here: /health names market_data, and the
# container stays up instead of restarting).
#
#   bash scripts/container_test.sh [--keep] [--compose]   # --keep: leave the scratch directory
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEEP=""; COMPOSE=""
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=--keep ;;
        --compose) COMPOSE=1 ;;
        *) echo "usage: $0 [--keep] [--compose]" >&2; exit 2 ;;
    esac
done
T0=$(date +%s)
stage() { echo "=== container: $1 ($(( $(date +%s) - T0 ))s)"; }
fail() { echo "container test FAILED: $*" >&2; exit 1; }

stage "tools"
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
fi

WORK=$(mktemp -d /var/tmp/quorum-container.XXXXXX)
# crun fails on these machines: runc; and explicit ulimits within what this sandbox allows (the
# defaults ask for more open files than its hard limit, and runc may not raise nproc to it)
NOFILE=$(ulimit -Hn); { [ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 1048576 ]; } && NOFILE=1048576
cat > "$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"
P=(podman --root "$WORK/storage" --runroot "$WORK/run")
NAME=quorum-ct-$$
cleanup() {
    set +e  # remove all that can be removed, whatever fails
    [ -n "${TIMER:-}" ] && kill "$TIMER" 2>/dev/null
    if [ -n "$COMPOSE" ] && [ -x "$WORK/pc/bin/podman-compose" ]; then
        (cd "$WORK/stack" && timeout 60 "$WORK/pc/bin/podman-compose" "${PC_FLAGS[@]}" down -v -t 5 >/dev/null 2>&1) || true
    fi
    "${P[@]}" rm -a -f -t 0 >/dev/null 2>&1 || true
    [ -n "${PROJECT:-}" ] && "${P[@]}" network rm -f "${PROJECT}_default" >/dev/null 2>&1
    if [ "$KEEP" = "--keep" ]; then echo "kept $WORK"; return 0; fi
    "${P[@]}" rmi -a -f >/dev/null 2>&1 || true
    "${P[@]}" system reset -f >/dev/null 2>&1 || true
    rm -rf "$WORK" 2>/dev/null || { chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"; }
    return 0
}
trap cleanup EXIT

stage "stand-in base image (debootstrap bookworm)"
ROOTFS="$WORK/rootfs"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates,netbase,tzdata \
    bookworm "$ROOTFS" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
for n in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$ROOTFS/usr/local/bin/$n"; done
for n in pip pip3; do ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/$n"; done
tar -C "$ROOTFS" -c . | "${P[@]}" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - \
    docker.io/library/python:3.11-slim >/dev/null 2>>"$WORK/podman.err"
rm -rf "$ROOTFS"
BASE_MB=$("${P[@]}" image inspect --format '{{.Size}}' docker.io/library/python:3.11-slim | awk '{printf "%.0f", $1/1e6}')

stage "build (podman build --format docker)"
CA=${QUORUM_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
SECRET=()
[ -s "$CA" ] && SECRET=(--secret "id=ca,src=$CA")
B0=$(date +%s)
"${P[@]}" build --format docker --network host --pull=never "${SECRET[@]}" -t localhost/quorum:ct . \
    > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "build"; }
BUILD_S=$(( $(date +%s) - B0 ))
IMAGE_MB=$("${P[@]}" image inspect --format '{{.Size}}' localhost/quorum:ct | awk '{printf "%.0f", $1/1e6}')
[ "$("${P[@]}" image inspect --format '{{.Config.User}}' localhost/quorum:ct)" = "quorum" ] || fail "image user is not quorum"
"${P[@]}" image inspect --format '{{json .Config.Healthcheck}}' localhost/quorum:ct | grep -q /health \
    || fail "the HEALTHCHECK was dropped"
# nothing of the build's downloads or secret is left: no uv/pip caches, no CA secret, no uv binary
LEFT=$("${P[@]}" run --rm --network none --entrypoint sh localhost/quorum:ct -c \
    'ls -d /root/.cache /home/quorum/.cache /tmp/uv-* /run/secrets/ca /usr/local/bin/uv 2>/dev/null; du -sm /opt/venv | cut -f1' 2>>"$WORK/podman.err")
VENV_MB=$(echo "$LEFT" | tail -1)
[ "$(echo "$LEFT" | wc -l)" = 1 ] || fail "build leftovers in the image: $LEFT"

stage "run quorum demo --days 1 in the image"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
"${P[@]}" run -d --name "$NAME" -p "127.0.0.1:$PORT:8000" -e API_TOKEN="$TOKEN" localhost/quorum:ct \
    quorum demo --days 1 --keep-serving 600 >/dev/null 2>>"$WORK/podman.err"
healthy=""
for _ in $(seq 1 180); do
    if curl -fsS "http://127.0.0.1:$PORT/health" -o "$WORK/health.json" 2>/dev/null \
       && "${P[@]}" logs "$NAME" 2>&1 | grep -q "replay done"; then healthy=1; break; fi
    "${P[@]}" container exists "$NAME" && [ "$("${P[@]}" inspect --format '{{.State.Running}}' "$NAME")" = true ] \
        || { "${P[@]}" logs "$NAME" 2>&1 | tail -40; fail "the container stopped"; }
    sleep 1
done
[ -n "$healthy" ] || { "${P[@]}" logs "$NAME" 2>&1 | tail -40; fail "/health never answered 200 from the host"; }
HEALTH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$WORK/health.json")
"${P[@]}" healthcheck run "$NAME" >/dev/null 2>>"$WORK/podman.err" || fail "the image's health check failed"
UID_IN=$("${P[@]}" exec "$NAME" id -u)
[ "$UID_IN" = 10001 ] || fail "runs as uid $UID_IN, not 10001"

stage "stop (SIGTERM)"
S0=$(python3 -c 'import time; print(time.monotonic())')
"${P[@]}" stop -t 30 "$NAME" >/dev/null 2>>"$WORK/podman.err"
STOP_S=$(python3 -c "import time; print(round(time.monotonic() - $S0, 2))")
CODE=$("${P[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")
"${P[@]}" logs "$NAME" > "$WORK/container.log" 2>&1
grep -q '"event": "service.stopping"' "$WORK/container.log" || fail "no stop line in the log"
[ "$CODE" = 0 ] || { tail -20 "$WORK/container.log"; fail "exit code $CODE after SIGTERM"; }
python3 -c "import sys; sys.exit(0 if $STOP_S < 10 else 1)" || fail "SIGTERM took ${STOP_S}s"
TRADES=$(sed -n 's/^  trades \([0-9]*\).*/\1/p' "$WORK/container.log" | head -1)
echo "--- container log (tail)"
tail -n 8 "$WORK/container.log" | cut -c1-200

stage "quorum run with the exchange unreachable (the image's CMD)"
"${P[@]}" rm -f "$NAME" >/dev/null 2>&1
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${P[@]}" run -d --name "$NAME" -p "127.0.0.1:$RPORT:8000" -e API_TOKEN="$TOKEN" \
    -e BINANCE_FAPI_URL=https://127.0.0.1:9 -e BINANCE_FSTREAM_URL=wss://127.0.0.1:9 \
    localhost/quorum:ct >/dev/null 2>>"$WORK/podman.err"
RUN_HEALTH=""
for _ in $(seq 1 60); do
    RUN_HEALTH=$(curl -s -m 3 -o "$WORK/run-health.json" -w '%{http_code}' "http://127.0.0.1:$RPORT/health" || true)
    [ "$RUN_HEALTH" = 503 ] && grep -q market_data "$WORK/run-health.json" && break
    sleep 1
done
[ "$RUN_HEALTH" = 503 ] || { "${P[@]}" logs "$NAME" 2>&1 | tail -20; fail "/health of quorum run answered $RUN_HEALTH, not 503"; }
sleep 8  # it must stay up, retrying, one line per attempt
[ "$("${P[@]}" inspect --format '{{.State.Running}}' "$NAME")" = true ] || fail "quorum run exited with the exchange unreachable"
"${P[@]}" logs "$NAME" > "$WORK/run.log" 2>&1
RETRY_LINES=$(grep -c '"event": "binance_read_retry"\|"event": "exchange.still_unavailable"' "$WORK/run.log" || true)
[ "$RETRY_LINES" -gt 0 ] || fail "no retry line in the log"
! grep -q Traceback "$WORK/run.log" || fail "a traceback in the log of quorum run"
R0=$(python3 -c 'import time; print(time.monotonic())')
"${P[@]}" stop -t 30 "$NAME" >/dev/null 2>>"$WORK/podman.err"
RUN_STOP_S=$(python3 -c "import time; print(round(time.monotonic() - $R0, 2))")
RUN_CODE=$("${P[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$RUN_CODE" = 0 ] || fail "quorum run exited $RUN_CODE on SIGTERM"
python3 -c "import sys; sys.exit(0 if $RUN_STOP_S < 10 else 1)" || fail "quorum run took ${RUN_STOP_S}s to stop"
"${P[@]}" rm -f "$NAME" >/dev/null 2>&1

COMPOSE_JSON=""
if [ -n "$COMPOSE" ]; then
    source "$ROOT/scripts/container_compose.sh"
fi

TOTAL=$(( $(date +%s) - T0 ))
stage "done"
printf '{"base_standin_mb": %s, "image_mb": %s, "venv_mb": %s, "build_s": %s, "health": "%s", "uid": %s, "demo_trades": %s, "stop_s": %s, "exit_code": %s, "run_unreachable_health": %s, "run_retry_lines": %s, "run_stop_s": %s, "run_exit_code": %s, "total_s": %s}\n' \
    "$BASE_MB" "$IMAGE_MB" "$VENV_MB" "$BUILD_S" "$HEALTH" "$UID_IN" "${TRADES:-null}" "$STOP_S" "$CODE" "$RUN_HEALTH" "$RETRY_LINES" "$RUN_STOP_S" "$RUN_CODE" "$TOTAL"
[ -n "$COMPOSE_JSON" ] && echo "$COMPOSE_JSON"
echo "container: image ${IMAGE_MB} MB (stand-in base ${BASE_MB} MB), built in ${BUILD_S}s; demo healthy from the host as uid ${UID_IN}; SIGTERM → exit ${CODE} in ${STOP_S}s; quorum run with no exchange: up, /health ${RUN_HEALTH}, ${RETRY_LINES} retry lines, SIGTERM → exit ${RUN_CODE} in ${RUN_STOP_S}s; ${TOTAL}s in all"
