"""Typed settings from environment variables and an optional `.env` file.

Every variable is documented in `.env.example`. `load_settings()` turns pydantic's validation
errors into one `ConfigError` line per bad variable that names the variable, what is wrong with
its value and the allowed range. Secrets are `SecretStr`: they never appear in `repr`, logs or
`public_view()`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KNOWN_TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")

# Providers that speak the OpenAI chat-completions wire format, with their public base URLs.
OPENAI_COMPATIBLE_DEFAULTS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "qwen": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
    "xai": "https://api.x.ai/v1",
    "grok": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
}
KEYLESS_PROVIDERS = frozenset({"ollama", "llamacpp"})
_SECRET_SUFFIXES = ("_API_KEY", "_API_SECRET", "_TOKEN", "_PASSWORD", "_SECRET")


class TradingMode(StrEnum):
    BACKTEST = "backtest"
    PAPER = "paper"
    LIVE = "live"


class ConfigError(Exception):
    """A configuration value is unusable. The message is one line per problem, safe to print."""


def timeframe_seconds(tf: str) -> int:
    """Seconds in a timeframe such as '5m', '1h' or '1d'."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if len(tf) < 2 or tf[-1] not in units or not tf[:-1].isdigit():
        raise ValueError(f"unknown timeframe {tf!r}")
    return int(tf[:-1]) * units[tf[-1]]


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class ProviderConfig:
    """Per-provider connection settings, read from `<PROVIDER>_API_KEY`, `_BASE_URL`,
    `_TIMEOUT_SECONDS`, `_TEMPERATURE`, `_MAX_CONCURRENCY` (falling back to the global model
    defaults; `max_concurrency` is how many calls to the provider may be in flight at once)."""

    def __init__(
        self,
        name: str,
        api_key: SecretStr | None,
        base_url: str | None,
        timeout_seconds: float,
        temperature: float,
        max_concurrency: int = 64,
    ) -> None:
        self.name = name
        self.api_key = api_key
        self.base_url = base_url
        self.timeout_seconds = timeout_seconds
        self.temperature = temperature
        self.max_concurrency = max_concurrency

    def __repr__(self) -> str:
        key = "set" if self.api_key else "unset"
        return f"ProviderConfig({self.name}, key={key}, base_url={self.base_url}, timeout={self.timeout_seconds})"


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
    scan_interval_seconds: int = Field(900, ge=10, le=86_400)
    data_dir: Path = Path("data")
    var_dir: Path = Path("var")
    weight_budget_share: float = Field(0.5, gt=0, le=0.9)
    # open positions are checked against the live price at least this often (paper: 1m bars)
    monitor_interval_seconds: int = Field(60, ge=60, le=900)

    # --- consensus --------------------------------------------------------------------------
    models: CsvList = Field(default_factory=list)
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

    @field_validator("symbols", "blocked_symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        value = _csv(value)
        if isinstance(value, list):
            return [str(v).upper().replace("/", "").replace(":USDT", "") for v in value]
        return value

    @field_validator("timeframes", "models", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _csv(value)

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
        for item in value:
            provider, sep, model = item.partition(":")
            if not sep or not provider or not model:
                raise ValueError(f"entry {item!r} must look like provider:model, e.g. openai:gpt-4.1-mini")
        return value

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
        return _endpoint_url(value, ("http", "https"), "an http(s) URL", "https://fapi.binance.com")

    @field_validator("binance_fstream_url")
    @classmethod
    def _check_fstream_url(cls, value: str) -> str:
        url = _endpoint_url(value, ("ws", "wss"), "a ws(s) URL", "wss://fstream.binance.com")
        return url.removesuffix("/ws")  # the base: Quorum appends /ws (ccxt turns it into /market/ws)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.min_stop_loss_pct >= self.max_stop_loss_pct:
            raise ValueError("MIN_STOP_LOSS_PCT must be below MAX_STOP_LOSS_PCT")
        if timeframe_seconds(self.decision_timeframe) % timeframe_seconds(self.execution_timeframe):
            raise ValueError("DECISION_TIMEFRAME must be a multiple of EXECUTION_TIMEFRAME")
        kline_lengths = {timeframe_seconds(tf) for tf in KNOWN_TIMEFRAMES}
        if self.monitor_interval_seconds not in kline_lengths or \
                timeframe_seconds(self.execution_timeframe) % self.monitor_interval_seconds:
            raise ValueError(f"MONITOR_INTERVAL_SECONDS={self.monitor_interval_seconds} must be a kline length "
                             "(60, 180, 300, ...) that divides EXECUTION_TIMEFRAME")
        return self

    # --- derived ----------------------------------------------------------------------------
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
        env = _env_with_dotenv()
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
        for name, value in _env_with_dotenv().items():
            if value and name.endswith(_SECRET_SUFFIXES) and value not in values:
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


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_host(value: str) -> str:
    """A bind address: an IP address (IPv4 dotted quad or IPv6) or a hostname. Empty is refused
    (it would bind every interface), and so are numeric shorthands such as `0` or `127.1`."""
    host = value.strip()
    if not host:
        raise ValueError("empty; give an IP address or a hostname, e.g. 127.0.0.1 (empty binds every interface)")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError("not an IP address or a hostname (numeric shorthands such as '0' or '127.1' are refused: "
                         "they bind other interfaces than they seem to)")
    return host


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts local connections (conservative: any hostname other
    than localhost counts as exposed)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_secret_field(name: str) -> bool:
    return Settings.model_fields[name].annotation in (SecretStr, SecretStr | None)


def _env_with_dotenv() -> dict[str, str]:
    env: dict[str, str] = {}
    dotenv = Path(".env")
    if dotenv.is_file():
        for line in dotenv.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, _, v = line.partition("=")
                env[k.strip().upper()] = v.strip().strip('"').strip("'")
    env.update({k.upper(): v for k, v in os.environ.items()})
    return env


def _endpoint_url(value: str, schemes: tuple[str, ...], kind: str, example: str) -> str:
    """A base URL of a Binance endpoint: scheme in `schemes`, a host, an optional path prefix
    (proxies); no credentials, query or fragment; without its trailing slash."""
    from urllib.parse import urlsplit

    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in schemes or not parts.hostname:
        raise ValueError(f"must be {kind} with a host, e.g. {example}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials (user:password@)")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"must be a base URL without query or fragment, e.g. {example}")
    return (parts.scheme.lower() + text[len(parts.scheme):]).rstrip("/")


def parse_partial_exits(spec: str) -> list[tuple[float, float]]:
    """Parse '0.33@1R,0.33@2R' into [(fraction, r_multiple), ...]. Empty means no partials."""
    plan: list[tuple[float, float]] = []
    total = 0.0
    for part in _csv(spec):
        frac_s, sep, r_s = part.partition("@")
        if not sep or not r_s.upper().endswith("R"):
            raise ValueError(f"entry {part!r} must look like 0.33@1R")
        try:
            frac, r_mult = float(frac_s), float(r_s[:-1])
        except ValueError as exc:
            raise ValueError(f"entry {part!r} must look like 0.33@1R") from exc
        if not (math.isfinite(frac) and math.isfinite(r_mult)) or not 0 < frac < 1 or r_mult <= 0:
            raise ValueError(f"entry {part!r}: fraction must be in (0, 1) and R above 0")
        total += frac
        plan.append((frac, r_mult))
    if total >= 1.0:
        raise ValueError("fractions must add up to less than 1 (the rest trails)")
    return sorted(plan, key=lambda p: p[1])


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
