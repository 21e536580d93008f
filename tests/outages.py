"""Private Postgres and Redis servers that a test (or the soak) may stop and start at will.

Outage tests must never touch the machine's shared servers (5432 / 6379): other tests run on
them. `PrivatePostgres` runs its own cluster (initdb + pg_ctl, trust auth on 127.0.0.1 for the
`postgres` role, scram passwords for every other role) on a free port in a fresh directory under
/tmp; `PrivateRedis` runs `redis-server` on a free port with persistence off. Both keep their
port across stop/start, so a client's URL stays valid through an outage.

    pg, rd = PrivatePostgres(), PrivateRedis()
    await pg.start(); await rd.start()        # idempotent
    ... pg.url, pg.url_for("quorum"), rd.url ...
    await pg.stop(); await pg.start()          # an outage
    rd.freeze(); rd.thaw()                     # a hung Redis (SIGSTOP / SIGCONT)
    await pg.close(); await rd.close()         # stop and delete everything

As root (this machine, CI containers) Postgres runs as the `postgres` user (`runuser`), since it
refuses to run as root. Binaries: $QUORUM_PG_BIN, else the newest /usr/lib/postgresql/*/bin,
else the ones bundled with the `pgserver` package. This module imports nothing from pytest.
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PrivatePostgres", "PrivateRedis", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path:
    env = os.environ.get("QUORUM_PG_BIN")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).parent
    import pgserver  # bundled binaries, as the embedded database uses

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _as_postgres_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PrivatePostgres:
    """A throwaway Postgres cluster on 127.0.0.1:`port` (a free one by default)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="quorum-pg-"))
        self.data = self.base / "data"
        self.log_file = self.base / "postgres.log"
        self._bin = _pg_bin()
        self._initialized = False
        self._closed = False
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        atexit.register(self._stop_sync, "immediate")

    @property
    def url(self) -> str:
        """The `postgres` database as the `postgres` role (trust: no password)."""
        return self.url_for("postgres")

    def url_for(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*_as_postgres_user(), str(self._bin / args[0]), *args[1:]]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def _initdb(self) -> None:
        done = self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
        hba = self.data / "pg_hba.conf"
        hba.write_text("local all all trust\n"
                       "host all postgres 127.0.0.1/32 trust\n"
                       "host all all 127.0.0.1/32 scram-sha-256\n")
        if os.geteuid() == 0:
            shutil.chown(hba, "postgres", "postgres")
        self._initialized = True

    def running(self) -> bool:
        return self._initialized and self._run("pg_ctl", "status", "-D", str(self.data)).returncode == 0

    def _start_sync(self) -> None:
        if self._closed:
            raise RuntimeError("this PrivatePostgres was closed")
        if not self._initialized:
            self._initdb()
        if self.running():
            return
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        done = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log_file),
                         "-o", opts)
        if done.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-800:] if self.log_file.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()[-300:]} {tail}")

    def _stop_sync(self, mode: str = "fast") -> None:
        if self._initialized and self.data.exists():
            self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data))

    async def start(self) -> None:
        """Start the server (initialising the cluster the first time); no-op when running."""
        await asyncio.to_thread(self._start_sync)

    async def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: clients are disconnected; `immediate`: like a crash)."""
        await asyncio.to_thread(self._stop_sync, mode)

    async def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (e.g. CREATE ROLE / CREATE DATABASE)."""
        import asyncpg

        conn = await asyncpg.connect(self.url_for(database))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def close(self) -> None:
        """Stop the server and delete its directory."""
        await self.stop("immediate")
        self._closed = True
        atexit.unregister(self._stop_sync)
        shutil.rmtree(self.base, ignore_errors=True)


class PrivateRedis:
    """A throwaway `redis-server` on 127.0.0.1:`port` (a free one by default), no persistence:
    a restart starts empty, as a replaced cache node would."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="quorum-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        atexit.register(self._kill_sync)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def _pong(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 1.0)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 1.0)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with (self.base / "redis.log").open("ab") as log:
            return subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.base), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    async def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers PING; no-op when running."""
        if self._closed:
            raise RuntimeError("this PrivateRedis was closed")
        if self.running():
            return
        self._proc = self._spawn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self._pong():
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}: "
                                   f"{(self.base / 'redis.log').read_text(errors='replace')[-500:]}")
            if loop.time() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout:g}s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); no-op when stopped."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a frozen server must see the SIGTERM
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung node); `thaw()` resumes it."""
        assert self._proc is not None and self._proc.poll() is None, "not running"
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def _kill_sync(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    async def close(self) -> None:
        """Stop the server and delete its directory."""
        await self.stop()
        self._closed = True
        atexit.unregister(self._kill_sync)
        shutil.rmtree(self.base, ignore_errors=True)
