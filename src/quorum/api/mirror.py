"""The runtime snapshot the engine process publishes (`snapshot`) and the API process applies to
its mirror `RuntimeState` (`apply_snapshot`): the fields /status, /health and /metrics read."""

from __future__ import annotations

from typing import Any

from quorum.api.status import jsonable
from quorum.engine.runtime import RuntimeState, wall_ms

FIELDS = ("mode", "started_ms", "paused", "kill_requested", "last_scan_ms", "scan_interval_s",
          "last_market_data_ms", "exchange_ok", "exchange_error", "providers", "provider_last_success",
          "provider_last_error", "breakers", "paused_symbols", "positions", "equity", "wallet_balance",
          "unrealized_pnl", "drawdown_pct", "day_pnl", "sim_time_ms",
          "live_override", "symbols", "database_ok", "database_error", "engine", "funding",
          "cache_degraded")


def snapshot(runtime: RuntimeState) -> dict[str, Any]:
    body = {name: getattr(runtime, name) for name in FIELDS}
    body["last_decisions"] = list(runtime.last_decisions)
    body["has_engine"] = runtime.on_kill is not None
    body["heartbeat_ms"] = wall_ms()
    return jsonable(body)  # type: ignore[no-any-return]


def apply_snapshot(mirror: RuntimeState, body: dict[str, Any]) -> None:
    for name in FIELDS:
        if name in body:
            setattr(mirror, name, body[name])
    mirror.last_decisions.clear()
    mirror.last_decisions.extend(body.get("last_decisions") or [])
    mirror.heartbeat_ms = body.get("heartbeat_ms")
    mirror.has_engine = bool(body.get("has_engine"))
