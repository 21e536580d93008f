"""The engine tells runtime listeners (the Telegram notifier) about everything an operator must
know, during an accelerated replay on the shared data: trades opened/closed, stops moved
(break-even / trailing), breakers tripped and reset (from the risk manager's hook), the
corrections of a reconciliation run, and errors caught in a loop iteration (secrets redacted,
identical repeats held back). A failing listener changes nothing, and neither does a failing step:
the loop goes on, pausing entries while steps keep failing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from quorum.backtest.request import parse_time
from quorum.bootstrap import bootstrap
from quorum.config import load_settings
from quorum.execution.exchange import OrderRequest
from quorum.logging import register_secrets
from quorum.notify.events import EVENT_KINDS

DAY = 86_400_000
SECRET = "sk-EVENTS-SECRET-5d1e9b"


class FlakyConsensus:
    """A consensus that fails `fail_cycles` decision cycles in a row (with a secret in the
    message, as a provider error could carry) after the `after`-th call, then works again."""

    def __init__(self, inner: Any, *, after: int, fail_calls: int) -> None:
        self.inner = inner
        self.after = after
        self.fail_calls = fail_calls
        self.calls = 0
        self.failed = 0

    async def decide(self, ctx: Any) -> Any:
        self.calls += 1
        if self.calls > self.after and self.failed < self.fail_calls:
            self.failed += 1
            raise RuntimeError(f"provider rejected key {SECRET}")
        return await self.inner.decide(ctx)

    def batched(self) -> Any:  # the consensus port: the inner engine stores the cycle's decisions
        return self.inner.batched()


async def test_replay_emits_every_event_kind(pool: asyncpg.Pool, shared_data: Path) -> None:
    register_secrets([SECRET])
    settings = load_settings(min_ai_confidence=0.55, symbols=["BTCUSDT"], break_even_at_r=0.5,
                             trailing_activation_pct=1.0, max_consecutive_losses=1,
                             loss_streak_cooldown_minutes=60, symbol_cooldown_minutes=60)
    start = parse_time("2025-10-01", "s")
    assert start is not None
    app = await bootstrap(settings, pool=pool, mode="backtest", data_dir=shared_data, symbols=["BTCUSDT"],
                          start_ms=start, speed=1_000_000.0, account="events")
    engine, rt = app.engine, app.runtime
    events: list[tuple[str, dict[str, Any]]] = []

    async def broken(kind: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("listener down")

    async def record(kind: str, payload: dict[str, Any]) -> None:
        events.append((kind, payload))

    rt.listeners.extend([broken, record])
    # a venue position Postgres does not know (e.g. opened by hand): the start-up reconciliation adopts it
    await app.exchange.on_price("ETHUSDT", 4000.0, start)
    await app.exchange.create_order(OrderRequest("foreign-1", "ETHUSDT", "buy", "market", 0.01))
    flaky = FlakyConsensus(engine.consensus, after=20, fail_calls=3)
    engine.consensus = flaky
    await engine.start()

    until = start
    while until < start + 10 * DAY and not set(EVENT_KINDS) <= {k for k, _ in events}:
        until += DAY
        await engine.run(until_ms=until)
    by_kind: dict[str, list[dict[str, Any]]] = {k: [p for kk, p in events if kk == k] for k in EVENT_KINDS}
    assert all(by_kind[k] for k in EVENT_KINDS), {k: len(v) for k, v in by_kind.items()}

    # the start-up reconciliation adopted the foreign position and said so
    first = by_kind["reconciliation"][0]
    assert first["ok"] is True and first["count"] >= 1 and "adopted_position x1" in first["kinds"]
    assert "ETHUSDT" in first["symbols"]
    # every stop move went the protective way (up for a long, down for a short) and reached the venue
    for p in by_kind["stop_moved"]:
        assert p["symbol"] == "BTCUSDT" and p["reason"] in ("break_even_stop", "trailing_stop")
        sign = 1 if p["side"] == "long" else -1
        assert (p["new_stop"] - p["old_stop"]) * sign > 0 and p["status"] == "moved"
    # one notification per stored breaker transition, trips and resets alike
    rows = await pool.fetch("SELECT breaker, event, symbol FROM breaker_events WHERE mode = 'backtest' ORDER BY id")
    emitted = [(p["breaker"], "trip" if k == "breaker_tripped" else "reset", p["symbol"])
               for k, p in events if k in ("breaker_tripped", "breaker_reset")]
    assert emitted == [(r["breaker"], r["event"], r["symbol"]) for r in rows]
    assert {"loss_streak", "symbol_cooldown"} <= {b for b, _, _ in emitted}
    # a stop-out is announced first, then the breakers it trips
    for i, (k, p) in enumerate(events):
        if k == "breaker_tripped" and p["breaker"] == "symbol_cooldown":
            j = i - 1
            while events[j][0] == "breaker_tripped":
                j -= 1
            assert events[j][0] == "trade_closed" and events[j][1]["exit_reason"] in ("stop_loss", "liquidation")
    # three failed decision cycles: counted and logged, but one message (repeats held back), secret redacted
    assert flaky.failed == 3 and engine.stats.errors >= 3
    assert len(by_kind["error"]) == 1
    err = by_kind["error"][0]
    assert err["where"] == "decision_failed" and err["symbol"] == "BTCUSDT"
    assert SECRET not in err["error"] and err["error"] == "RuntimeError: provider rejected key ***"
    assert len(by_kind["trade_closed"]) == engine.stats.closes and len(by_kind["trade_opened"]) == engine.stats.entries

    # an exception escaping a step no longer ends the loop: each failed step is logged, counted and
    # told to the listeners; MAX_CONSECUTIVE_STEP_FAILURES in a row pause new entries (critical alert)
    await rt.kill()  # flat (the adopted position too), so every step that works needs the market
    await rt.resume()
    healthy = engine.market
    engine.market = BrokenMarket(healthy)
    before = len(events)
    stats = await engine.run(until_ms=until + 3 * 3_600_000)  # 12 decision steps, every one failing
    assert stats is engine.stats and engine.guard.failed_steps >= 12
    assert "step_failures" in rt.breakers and engine.entry_block() is not None
    critical = await pool.fetch("SELECT kind, resolved_at FROM alerts WHERE mode='backtest' AND severity='critical' "
                                "AND kind='step_failures'")
    assert [(r["kind"], r["resolved_at"]) for r in critical] == [("step_failures", None)]
    failures = [p for k, p in events[before:] if k == "error"]
    assert failures and all(SECRET not in p["error"] for p in failures)
    assert any(p["where"] in ("step_failed", "cycle_failed") for p in failures)
    # the market answers again: after as many good steps, entries resume by themselves (recorded);
    # the critical alert stays until someone resolves it
    engine.market = healthy
    await engine.run(until_ms=until + 6 * 3_600_000)
    assert engine.entry_block() is None and "step_failures" not in rt.breakers
    resumed = await pool.fetch("SELECT severity FROM alerts WHERE mode='backtest' AND kind='entries_resumed'")
    assert [r["severity"] for r in resumed] == ["info"]
    still = await pool.fetchval("SELECT count(*) FROM alerts WHERE mode='backtest' AND kind='step_failures' "
                                "AND resolved_at IS NULL")
    assert still == 1
    await app.close()


class BrokenMarket:
    """The replay market, except that bars can no longer be read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def bars_after(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError(f"market data store unreachable (token {SECRET})")

    async def snapshots(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError(f"market data store unreachable (token {SECRET})")
