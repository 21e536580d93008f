"""GET /metrics: the record, the engine's state and the engine process's counters, all true.

- `RecordView` reads the record totals from Postgres (trades and wins by symbol and side,
  realised P&L, fees, funding, breaker trips) in one read-only snapshot, reused for `ttl_s`
  seconds; /status shows the same `Record` (its `summary()`), so the two always agree.
- `render` builds the exposition: record families from the `Record`, state families from the
  /status body, process families from the engine's `REGISTRY` — collected in this process when
  the engine runs here, or as last published by the engine process (`dump_registry` there,
  `PublishedMetrics` here: quorum.api.process carries it with every runtime snapshot).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from quorum import metrics
from quorum.domain import breakers as brk
from quorum.engine.runtime import wall_ms
from quorum.store.reports import record_totals

log = structlog.get_logger(__name__)

DB_TIMEOUT_S = 2.0
KNOWN_BREAKERS = (brk.DAILY_LOSS, brk.LOSS_STREAK, brk.DRAWDOWN, brk.SYMBOL_COOLDOWN)

@dataclass(frozen=True)
class Record:
    """The record's totals at `as_of_ms` (wall ms of the read)."""

    by_symbol_side: tuple[tuple[str, str, int, int, float], ...]  # symbol, side, trades, wins, net P&L
    fees: float
    funding_paid: float
    funding_received: float
    breaker_trips: dict[str, int] = field(default_factory=dict)
    as_of_ms: int = 0

    @property
    def trades(self) -> int:
        return sum(r[2] for r in self.by_symbol_side)

    @property
    def wins(self) -> int:
        return sum(r[3] for r in self.by_symbol_side)

    @property
    def realized_pnl(self) -> float:
        return math.fsum(r[4] for r in self.by_symbol_side)

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None

    def summary(self) -> dict[str, Any]:
        """The /status `record` section."""
        return {"trades": self.trades, "wins": self.wins, "win_rate": self.win_rate,
                "realized_pnl": self.realized_pnl, "fees": self.fees, "funding_paid": self.funding_paid,
                "funding_received": self.funding_received, "breaker_trips": dict(self.breaker_trips),
                "as_of_ms": self.as_of_ms}


async def read_record(pool: asyncpg.Pool, mode: str) -> Record:
    """One consistent read of the record's totals for `mode`."""
    rows, costs, trips = await record_totals(pool, mode)
    return Record(
        by_symbol_side=tuple((r["symbol"], r["side"], int(r["trades"]), int(r["wins"]), float(r["net_pnl"]))
                             for r in rows),
        fees=float(costs["fees"]), funding_paid=float(costs["funding_paid"]),
        funding_received=float(costs["funding_received"]),
        breaker_trips={r["breaker"]: int(r["trips"]) for r in trips}, as_of_ms=wall_ms())


class RecordView:
    """The record, re-read at most once per `ttl_s` (concurrent callers share one read). When
    Postgres does not answer, the last record read is kept (`last`) and the failure logged once
    per outage; `get` then returns None."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self.last: Record | None = None
        self._at = -1e18
        self._lock = asyncio.Lock()
        self._failing = False

    async def get(self, pool: asyncpg.Pool, mode: str) -> Record | None:
        async with self._lock:
            if self.last is not None and time.monotonic() - self._at < self.ttl_s:
                return self.last
            try:
                record = await asyncio.wait_for(read_record(pool, mode), DB_TIMEOUT_S)
            except Exception as exc:  # down, timed out, dropped: the last record stays as it was
                if not self._failing:
                    log.warning("metrics.record_read_failed", error=type(exc).__name__)
                self._failing = True
                return None
            if self._failing:
                log.info("metrics.record_read_recovered")
                self._failing = False
            self.last, self._at = record, time.monotonic()
            return record


# --- the engine process's REGISTRY across the process boundary ---------------------------------
def dump_registry(registry: CollectorRegistry = metrics.REGISTRY) -> list[list[Any]]:
    """The registry's families as JSON-ready lists: [name, help, type, [[sample, labels, value], ...]]."""
    return [[m.name, m.documentation, m.type, [[s.name, s.labels, s.value] for s in m.samples]]
            for m in registry.collect()]


