"""One scrubber for every exit: key-like material is replaced before text is logged, stored,
sent to Telegram or served by the API.

`scrub(text)` replaces, in this order:

- every registered secret (`register_secrets`: the configured keys, tokens and passwords, the
  password inside a registered URL) and its escaped copies (JSON, double JSON, `\\/`, URL-quoted);
  a long secret's first 10 characters and what follows them (a copy cut short or masked);
- URL credentials (`scheme://user:PASSWORD@host`);
- `Bearer …` / `Basic …` credentials;
- `name=value` / `"name": "value"` pairs whose name says secret (`api_key`, `key`, `apikey`,
  `x-api-key`, `secret`, `token`, `password`, `signature`, …), in queries, JSON and prose;
- provider keys by shape: `sk-…` including masked (`sk-proj-****abcd`, `sk-ant-...`) and escaped forms;
- Telegram bot tokens (`123456:AA…`);
- generic key-shaped tokens: a run of 20+ `[A-Za-z0-9_-]` with upper case, lower case and digits,
  many letters outside the hex alphabet and frequent character-class changes (random text).

Identifiers Quorum makes itself are never touched: hex digests (snapshot hashes, sha256),
client order ids (`qpS-<hex20>-0`), decision and position ids (`d-BTCUSDT-<ms>-<hex8>`, `p-…`)
and UUIDs fail the generic test (hex, or explicitly recognised). `scrub_value` applies the same to
every string inside dicts, lists and tuples (dict keys are kept; the value of a key that names a
secret is replaced whole)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import pairwise
from typing import Any
from urllib.parse import quote, urlsplit

MASK = "***"

_secrets: list[str] = []  # longest first, so a secret containing another is replaced whole
_PREFIX_LEN = 10  # a long secret's first characters mark a cut or masked copy of it
_prefixes: dict[str, re.Pattern[str]] = {}

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@\"']*:)([^\s/@\"']+)(@)")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\*\*\*)[A-Za-z0-9\-._~+/=:\\]+")
_NAMES = (r"(?:[A-Za-z0-9]+[_\-])*"
          r"(?:api[_\- ]?key|apikey|access[_\-]?key|secret[_\-]?key|private[_\-]?key|client[_\-]?secret|"
          r"api[_\-]?secret|secret|(?:access|refresh|auth|bot|api|bearer)[_\-]?token|token|password|passwd|pwd|"
          r"signature|authorization|x[_\-]api[_\-]key)")
# a name, optional closing quote (escaped or not), a separator, optional opening quote, the value;
# whether the name says secret is decided in `_name_value` (one linear pass, no nested repeats)
_NAME_VALUE = re.compile(
    r"(?<![\w\-.])([A-Za-z][\w\-]*+)(\\{0,3}[\"']?\s*[:=]\s*(?:\\{0,3}[\"'])?)"
    r"([^\s\"'&,;}\]\)\\<>]++(?:\\+/[^\s\"'&,;}\]\)\\<>]*+)*+)"
)
_NAME_HINTS = ("key", "secret", "token", "passw", "pwd", "signature", "authorization")
_SK_KEY = re.compile(r"(?<![A-Za-z0-9])sk-(?!\*\*\*)(?:[A-Za-z0-9_\-*.+=/…]|\\+[/u]?)+")
_TELEGRAM = re.compile(r"[0-9]{6,12}:[A-Za-z0-9_\-]{30,}")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-]{20,}")
_OWN_ID = re.compile(
    r"^(?:q[a-z][A-Z]-[0-9a-f]{20}-\d+"  # client order ids
    r"|(?:p-)?d-[A-Z0-9]{2,40}-\d{9,16}-[0-9a-f]{8}"  # decision / position ids
    r"|p-[0-9a-f]{20}"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
_SECRET_KEY_NAME = re.compile(r"(?i)" + _NAMES)  # names of secrets (fullmatch), e.g. dict keys


def register_secrets(values: Iterable[str | None]) -> None:
    """Add values (API keys, tokens, passwords, URLs with a password) that must never leave the
    process; escaped copies and the password of a URL are registered with them."""
    added = False
    for value in values:
        if not value or len(value) < 4:
            continue
        if len(value) >= 2 * _PREFIX_LEN and "://" not in value:
            head = value[:_PREFIX_LEN]
            _prefixes.setdefault(head, re.compile(re.escape(head) + r"[A-Za-z0-9_\-+/=.*…\\]*"))
        for v in _variants(value):
            if len(v) >= 4 and v not in _secrets:
                _secrets.append(v)
                added = True
    if added:
        _secrets.sort(key=len, reverse=True)


def secret_markers() -> list[str]:
    """Substrings whose presence means a registered secret (or a cut or masked copy) may be in a
    text: the values, their variants and the first characters of the long ones (the stored-secrets
    migration selects rows by them)."""
    return [*_secrets, *_prefixes]


def _variants(value: str) -> set[str]:
    out = {value}
    if "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password and len(password) >= 4:
            out.add(password)
    for v in list(out):
        once = json.dumps(v)[1:-1]
        out.update({once, json.dumps(once)[1:-1], once.replace("/", "\\/"), quote(v, safe=""),
                    v.replace("/", "\\/"), repr(v)[1:-1]})
    return out


def _name_value(match: re.Match[str]) -> str:
    name, sep, value = match.groups()
    if value.startswith(MASK) or not (name.lower() == "key" or _SECRET_KEY_NAME.fullmatch(name)):
        return match.group(0)
    if value.lower() in ("bearer", "basic"):  # `Authorization: Bearer ***` is already handled
        return match.group(0)
    return f"{name}{sep}{MASK}"


def _generic(match: re.Match[str]) -> str:
    token = match.group(0)
    return MASK if looks_like_key(token) else token


def looks_like_key(token: str) -> bool:
    """Whether a run of `[A-Za-z0-9_-]` looks like random key material (not a word, not one of
    Quorum's identifiers, not a hex digest)."""
    if len(token) < 20 or _OWN_ID.match(token):
        return False
    core = token.replace("-", "").replace("_", "")
    if len(core) < 20 or not (any(c.isupper() for c in core) and any(c.islower() for c in core)
                              and any(c.isdigit() for c in core)):
        return False
    non_hex = sum(1 for c in core if c.isalpha() and c.lower() not in "abcdef")
    if non_hex < 0.25 * len(core):
        return False
    changes = sum(1 for a, b in pairwise(core) if _cls(a) != _cls(b))
    return changes >= 0.3 * (len(core) - 1)


def _cls(c: str) -> int:
    return 0 if c.isdigit() else 1 if c.isupper() else 2


def scrub(text: str) -> str:
    """`text` with every key-like part replaced by *** (see the module docstring)."""
    if not text:
        return text
    for s in _secrets:
        if s in text:
            text = text.replace(s, MASK)
    for head, pattern in _prefixes.items():  # a configured key cut short, or masked after its start
        if head in text:
            text = pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1***\3", text)
    low = text.lower()
    if "bearer" in low or "basic" in low:
        text = _AUTH_SCHEME.sub(r"\1\2***", text)
    if "sk-" in text:
        text = _SK_KEY.sub("sk-***", text)
    if any(h in low for h in _NAME_HINTS):
        text = _NAME_VALUE.sub(_name_value, text)
    if ":" in text and len(text) >= 37:
        text = _TELEGRAM.sub(MASK, text)
    return _TOKEN_RUN.sub(_generic, text) if len(text) >= 20 else text


def scrub_value(value: Any) -> Any:
    """A copy of `value` with every string scrubbed (dicts, lists and tuples walked; a dict entry
    whose key names a secret has its value replaced; an exception becomes 'Type: message')."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or type(value) in (float, int, bool):
        return value
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and isinstance(v, str) and v and _SECRET_KEY_NAME.fullmatch(k)
                    else scrub_value(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_value(v) for v in value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value
