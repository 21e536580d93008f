"""The settings model (`Settings`: every variable, its range and the cross-checks) and
`load_settings`, which turns pydantic's validation errors into one `ConfigError` line per bad
variable. The value parsers live in `quorum.config.values`, timeframes in `.timeframes`.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from quorum.config.legacy import LegacySettingsSource
from quorum.config.timeframes import KNOWN_TIMEFRAMES, timeframe_seconds
from quorum.config.values import (
    OPENAI_COMPATIBLE_DEFAULTS,
    SECRET_SUFFIXES,
    ConfigError,
    CsvList,
    ProviderConfig,
    check_host,
    check_models,
    endpoint_url,
    env_with_dotenv,
    is_loopback,
    parse_partial_exits,
    split_csv,
)


class TradingMode(StrEnum):
    BACKTEST = "backtest"
    PAPER = "paper"
    LIVE = "live"


class Settings(BaseSettings):
    """All of Quorum's configuration. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        allow_inf_nan=False,  # `inf` / `nan` are refused for every numeric setting
    )

    # --- mode and account -------------------------------------------------------------------
    trading_mode: TradingMode = TradingMode.PAPER
    initial_capital: float = Field(1000.0, gt=0, le=1e9)

    # --- universe and data ------------------------------------------------------------------
    symbols: CsvList = Field(default_factory=list)
    universe_size: int = Field(20, ge=1, le=500)
    min_quote_volume_usd: float = Field(50_000_000.0, ge=0)
    blocked_symbols: CsvList = Field(default_factory=list)
    timeframes: CsvList = Field(default_factory=lambda: ["15m", "1h", "4h"])
    decision_timeframe: str = "15m"
    execution_timeframe: str = "5m"
    data_dir: Path = Path("data")
    # data quality of candle files (quorum.market.quality): flag gaps/outliers and go on, or refuse
    data_quality: str = Field("flag", pattern="^(flag|refuse)$")
    data_outlier_window: int = Field(100, ge=10, le=100_000)
    data_outlier_range_mult: float = Field(200.0, gt=1, le=1e9)
    data_outlier_move_mult: float = Field(300.0, gt=1, le=1e9)
    data_outlier_price_factor: float = Field(5.0, gt=1, le=1e9)
    var_dir: Path = Path("var")
    weight_budget_share: float = Field(0.5, gt=0, le=0.9)
    # open positions are checked against the live price at least this often (paper: 1m bars)
    monitor_interval_seconds: int = Field(60, ge=60, le=900)

    # --- consensus --------------------------------------------------------------------------
    models: CsvList = Field(default_factory=list)
    analysts: CsvList = Field(default_factory=list)  # your own analysts: PATH.py:ClassName, ...
    min_ai_confidence: float = Field(0.65, ge=0, le=1)
    min_voters: int = Field(1, ge=1, le=20)
    min_agreement: float = Field(0.66, gt=0, le=1)
    model_timeout_seconds: float = Field(60.0, gt=0, le=1800)
    model_temperature: float = Field(0.2, ge=0, le=2)
    consensus_deadline_seconds: float = Field(120.0, gt=0, le=3600)
    ai_cache_ttl_seconds: int | None = Field(None, ge=1, le=86_400)
    daily_ai_budget_usd: float = Field(5.0, ge=0, le=100_000)
    model_prices_file: Path | None = None

    # --- risk -------------------------------------------------------------------------------
    max_leverage: int = Field(5, ge=1, le=125)
    risk_per_trade_pct: float = Field(1.0, gt=0, le=10)
    max_notional_pct: float = Field(200.0, gt=0, le=2000)
    max_total_notional_pct: float = Field(400.0, gt=0, le=5000)
    min_stop_loss_pct: float = Field(0.4, gt=0, le=50)
    max_stop_loss_pct: float = Field(8.0, gt=0, le=50)
    liquidation_buffer_multiple: float = Field(2.0, ge=1, le=20)
    trailing_activation_pct: float = Field(2.0, ge=0, le=100)
    trailing_distance_pct: float = Field(1.5, gt=0, le=50)
    trailing_atr_multiple: float | None = Field(None, gt=0, le=20)
    break_even_at_r: float = Field(1.0, ge=0, le=20)
    partial_exits: str = "0.33@1R,0.33@2R"
    time_stop_hours: float = Field(48.0, ge=0, le=24 * 90)
    min_reward_risk: float = Field(1.5, ge=0, le=20)
    fee_cover_multiple: float = Field(3.0, ge=0, le=100)
    confidence_size_cap: float = Field(1.5, ge=1, le=3)
    kelly_fraction: float = Field(0.0, ge=0, le=1)
    # an entry whose profit at its take-profit, net of estimated fees and funding, is below this
    # (USDT) is rejected; 0 = off (legacy name MIN_PROFIT_USD)
    min_expected_profit_usd: float = Field(0.0, ge=0, le=1e9)

    # --- circuit breakers and exposure ------------------------------------------------------
    max_daily_loss_pct: float = Field(5.0, gt=0, le=100)
    max_consecutive_losses: int = Field(4, ge=1, le=100)
    loss_streak_cooldown_minutes: int = Field(240, ge=0, le=10_080)
    max_drawdown_pct: float = Field(20.0, gt=0, le=100)
    symbol_cooldown_minutes: int = Field(60, ge=0, le=10_080)
    max_concurrent_positions: int = Field(5, ge=1, le=100)
    capital_per_position: float = Field(100.0, gt=0)
    correlation_threshold: float = Field(0.8, gt=0, le=1)
    max_positions_per_cluster: int = Field(2, ge=1, le=100)
    min_hold_minutes: int = Field(15, ge=0, le=10_080)
    reentry_cooldown_minutes: int = Field(30, ge=0, le=10_080)
    max_opens_per_hour: int = Field(4, ge=1, le=1000)

    # --- execution and fill model -----------------------------------------------------------
    margin_mode: str = Field("isolated", pattern="^(isolated|cross)$")
    taker_fee_pct: float = Field(0.05, ge=0, le=1)
    maker_fee_pct: float = Field(0.02, ge=-0.1, le=1)
    slippage_spread_bps: float = Field(1.0, ge=0, le=500)
    slippage_impact_bps_per_100k: float = Field(2.0, ge=0, le=500)
    paper_funding_rate: float = Field(0.0001, ge=-0.05, le=0.05)

    # --- services ---------------------------------------------------------------------------
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_token: SecretStr | None = None
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field("auto", pattern="^(auto|json|console)$")

    # --- exchange ---------------------------------------------------------------------------
    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None
    binance_demo: bool = False
    # REST base of USDⓈ-M futures and the websocket base of its streams (fakes, proxies, mirrors)
    binance_fapi_url: str = "https://fapi.binance.com"
    binance_fstream_url: str = "wss://fstream.binance.com"

    # --- go-live gate -----------------------------------------------------------------------
    gate_min_days: int = Field(28, ge=0, le=3650)
    gate_min_trades: int = Field(100, ge=0, le=1_000_000)
    gate_min_profit_factor: float = Field(1.1, ge=0, le=100)
    gate_max_drawdown_pct: float = Field(20.0, gt=0, le=100)

    # --- notifications ----------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_url: str = "https://api.telegram.org"

    # --- consensus (AI voters) ---
    prompts_dir: Path | None = None
    rules_voter: str = Field("auto", pattern="^(auto|always)$")
    model_retry_attempts: int = Field(3, ge=1, le=10)
    model_retry_initial_seconds: float = Field(0.5, ge=0, le=60)
    model_retry_max_seconds: float = Field(8.0, ge=0, le=300)
    model_max_tokens: int = Field(800, ge=64, le=32_000)
    # symbols whose consensus is gathered at once in a decision cycle, and model calls in flight
    # per provider (`<PROVIDER>_MAX_CONCURRENCY` overrides the latter per provider)
    max_concurrent_decisions: int = Field(64, ge=1, le=1000)
    model_max_concurrency: int = Field(64, ge=1, le=1000)

    # --- service resilience -----------------------------------------------------------------
    # consecutive failed engine steps that pause new entries (critical alert); entries resume by
    # themselves after as many successful steps in a row
    max_consecutive_step_failures: int = Field(5, ge=1, le=1000)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, then the earlier bots' names (`LegacySettingsSource`)."""
        return (init_settings, env_settings, dotenv_settings, LegacySettingsSource(settings_cls, dotenv_settings),
                file_secret_settings)

    @field_validator("symbols", "blocked_symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        value = split_csv(value)
        if isinstance(value, list):
            return [str(v).upper().replace("/", "").replace(":USDT", "") for v in value]
        return value

    @field_validator("timeframes", "models", "analysts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("analysts")
    @classmethod
    def _check_analysts(cls, value: list[str]) -> list[str]:
        """Shape and file only: the file is imported when the voters are built."""
        for item in value:
            path, sep, name = item.rpartition(":")
            if not sep or not path.endswith(".py") or not name.isidentifier():
                raise ValueError(f"entry {item!r} must look like PATH.py:ClassName, "
                                 "e.g. examples/ema_cross.py:EmaCross")
            if not Path(path).is_file():
                raise ValueError(f"entry {item!r}: no such file {path}")
        return value

    @field_validator("timeframes")
    @classmethod
    def _check_timeframes(cls, value: list[str]) -> list[str]:
        for tf in value:
            if tf not in KNOWN_TIMEFRAMES:
                raise ValueError(f"unknown timeframe {tf!r}; allowed: {', '.join(KNOWN_TIMEFRAMES)}")
        return value

    @field_validator("decision_timeframe", "execution_timeframe")
    @classmethod
    def _check_timeframe(cls, value: str) -> str:
        if value not in KNOWN_TIMEFRAMES:
            raise ValueError(f"unknown timeframe {value!r}; allowed: {', '.join(KNOWN_TIMEFRAMES)}")
        return value

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: list[str]) -> list[str]:
        return check_models(value)

    @field_validator("partial_exits")
    @classmethod
    def _check_partials(cls, value: str) -> str:
        parse_partial_exits(value)
        return value

    @field_validator("api_host")
    @classmethod
    def _check_api_host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("binance_fapi_url")
    @classmethod
    def _check_fapi_url(cls, value: str) -> str:
        return endpoint_url(value, ("http", "https"), "an http(s) URL", "https://fapi.binance.com")

    @field_validator("binance_fstream_url")
    @classmethod
    def _check_fstream_url(cls, value: str) -> str:
        url = endpoint_url(value, ("ws", "wss"), "a ws(s) URL", "wss://fstream.binance.com")
        return url.removesuffix("/ws")  # the base: Quorum appends /ws (ccxt turns it into /market/ws)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.min_stop_loss_pct >= self.max_stop_loss_pct:
            raise ValueError(f"MIN_STOP_LOSS_PCT ({self.min_stop_loss_pct:g}) must be below MAX_STOP_LOSS_PCT "
                             f"({self.max_stop_loss_pct:g}); both in percent of the entry (MIN/MAX_STOP_LOSS_PERCENT "
                             "are fractions: 0.07 = 7 %)")
        if timeframe_seconds(self.decision_timeframe) % timeframe_seconds(self.execution_timeframe):
            raise ValueError("DECISION_TIMEFRAME must be a multiple of EXECUTION_TIMEFRAME")
        if self.decision_timeframe not in self.timeframes:  # the decision needs its own view in every snapshot
            self.timeframes = [self.decision_timeframe, *self.timeframes]
        kline_lengths = {timeframe_seconds(tf) for tf in KNOWN_TIMEFRAMES}
        if self.monitor_interval_seconds not in kline_lengths or \
                timeframe_seconds(self.execution_timeframe) % self.monitor_interval_seconds:
            raise ValueError(f"MONITOR_INTERVAL_SECONDS={self.monitor_interval_seconds} must be a kline length "
                             "(60, 180, 300, ...) that divides EXECUTION_TIMEFRAME")
        return self

    # --- derived ----------------------------------------------------------------------------
    @property
    def scan_interval_seconds(self) -> int:
        """Seconds between decisions: one DECISION_TIMEFRAME bar (the earlier bots'
        SCAN_INTERVAL_SECONDS sets DECISION_TIMEFRAME; see `quorum.config.legacy`)."""
        return timeframe_seconds(self.decision_timeframe)

    @property
    def cache_ttl_seconds(self) -> int:
        """AI cache TTL: about one bar of the decision timeframe unless set."""
        return self.ai_cache_ttl_seconds or timeframe_seconds(self.decision_timeframe)

    @property
    def partial_exit_plan(self) -> list[tuple[float, float]]:
        return parse_partial_exits(self.partial_exits)

    def provider(self, name: str) -> ProviderConfig:
        """Connection settings of a model provider (see class docstring for the variables)."""
        prefix = name.upper()
        env = env_with_dotenv()
        key = env.get(f"{prefix}_API_KEY") or None
        base = env.get(f"{prefix}_BASE_URL") or OPENAI_COMPATIBLE_DEFAULTS.get(name)
        try:
            timeout = float(env.get(f"{prefix}_TIMEOUT_SECONDS") or self.model_timeout_seconds)
            temperature = float(env.get(f"{prefix}_TEMPERATURE") or self.model_temperature)
        except ValueError as exc:
            raise ConfigError(f"{prefix}_TIMEOUT_SECONDS/{prefix}_TEMPERATURE: not a number ({exc})") from exc
        if not math.isfinite(timeout) or timeout <= 0 or timeout > 1800:
            raise ConfigError(f"{prefix}_TIMEOUT_SECONDS={timeout}: must be in (0, 1800] seconds")
        if not math.isfinite(temperature) or not 0 <= temperature <= 2:
            raise ConfigError(f"{prefix}_TEMPERATURE={temperature}: must be in [0, 2]")
        raw = (env.get(f"{prefix}_MAX_CONCURRENCY") or "").strip()
        try:
            concurrency = int(raw) if raw else self.model_max_concurrency
        except ValueError:
            raise ConfigError(f"{prefix}_MAX_CONCURRENCY={raw!r}: not a whole number; allowed 1..1000") from None
        if not 1 <= concurrency <= 1000:
            raise ConfigError(f"{prefix}_MAX_CONCURRENCY={concurrency}: must be in 1..1000 calls in flight")
        return ProviderConfig(name, SecretStr(key) if key else None, base, timeout, temperature, concurrency)

    def secret_values(self) -> list[str]:
        """Every configured secret's plain value, for redaction filters and leak tests."""
        values = []
        for name in type(self).model_fields:
            v = getattr(self, name)
            if isinstance(v, SecretStr) and v.get_secret_value():
                values.append(v.get_secret_value())
        # Provider keys are read dynamically (`<PROVIDER>_API_KEY`), so treat every such
        # variable as a secret whether or not its provider is in MODELS.
        for name, value in env_with_dotenv().items():
            if value and name.endswith(SECRET_SUFFIXES) and value not in values:
                values.append(value)
        return values

    def public_view(self) -> dict[str, Any]:
        """Settings safe to print or serve: secrets shown only as set/unset."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            v = getattr(self, name)
            if isinstance(v, SecretStr) or (v is None and _is_secret_field(name)):
                out[name] = "set" if v else "unset"
            elif isinstance(v, Path):
                out[name] = str(v)
            elif isinstance(v, StrEnum):
                out[name] = v.value
            else:
                out[name] = v
        return out

    @property
    def api_is_loopback(self) -> bool:
        """Whether API_HOST only accepts connections from this machine (localhost, 127.x, ::1)."""
        return is_loopback(self.api_host)

    def check_bind(self) -> None:
        """Refuse to serve the API beyond this machine without API_TOKEN."""
        if not self.api_is_loopback and not (self.api_token and self.api_token.get_secret_value()):
            raise ConfigError(
                f"API_HOST={self.api_host} exposes the API beyond this machine: set API_TOKEN (it guards the "
                "control endpoints) or bind API_HOST=127.0.0.1")

    def check_can_start(self) -> None:
        """Refuse unsafe starts: live mode needs exchange keys and an API token; a non-loopback
        API_HOST needs API_TOKEN."""
        self.check_bind()
        if self.trading_mode is TradingMode.LIVE:
            missing = [
                var
                for var, val in (
                    ("BINANCE_API_KEY", self.binance_api_key),
                    ("BINANCE_API_SECRET", self.binance_api_secret),
                    ("API_TOKEN", self.api_token),
                )
                if not (val and val.get_secret_value())
            ]
            if missing:
                raise ConfigError(
                    f"TRADING_MODE=live refuses to start: {', '.join(missing)} not set "
                    "(live trading needs exchange keys and a token for the control API)"
                )


def _is_secret_field(name: str) -> bool:
    return Settings.model_fields[name].annotation in (SecretStr, SecretStr | None)


def _describe_error(err: dict[str, Any]) -> str:
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else ""
    var = field.upper() if field else "configuration"
    field_info = Settings.model_fields.get(field)
    secret = field_info is not None and _is_secret_field(field)
    value = "***" if secret else err.get("input")
    if isinstance(value, str) and "@" in value:  # a URL's user:password never reaches a message
        value = re.sub(r"//[^/@\s]*@", "//***@", value)
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    allowed = ""
    if field_info is not None:
        bounds = []
        for meta in field_info.metadata:
            for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                b = getattr(meta, attr, None)
                if b is not None:
                    bounds.append(f"{sym} {b}")
        if bounds:
            allowed = f" (allowed: {' and '.join(bounds)})"
        elif field == "trading_mode":
            allowed = " (allowed: backtest, paper, live)"
    if not field:
        return f"configuration: {msg}"
    return f"{var}={value!r}: {msg}{allowed}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and `.env`); raise `ConfigError` on bad values."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe_error(e) for e in exc.errors(include_url=False)]  # type: ignore[arg-type]
        raise ConfigError("; ".join(lines)) from None


__all__ = ["ConfigError", "Settings", "TradingMode", "load_settings"]  # ConfigError lives in values.py