def load_families(dumped: Iterable[list[Any]]) -> list[Metric]:
    out = []
    for name, doc, typ, samples in dumped:
        m = Metric(name, doc, typ)
        for sample, labels, value in samples:
            m.add_sample(sample, labels, float("nan") if value is None else float(value))
        out.append(m)
    return out


class PublishedMetrics:
    """API process: the engine process's families as it last published them."""

    def __init__(self) -> None:
        self.families: list[Metric] = []
        self.at_ms: int | None = None

    def update(self, dumped: Iterable[list[Any]]) -> None:
        self.families = load_families(dumped)
        self.at_ms = wall_ms()

    def collect(self) -> list[Metric]:
        return self.families


def local_families() -> list[Metric]:
    """This process's REGISTRY (the engine runs here, or no engine does)."""
    return list(metrics.REGISTRY.collect())


# --- rendering ----------------------------------------------------------------------------------
def _gauge(f: metrics.Family, value: float | None) -> GaugeMetricFamily:
    g = GaugeMetricFamily(f.name, f.help)
    if value is not None:
        g.add_metric([], float(value))
    return g


def state_families(body: dict[str, Any]) -> Iterator[Metric]:
    """State families from a /status body (the very figures /status shows)."""
    yield _gauge(metrics.EQUITY, body.get("equity"))
    yield _gauge(metrics.UNREALIZED_PNL, body.get("unrealized_pnl"))
    positions = body.get("open_positions")
    yield _gauge(metrics.OPEN_POSITIONS, None if positions is None else len(positions))
    yield _gauge(metrics.DRAWDOWN, body.get("drawdown_pct"))
    tripped = GaugeMetricFamily(metrics.BREAKER_TRIPPED.name, metrics.BREAKER_TRIPPED.help,
                                labels=list(metrics.BREAKER_TRIPPED.labels))
    active: dict[str, int] = dict.fromkeys(KNOWN_BREAKERS, 0)
    for b in body.get("breakers") or []:
        kind = str(b["name"]).split(":", 1)[0]  # "symbol_cooldown:BTCUSDT" counts for symbol_cooldown
        active[kind] = active.get(kind, 0) + 1
    for name in sorted(active):
        tripped.add_metric([name], float(active[name]))
    yield tripped
    last = body.get("last_scan_ms")
    yield _gauge(metrics.LAST_SCAN, None if last is None else last / 1000.0)
    started = body.get("started_ms") if body.get("source") == "engine" else None
    yield _gauge(metrics.ENGINE_START, None if started is None else started / 1000.0)


def record_families(record: Record | None) -> Iterator[Metric]:
    """Record families from a `Record` (families without samples when none was ever read)."""
    def family(f: metrics.Family) -> Any:
        cls = CounterMetricFamily if f.type == "counter" else GaugeMetricFamily
        return cls(f.name, f.help, labels=list(f.labels) or None)

    trades, wins, rate, realized = (family(f) for f in (metrics.TRADES, metrics.WINS, metrics.WIN_RATE,
                                                        metrics.REALIZED_PNL))
    fees, paid, received, trips = (family(f) for f in (metrics.FEES_PAID, metrics.FUNDING_PAID,
                                                       metrics.FUNDING_RECEIVED, metrics.BREAKER_TRIPS))
    if record is not None:
        for symbol, side, n, w, _ in record.by_symbol_side:
            trades.add_metric([symbol, side], n)
            wins.add_metric([symbol, side], w)
        rate.add_metric([], math.nan if record.win_rate is None else record.win_rate)
        realized.add_metric([], record.realized_pnl)
        fees.add_metric([], record.fees)
        paid.add_metric([], record.funding_paid)
        received.add_metric([], record.funding_received)
        for breaker in sorted(set(record.breaker_trips) | set(KNOWN_BREAKERS)):
            trips.add_metric([breaker], record.breaker_trips.get(breaker, 0))
    yield from (trades, wins, rate, realized, fees, paid, received, trips)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(body: dict[str, Any], record: Record | None, process: Callable[[], Iterable[Metric]]) -> bytes:
    """The /metrics exposition (Prometheus text format)."""
    families = [*record_families(record), *state_families(body), *process()]
    return generate_latest(_Families(families))  # type: ignore[arg-type]
