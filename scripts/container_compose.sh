# Sourced by scripts/container_test.sh --compose (uses its P, WORK, ROOT, stage, fail): the real
# docker-compose.yml started with podman-compose on stand-in images. Not run on its own.
# shellcheck shell=bash

stage "compose: stand-ins for the Postgres and Redis images"
mkdir -p "$WORK/pg" "$WORK/redis"
# Postgres: Debian's postgresql-15 behind an entrypoint that does what the official image's does
# for this file (POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on an empty data directory; pg_isready)
cat > "$WORK/pg/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PATH=/usr/lib/postgresql/15/bin:$PATH
mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw
    as_pg initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f /tmp/pw
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    as_pg pg_ctl -D "$PGDATA" -o "-c listen_addresses=" -w start >/dev/null
    as_pg psql -q -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
    as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*'
EOF
cat > "$WORK/pg/Containerfile" <<'EOF'
FROM docker.io/library/python:3.11-slim
# no packaged cluster (it would take another port while the build shares the host's network)
RUN mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update -q && apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && ln -s /usr/lib/postgresql/15/bin/pg_isready /usr/local/bin/pg_isready
COPY docker-entrypoint.sh /usr/local/bin/
RUN chmod +x /usr/local/bin/docker-entrypoint.sh
# as the official image: SIGINT is Postgres's fast shutdown (SIGTERM waits for every client to leave)
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
EOF
# Redis: Debian's redis-server; like the official image, protected mode off (the network is private)
cat > "$WORK/redis/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
[ "$1" = redis-server ] && set -- "$@" --protected-mode no
exec "$@"
EOF
cat > "$WORK/redis/Containerfile" <<'EOF'
FROM docker.io/library/python:3.11-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends redis-server >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY docker-entrypoint.sh /usr/local/bin/
RUN chmod +x /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
"${P[@]}" build --network host --pull=never -t docker.io/library/postgres:16-alpine "$WORK/pg" \
    > "$WORK/pg/build.log" 2>&1 || { tail -20 "$WORK/pg/build.log"; fail "postgres stand-in"; }
"${P[@]}" build --network host --pull=never -t docker.io/library/redis:7-alpine "$WORK/redis" \
    > "$WORK/redis/build.log" 2>&1 || { tail -20 "$WORK/redis/build.log"; fail "redis stand-in"; }
"${P[@]}" tag localhost/quorum:ct localhost/quorum:latest

stage "compose: podman-compose up"
python3 -m venv "$WORK/pc" && "$WORK/pc/bin/pip" install -q podman-compose >/dev/null 2>&1
mkdir -p "$WORK/stack"
CPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# the real file; only the bot's host port is moved to a free one (8000 may be taken here)
sed "s/\"127.0.0.1:8000:8000\"/\"127.0.0.1:$CPORT:8000\"/" "$ROOT/docker-compose.yml" > "$WORK/stack/docker-compose.yml"
grep -q "127.0.0.1:$CPORT:8000" "$WORK/stack/docker-compose.yml" || fail "the bot's port mapping moved"
cp -r "$ROOT/deploy" "$WORK/stack/deploy"
printf 'API_TOKEN=%s\nPOSTGRES_PASSWORD=%s\n' "$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" \
    "$(python3 -c 'import secrets; print(secrets.token_hex(12))')" > "$WORK/stack/.env"
# a project name of our own: Podman's networks are machine-wide, so never collide with a real stack
PROJECT=quorumct$$
PC_FLAGS=(--podman-args "--root $WORK/storage --runroot $WORK/run" -p "$PROJECT")
# Podman runs health checks from systemd timers; this machine has no systemd, so play the timer
( while sleep 2; do
      for c in $("${P[@]}" ps --format '{{.Names}}' 2>/dev/null); do "${P[@]}" healthcheck run "$c" >/dev/null 2>&1; done
  done ) &
