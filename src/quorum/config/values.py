"""Parsing and validation of single configuration values (lists, bind addresses, endpoint URLs,
partial-exit plans, MODELS entries), the model providers' defaults and `ProviderConfig`, the
environment as `Settings` sees it (`.env` under the process environment) and `ConfigError`. No
pydantic model here: `settings.py` uses these in its validators.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import SecretStr
from pydantic_settings import NoDecode

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
# Every provider MODELS may name without its own <PROVIDER>_BASE_URL.
KNOWN_PROVIDERS = frozenset(OPENAI_COMPATIBLE_DEFAULTS) | {"anthropic"}
SECRET_SUFFIXES = ("_API_KEY", "_API_SECRET", "_TOKEN", "_PASSWORD", "_SECRET")


class ConfigError(Exception):
    """A configuration value is unusable. The message is one line per problem, safe to print."""


def split_csv(value: Any) -> Any:
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


def check_models(entries: list[str]) -> list[str]:
    """MODELS entries: each `provider:model`, the provider a known one or one with its own
    `<PROVIDER>_BASE_URL` (any other OpenAI-compatible endpoint). A typo stops start-up."""
    env: dict[str, str] | None = None
    for item in entries:
        provider, sep, model = item.partition(":")
        if not sep or not provider.strip() or not model.strip():
            raise ValueError(f"entry {item!r} must look like provider:model, e.g. openai:gpt-4.1-mini")
        name = provider.strip().lower()
        if name not in KNOWN_PROVIDERS:
            env = env if env is not None else env_with_dotenv()
            if not env.get(f"{name.upper()}_BASE_URL"):
                known = ", ".join(sorted(KNOWN_PROVIDERS))
                raise ValueError(f"entry {item!r}: unknown provider {name!r}; known: {known} "
                                 f"(another OpenAI-compatible endpoint needs {name.upper()}_BASE_URL)")
    return entries


def env_with_dotenv() -> dict[str, str]:
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


def endpoint_url(value: str, schemes: tuple[str, ...], kind: str, example: str) -> str:
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
    for part in split_csv(spec):
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
