"""/status and /metrics read drawdown from the equity history: a compacted hour's inner dip
counts for the record's maximum, the current drawdown runs from the peak to the last marked
equity, and a drawdown breaker reset re-bases the current figure (the record's maximum stays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

T0 = datetime(2026, 2, 2, 10, tzinfo=UTC)


def _gauge(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


async def test_status_and_metrics_drawdown_from_the_history(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    # an hour compacted long ago: it fell from 1000 to 900 inside and ended at 1000 (high 1050)
    await pool.execute(
        """INSERT INTO equity_snapshots (mode, at, kind, equity, wallet_balance, equity_min, equity_max, drawdown_pct,
               samples) VALUES ('paper', $1, 'hour', 1000, 1000, 900, 1050, 10, 12)""", T0 + timedelta(minutes=55))
    for minutes, equity, upnl in ((65, 1040.0, 0.0), (70, 1020.0, -20.0)):  # then a position losing 20
        await pool.execute(
            """INSERT INTO equity_snapshots (mode, at, equity, wallet_balance, unrealized_pnl, open_positions,
                   equity_min, equity_max) VALUES ('paper', $1, $2, $3, $4, 1, $2, $2)""",
            T0 + timedelta(minutes=minutes), equity, equity - upnl, upnl)
    body = (await client.get("/status")).json()
    dd = body["drawdown"]
    assert abs(dd["max_pct"] - 10.0) < 1e-9 and dd["rows"] == 3 and dd["since_ms"] is None
    assert abs(dd["current_pct"] - (1050 - 1020) / 1050 * 100) < 1e-9 and dd["peak"] == 1050.0
    assert abs(_gauge((await client.get("/metrics")).text, "quorum_drawdown_pct") - dd["current_pct"]) < 1e-9

    # an operator reset of the drawdown breaker: measured from then on, the record keeps its maximum
    reset = T0 + timedelta(minutes=62)
    await pool.execute("""INSERT INTO breaker_events (mode, breaker, event, reason, actor, at)
                          VALUES ('paper', 'drawdown', 'reset', 'reset by alice', 'alice', $1)""", reset)
    dd = (await client.get("/status")).json()["drawdown"]
    assert dd["since_ms"] == int(reset.timestamp() * 1000) and abs(dd["max_pct"] - 10.0) < 1e-9
    assert abs(dd["current_pct"] - (1040 - 1020) / 1040 * 100) < 1e-9 and dd["peak"] == 1040.0