TIMER=$!
C0=$(date +%s)
(cd "$WORK/stack" && timeout 240 "$WORK/pc/bin/podman-compose" "${PC_FLAGS[@]}" up -d --no-build) \
    > "$WORK/compose.log" 2>&1 || { tail -30 "$WORK/compose.log"; fail "podman-compose up"; }
bot_health=""
for _ in $(seq 1 120); do
    if curl -sS -m 3 "http://127.0.0.1:$CPORT/health" -o "$WORK/compose-health.json" 2>/dev/null \
       && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["components"]["database"]["ok"] else 1)' \
          "$WORK/compose-health.json" 2>/dev/null; then bot_health=1; break; fi
    sleep 1
done
UP_S=$(( $(date +%s) - C0 ))
"${P[@]}" ps -a --format '{{.Names}} {{.Status}}' > "$WORK/compose-ps.txt" 2>/dev/null
[ -n "$bot_health" ] || { cat "$WORK/compose-ps.txt"; tail -30 "$WORK/compose.log"; \
    "${P[@]}" logs "${PROJECT}_bot_1" 2>&1 | tail -20; fail "the bot's /health never showed the database"; }
sleep 10  # the bot must stay up (no restart loop) with the exchange unreachable
curl -sS -m 3 "http://127.0.0.1:$CPORT/health" -o "$WORK/compose-health.json" 2>/dev/null || true
state() { "${P[@]}" inspect --format "{{$2}}" "$1" 2>/dev/null; }
PG_HEALTH=$(state "${PROJECT}_postgres_1" .State.Health.Status)
REDIS_HEALTH=$(state "${PROJECT}_redis_1" .State.Health.Status)
BOT_RESTARTS=$(state "${PROJECT}_bot_1" .RestartCount)
BOT_RUNNING=$(state "${PROJECT}_bot_1" .State.Running)
PG_PUBLISHED=$("${P[@]}" port "${PROJECT}_postgres_1" 2>/dev/null | wc -l)
read -r DB_OK CACHE MARKET < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["components"]; \
print(c["database"]["ok"], c["cache"].get("backend", c["cache"].get("kind")), c["market_data"]["ok"])' \
    "$WORK/compose-health.json")
# podman-compose leaves `condition: service_healthy` to `podman wait --condition=healthy`, which
# Podman 4.3 lacks: it says so and starts the bot at once — which then waits for Postgres itself
HEALTHY_ORDER=$(grep -q "doesn't support healthy" "$WORK/compose.log" && echo "not enforced by this podman" || echo enforced)
cat "$WORK/compose-ps.txt"
[ "$PG_HEALTH" = healthy ] && [ "$REDIS_HEALTH" = healthy ] || fail "postgres $PG_HEALTH, redis $REDIS_HEALTH"
[ "$BOT_RUNNING" = true ] && [ "$BOT_RESTARTS" = 0 ] || fail "bot running=$BOT_RUNNING restarts=$BOT_RESTARTS"
[ "$PG_PUBLISHED" = 0 ] || fail "postgres is published on the host"
[ "$DB_OK" = True ] || fail "the bot's database check failed"
[ "$CACHE" = redis ] || fail "the bot's cache is $CACHE, not Redis"
D0=$(date +%s)
(cd "$WORK/stack" && "$WORK/pc/bin/podman-compose" "${PC_FLAGS[@]}" down -t 30) >> "$WORK/compose.log" 2>&1
DOWN_S=$(( $(date +%s) - D0 ))
kill "$TIMER" 2>/dev/null || true
COMPOSE_JSON=$(printf '{"compose_up_to_bot_db_ok_s": %s, "postgres": "%s", "redis": "%s", "bot_restarts": %s, "bot_cache": "%s", "bot_market_data_ok": "%s", "postgres_published": %s, "depends_on_healthy": "%s", "down_s": %s}' \
    "$UP_S" "$PG_HEALTH" "$REDIS_HEALTH" "$BOT_RESTARTS" "$CACHE" "$MARKET" "$PG_PUBLISHED" "$HEALTHY_ORDER" "$DOWN_S")
