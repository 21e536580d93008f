"""Model cost: a price table, per-call cost, per-day totals per voter and the daily budget cap.

Prices are USD per million tokens (input, output). The built-in table can be overridden or
extended by MODEL_PRICES_FILE (JSON or YAML: {"model-or-provider:model": {"input": x,
"output": y}} or [x, y]). A model missing from the table is charged the conservative "*" entry
so the budget cap still means something; local providers (ollama, llamacpp) cost nothing.
The day is the wall-clock UTC day of the call (money is spent when the call is made, whatever
time the snapshot describes); it matches `model_votes.at` and the `ai_cost_by_day` view.

Concurrent calls cannot overshoot the budget: before a paid call the caller `reserve()`s an
upper bound of its cost (`upper_bound_tokens` of the prompt, plus the reply token limit); the
reservation is refused when spent + reserved + that bound would exceed DAILY_AI_BUDGET_USD, and
`settle()`d with the actual cost (0 on failure or cancellation) after the call. Reported usage
is checked first (`checked_usage`): negative, or beyond what the request allowed, is an anomaly
charged at the request's maximum — never subtracted, never more than was reserved — so
spent + reserved ≤ budget holds at every instant whatever an endpoint reports.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "o4-mini": (1.1, 4.4),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-1": (15.0, 75.0),
    "deepseek-chat": (0.27, 1.1),
    "deepseek-reasoner": (0.55, 2.19),
    "grok-3-mini": (0.3, 0.5),
    "*": (5.0, 15.0),
}
FREE_PROVIDERS = frozenset({"ollama", "llamacpp", "rules", "replay"})


class PriceTableError(Exception):
    """MODEL_PRICES_FILE is unusable (names the file and entry)."""


def load_prices(path: Path | None) -> dict[str, tuple[float, float]]:
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    try:
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            raw: Any = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except (OSError, ValueError) as exc:
        raise PriceTableError(f"MODEL_PRICES_FILE {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise PriceTableError(f"MODEL_PRICES_FILE {path}: expected a mapping of model to prices")
    for name, value in raw.items():
        try:
            if isinstance(value, dict):
                pin, pout = float(value["input"]), float(value["output"])
            else:
                pin, pout = (float(v) for v in value)
        except (KeyError, TypeError, ValueError) as exc:
            raise PriceTableError(f"MODEL_PRICES_FILE {path}: entry {name!r} needs input and output "
                                  f"USD per million tokens ({exc})") from exc
        if pin < 0 or pout < 0:
            raise PriceTableError(f"MODEL_PRICES_FILE {path}: entry {name!r} has a negative price")
        prices[str(name)] = (pin, pout)
    return prices


def utc_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


# Tokens a request adds beyond its text: message framing, the response-format schema or tool
# definition and the provider's tool-use preamble (a few hundred tokens at most).
REQUEST_OVERHEAD_TOKENS = 1024


def upper_bound_tokens(*texts: str) -> int:
    """More prompt tokens than `texts` can be billed as: one per UTF-8 byte (byte-level BPE
    tokenizers never make a token smaller than a byte), plus `REQUEST_OVERHEAD_TOKENS`."""
    return sum(len(t.encode("utf-8", "replace")) for t in texts) + REQUEST_OVERHEAD_TOKENS


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens one call is charged for; `anomaly` says why the reported usage was not used."""

    tokens_in: int
    tokens_out: int
    anomaly: str | None = None


