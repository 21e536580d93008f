"""Model cost: a price table, per-call cost, per-day totals per voter and the daily budget cap.

Prices are USD per million tokens (input, output). The built-in table can be overridden or
extended by MODEL_PRICES_FILE (JSON or YAML: {"model-or-provider:model": {"input": x,
"output": y}} or [x, y]). A model missing from the table is charged the conservative "*" entry
so the budget cap still means something; local providers (ollama, llamacpp) cost nothing.
The day is the wall-clock UTC day of the call (money is spent when the call is made, whatever
time the snapshot describes); it matches `model_votes.at` and the `ai_cost_by_day` view.
"""

from __future__ import annotations

import json
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


@dataclass
class CostTracker:
    """Prices calls and keeps the per-day spend per voter (in memory; `seed()` loads what the
    store already recorded for a day so a restart does not reset the budget)."""

    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    daily_budget_usd: float = 5.0
    spent: dict[date, dict[str, float]] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)
    _budget_events: set[date] = field(default_factory=set)

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
        return sum(self.spent.get(day, {}).values())

    def allowed(self, day: date) -> bool:
        """False once the day's spend reached DAILY_AI_BUDGET_USD (0 = no paid calls)."""
        return self.day_total(day) < self.daily_budget_usd

    def first_exhaustion(self, day: date) -> bool:
        """True exactly once per day when the budget is exhausted (for the budget event)."""
        if self.allowed(day) or day in self._budget_events:
            return False
        self._budget_events.add(day)
        return True
