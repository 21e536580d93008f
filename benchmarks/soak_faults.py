"""The soak's fault schedule: which fault, when (simulated time), seeded and fixed.

`schedule(seed, start_ms, end_ms, kills=5)` spreads every kind over the run — the exchange's REST
5xx bursts, late answers (client timeouts), a 429 followed by a 418, websocket drops, model 5xx
and time-outs, one Postgres and one Redis outage, and SIGKILLs of the service (one of them timed
to land while a stop is being crossed, the rest at fixed times). SIGKILLs come in the first
40 % of the run, so the last process lives long enough to measure memory growth. The same seed
gives the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

HOUR_MS = 3_600_000

# kind → how many per simulated day (at least one of each in any run)
PER_DAY = {"rest_5xx": 2.0, "rest_timeout": 0.5, "rate_limit": 0.5, "ws_drop": 1.0, "llm_5xx": 1.0,
           "llm_timeout": 0.5}
ONCE = ("postgres_outage", "redis_outage")


@dataclass(frozen=True)
class Fault:
    at_ms: int  # simulated time
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


def schedule(seed: int, start_ms: int, end_ms: int, *, kills: int = 5) -> list[Fault]:
    """The run's faults, ordered by time (see the module docstring)."""
    rng = random.Random(seed)
    span = end_ms - start_ms
    lo, hi = start_ms + 2 * HOUR_MS, end_ms - 2 * HOUR_MS  # not during start-up, not at the very end
    days = span / 86_400_000
    out: list[Fault] = []
    for kind, rate in PER_DAY.items():
        for _ in range(max(1, round(rate * days))):
            out.append(Fault(rng.randint(lo, hi), kind, _params(kind, rng)))
    for i, kind in enumerate(ONCE):  # the outages in the middle third, apart from each other
        out.append(Fault(start_ms + int(span * (0.35 + 0.25 * i)), kind))
    early_hi = start_ms + int(span * 0.4)
    out.append(Fault(rng.randint(lo, early_hi), "sigkill_stop_cross"))
    for _ in range(max(0, kills - 1)):
        out.append(Fault(rng.randint(lo, early_hi), "sigkill"))
    return sorted(out, key=lambda f: f.at_ms)


def _params(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "rest_5xx":
        return {"status": rng.choice([500, 502, 503]), "count": rng.randint(3, 12)}
    if kind == "rest_timeout":
        return {"count": rng.randint(1, 2)}
    if kind == "rate_limit":
        return {"retry_after_s": rng.choice([1, 2]), "ban_s": rng.choice([3, 4])}
    if kind == "llm_5xx":
        return {"count": rng.randint(2, 8)}
    if kind == "llm_timeout":
        return {"count": rng.randint(1, 3)}
    return {}