def _show(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 60:
        return f"{'-' if v < 0 else ''}~2^{v.bit_length()}"
    return repr(v)[:40]


def checked_usage(tokens_in: Any, tokens_out: Any, max_in: int, max_out: int, *, min_in: int = 0) -> Usage:
    """What a call is charged for: the provider's reported usage when it is plausible (whole
    numbers, `min_in` ≤ input ≤ `max_in` — the prompt's `upper_bound_tokens` — and 0 ≤ output ≤
    `max_out`, the request's max_tokens); otherwise the request's maximum (`max_in`, `max_out`),
    with the anomaly described. So a reported usage is never subtracted from the day's spend and
    never charged beyond what the request could cost (what was reserved for it)."""
    problems: list[str] = []
    for name, v, lo, hi in (("input", tokens_in, min_in, max_in), ("output", tokens_out, 0, max_out)):
        if isinstance(v, bool) or not isinstance(v, int):
            problems.append(f"{name} tokens {_show(v)} is not a whole number")
        elif v < lo:
            problems.append(f"{name} tokens {_show(v)} below {lo}")
        elif v > hi:
            problems.append(f"{name} tokens {_show(v)} above the request's maximum {hi}")
    if not problems:
        return Usage(tokens_in, tokens_out)
    return Usage(max_in, max_out, "reported usage anomaly: " + "; ".join(problems)
                 + f"; charged at the request's maximum ({max_in} in, {max_out} out)")


@dataclass(eq=False, slots=True)
class Reservation:
    """Budget held for one call in flight (see `CostTracker.reserve`)."""

    day: date
    voter: str
    usd: float
    open: bool = True


@dataclass
class CostTracker:
    """Prices calls and keeps the per-day spend per voter (in memory; `seed()` loads what the
    store already recorded for a day so a restart does not reset the budget)."""

    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    daily_budget_usd: float = 5.0
    spent: dict[date, dict[str, float]] = field(default_factory=dict)
    reserved: dict[date, float] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)
    _budget_events: set[date] = field(default_factory=set)
    _refused: set[date] = field(default_factory=set)

    def price_of(self, provider: str, model: str) -> tuple[float, float]:
        if provider in FREE_PROVIDERS:
            return (0.0, 0.0)
        for key in (f"{provider}:{model}", model):
            if key in self.prices:
                return self.prices[key]
        if model not in self._warned:
            self._warned.add(model)
            log.warning("cost.unknown_model_price", provider=provider, model=model, charged=self.prices["*"])
        return self.prices.get("*", (0.0, 0.0))

    def cost(self, provider: str, model: str, tokens_in: int, tokens_out: int) -> float:
        pin, pout = self.price_of(provider, model)
        return (tokens_in * pin + tokens_out * pout) / 1_000_000

    def add(self, day: date, voter: str, usd: float) -> None:
        per = self.spent.setdefault(day, {})
        per[voter] = per.get(voter, 0.0) + usd

    def seed(self, day: date, per_voter: dict[str, float]) -> None:
        self.spent[day] = dict(per_voter)

    def day_total(self, day: date) -> float:
        """What the day's settled calls cost."""
        return sum(self.spent.get(day, {}).values())

    def reserved_total(self, day: date) -> float:
        """What the day's calls in flight may still cost (their reservations)."""
        return self.reserved.get(day, 0.0)

    def allowed(self, day: date) -> bool:
        """False once the day's spend plus reservations reached DAILY_AI_BUDGET_USD (0 = no paid calls)."""
        return self.day_total(day) + self.reserved_total(day) < self.daily_budget_usd

    def estimate(self, provider: str, model: str, prompt_texts: tuple[str, ...] | list[str],
                 max_output_tokens: int) -> float:
        """Upper bound of a call's cost: the prompt's `upper_bound_tokens` in, `max_output_tokens` out."""
        return self.cost(provider, model, upper_bound_tokens(*prompt_texts), max_output_tokens)

    def reserve(self, day: date, voter: str, usd: float) -> Reservation | None:
        """Hold `usd` of the day's budget for a call about to start, or None (nothing held; the
        call must not be made) when spent + reserved + usd would exceed the budget."""
        if self.day_total(day) + self.reserved_total(day) + usd > self.daily_budget_usd:
            self._refused.add(day)
            return None
        self.reserved[day] = self.reserved_total(day) + usd
        return Reservation(day, voter, usd)

    def settle(self, reservation: Reservation, actual_usd: float = 0.0) -> None:
        """End a reservation: `actual_usd` (0 when the call failed or was cancelled) becomes spend;
        a negative, non-finite or larger amount is charged as the reservation. Settling twice does
        nothing."""
        if not reservation.open:
            return
        reservation.open = False
        left = self.reserved_total(reservation.day) - reservation.usd
        self.reserved[reservation.day] = left if left > 1e-12 else 0.0
        if not math.isfinite(actual_usd) or actual_usd < 0 or actual_usd > reservation.usd:
            # never subtracted, never more than was held (callers charge anomalies at the bound)
            log.warning("cost.reservation_exceeded", voter=reservation.voter, reserved_usd=reservation.usd,
                        actual_usd=actual_usd)
            actual_usd = reservation.usd
        if actual_usd:
            self.add(reservation.day, reservation.voter, actual_usd)

    def first_exhaustion(self, day: date) -> bool:
        """True exactly once per day, once the budget is exhausted or refused a call (for the
        budget event)."""
        if day in self._budget_events or (self.allowed(day) and day not in self._refused):
            return False
        self._budget_events.add(day)
        return True
