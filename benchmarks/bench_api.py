"""API latency under a fixed request rate while a replay session runs (loopback only).

Starts `quorum demo` (accelerated replay of the bundled data, with the API up) in a child
process, waits until it serves, then — from this second process — sends GET /health at a fixed
rate (default 500 req/s, open loop: request i is sent at t0 + i/rate whatever the replies do)
and GET /metrics at a lower fixed rate, for a bounded time and count. Prints JSON with p50 / p99
/ max latency, achieved rates, status codes and whether the replay advanced meanwhile, then a
one-line summary. Target: /health p99 <= 10 ms at 500 req/s.

    uv run python benchmarks/bench_api.py [--rate 500] [--seconds 10] [--metrics-rate 20]
    uv run python benchmarks/bench_api.py --url http://127.0.0.1:8000   # an already running service
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _connection(host: str, port: int, path: str, times: list[float], sent: list[float],
                      done: list[float], codes: dict[str, int]) -> int:
    """One keep-alive HTTP/1.1 connection sending GET `path` at the scheduled `times` (open loop:
    a late reply delays the next send, and that wait is counted from the schedule)."""
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode()
    errors = 0
    try:
        for t in times:
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            end = time.perf_counter()
            sent.append((end - start) * 1000)
            done.append((end - t) * 1000)
            codes[status] = codes.get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors += 1
    finally:
        writer.close()
    return errors


async def _fire(url: str, path: str, rate: float, seconds: float, max_requests: int, out: dict[str, Any],
                connections: int) -> None:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    n = min(max_requests, int(rate * seconds))
    t0 = time.perf_counter() + 0.05
    schedule = [t0 + i / rate for i in range(n)]
    sent: list[float] = []
    done: list[float] = []
    codes: dict[str, int] = {}
    errors = await asyncio.gather(*(
        _connection(host, int(port), path, schedule[c::connections], sent, done, codes) for c in range(connections)))
    elapsed = time.perf_counter() - t0
    out.update({
        "requests": n, "completed": len(sent), "target_rate": rate, "achieved_rate": round(len(sent) / elapsed, 1),
        "connections": connections, "errors": sum(errors), "status_codes": codes,
        "p50_ms": _round(_pct(sent, 0.50)), "p99_ms": _round(_pct(sent, 0.99)),
        "max_ms": _round(max(sent) if sent else None),
        "mean_ms": _round(statistics.fmean(sent) if sent else None),
        # from the scheduled send time: includes waiting behind a slow reply (no coordinated omission)
        "p99_from_schedule_ms": _round(_pct(done, 0.99)),
    })


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


async def _sim_time(client: httpx.AsyncClient) -> int | None:
    try:
        return (await client.get("/status")).json().get("sim_time_ms")
    except (httpx.HTTPError, ValueError):
        return None


async def measure(url: str, rate: float, seconds: float, metrics_rate: float, max_requests: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        for _ in range(20):  # warm-up
            await client.get("/health")
        sim_before = await _sim_time(client)
        health: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        await asyncio.gather(
            _fire(url, "/health", rate, seconds, max_requests, health, connections=8),
            _fire(url, "/metrics", metrics_rate, seconds, max_requests, metrics, connections=2),
        )
        sim_after = await _sim_time(client)
    return {"health": health, "metrics": metrics, "sim_time_before_ms": sim_before, "sim_time_after_ms": sim_after,
            "replay_advanced": bool(sim_before and sim_after and sim_after > sim_before)}


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited early with code {proc.returncode}")
        try:  # ready = the API answers AND the replay has begun (the engine published a sim time)
            r = httpx.get(f"{url}/status", timeout=2.0)
            if r.status_code == 200 and (proc is None or r.json().get("sim_time_ms")):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError("service did not come up")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--metrics-rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--url", default=None, help="measure an already running service instead")
    ap.add_argument("--speed", type=float, default=0.0, help="demo replay speed (0 = as fast as possible)")
    args = ap.parse_args()
    proc: subprocess.Popen[bytes] | None = None
    url = args.url
    if url is None:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "LOG_LEVEL": "WARNING"}
        cmd = [sys.executable, "-c", "from quorum.cli import main; main()", "demo", "--port", str(port),
               "--speed", str(args.speed), "--keep-serving", str(args.seconds + 30), "--days", "0"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(url, proc)
        result = asyncio.run(measure(url, args.rate, args.seconds, args.metrics_rate, args.max_requests))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    result.update({"benchmark": "api_latency", "target": "/health p99 <= 10 ms at 500 req/s",
                   "cpu_count": os.cpu_count(), "seconds": args.seconds})
    h = result["health"]
    result["target_met"] = bool(h.get("p99_ms") is not None and h["p99_ms"] <= 10.0 and h["achieved_rate"] >= 0.95
                                * args.rate)
    print(json.dumps(result, indent=2))
    print(f"/health p50 {h.get('p50_ms')} ms p99 {h.get('p99_ms')} ms at {h.get('achieved_rate')} req/s; "
          f"/metrics p99 {result['metrics'].get('p99_ms')} ms; replay advanced: {result['replay_advanced']}; "
          f"target met: {result['target_met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
