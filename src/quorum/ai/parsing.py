"""Reading a model's reply: tolerant extraction, then strict validation.

`extract_json` digs one JSON object out of whatever came back (code fences, prose around it,
an array holding the object, trailing commas, full-width punctuation, numbers with thousands
separators); a reply holding several different votes is `AmbiguousReply` (an abstention).
`parse_reply` then validates it with a frozen pydantic schema and against the snapshot
(symbol, stop and take-profit sides, sane distances, confidence range, leverage).
The result is either a `Vote` or an error message for the repair retry / the abstention.
Nothing here trusts the model: leverage above the configured maximum is clamped and noted.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quorum.domain.models import Action, Snapshot, Vote
from quorum.store.text import storable_text

MAX_REPLY_CHARS = 20_000
MAX_REASONING_CHARS = 600
MAX_CANDIDATES = 40  # JSON start positions tried per reply (bounds the work on hostile input)

_FULLWIDTH = str.maketrans({
    "｛": "{", "｝": "}", "［": "[", "］": "]", "：": ":", "，": ",", "＂": '"', "“": '"', "”": '"',
    "＇": "'", "．": ".", "－": "-", "＋": "+", "　": " ", "、": ",",
    **{chr(0xFF10 + i): str(i) for i in range(10)},
})
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_THOUSANDS = re.compile(r"(?<=[:\[,\s])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?)(?=\s*[,}\]])")
_REFUSAL = re.compile(
    r"\b(I can(?:no|')t|I cannot|I'm (?:not able|unable)|I am (?:not able|unable)|I won't|I will not|"
    r"as an AI|not (?:able|allowed) to provide (?:financial|investment)|financial advice)\b",
    re.I,
)


class ParseError(ValueError):
    """The reply is unusable; the message says why (shown to the model in the repair retry)."""


class AmbiguousReply(ParseError):
    """The reply holds more than one vote: an abstention, never a repair or a pick of one."""


def looks_like_refusal(text: str) -> bool:
    return "{" not in text.translate(_FULLWIDTH) and bool(_REFUSAL.search(text))


def _balanced(text: str, start: int) -> str | None:
    """The balanced {...} or [...] starting at `start`, respecting strings; None if unclosed."""
    stack: list[str] = []
    in_str = False
    esc = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return text[start : i + 1]
    return None


def _loads(candidate: str) -> Any:
    """json.loads, then with trailing commas removed, then also with thousands separators
    removed (last, because `[95,100]` is also a valid list of two numbers)."""
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    no_trailing = _TRAILING_COMMA.sub(r"\1", candidate)
    try:
        return json.loads(no_trailing)
    except json.JSONDecodeError:
        pass
    return json.loads(_THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), no_trailing))


def extract_json(text: str) -> dict[str, Any]:
    """One JSON object from a reply; raises ParseError naming the problem."""
    if not text or not text.strip():
        raise ParseError("empty reply")
    if len(text) > MAX_REPLY_CHARS:
        raise ParseError(f"reply too long ({len(text)} characters, limit {MAX_REPLY_CHARS})")
    text = text.translate(_FULLWIDTH)
    fences = _FENCE.findall(text)
    sources = [*fences, text] if fences else [text]
    last_error = "no JSON object in reply"
    for src in sources:
        for m in itertools.islice(re.finditer(r"[{\[]", src), MAX_CANDIDATES):
            block = _balanced(src, m.start())
            if block is None:
                last_error = "truncated or unbalanced JSON"
                continue
            try:
                value = _loads(block)
            except json.JSONDecodeError as exc:
                last_error = f"invalid JSON: {exc.msg} at position {exc.pos}"
                continue
            if isinstance(value, list):
                objs = [v for v in value if isinstance(v, dict)]
                if len(objs) > 1:  # ambiguous: never pick one of several votes
                    raise AmbiguousReply(f"expected one vote object, got an array of {len(value)} items")
                if not objs:
                    raise ParseError(f"expected one vote object, got an array of {len(value)} items")
                value = objs[0]
            if isinstance(value, dict):
                if _another_vote_after(src, m.start() + len(block), value) or any(
                        _another_vote_after(f, 0, value) for f in fences if f is not src):
                    raise AmbiguousReply("more than one different vote object in reply")
                return value
    raise ParseError(last_error)


def _another_vote_after(src: str, pos: int, first: dict[str, Any]) -> bool:
    """True when a second, different object with an "action" follows (an ambiguous reply)."""
    for m in itertools.islice(re.finditer(r"\{", src[pos:]), MAX_CANDIDATES):
        block = _balanced(src, pos + m.start())
        if block is None:
            continue
        try:
            other = _loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(other, dict) and "action" in other and other != first:
            return True
    return False


def _number(value: Any) -> Any:
    """'64,250.5', '$64 250', '1_000', '75%' → floats; other values unchanged."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        s = value.strip().replace(",", "").replace("_", "").replace(" ", "").replace("$", "")
        s = s.removesuffix("USDT").removesuffix("x").removesuffix("X")
        pct = s.endswith("%")
        s = s.removesuffix("%")
        try:
            f = float(s)
        except ValueError:
            raise ValueError(f"{value!r} is not a literal number") from None
        return f / 100.0 if pct else f
    return value


class VoteReply(BaseModel):
    """The schema a reply must satisfy (frozen; unknown fields ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    symbol: str | None = None
    action: Literal["LONG", "SHORT", "HOLD", "CLOSE"]
    confidence: float = Field(ge=0.0, le=1.0)
    leverage: float | None = Field(default=None, gt=0)
    stop_loss: float | None = Field(default=None, gt=0)
    take_profits: tuple[float, ...] = ()
    horizon: str | None = Field(default=None, max_length=40)
    reasoning: str = ""

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("confidence", "leverage", "stop_loss", mode="before")
    @classmethod
    def _num(cls, v: Any) -> Any:
        return None if v is None or v == "" else _number(v)

    @field_validator("take_profits", mode="before")
    @classmethod
    def _tps(cls, v: Any) -> Any:
        if v is None or v == "":
            return ()
        if not isinstance(v, list | tuple):
            v = [v]
        return tuple(_number(x) for x in v)

    @field_validator("confidence", "leverage", "stop_loss")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("reasoning", mode="before")
    @classmethod
    def _reasoning(cls, v: Any) -> Any:
        return "" if v is None else storable_text(str(v)[:MAX_REASONING_CHARS])

    @field_validator("symbol", "horizon", mode="before")
    @classmethod
    def _storable(cls, v: Any) -> Any:
        return storable_text(v) if isinstance(v, str) else v


@dataclass(frozen=True, slots=True)
class Limits:
    """Validation bounds. Distances are percent of the snapshot price."""

    max_leverage: float = 5.0
    absurd_leverage: float = 125.0
    min_stop_pct: float = 0.05
    max_stop_pct: float = 25.0
    max_tp_pct: float = 100.0
    max_take_profits: int = 5


@dataclass(frozen=True, slots=True)
class ParseResult:
    vote: Vote | None
    error: str | None
    parsed: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())
    ambiguous: bool = False  # more than one vote in the reply: abstain, do not repair


def _normalise_keys(obj: dict[str, Any]) -> dict[str, Any]:
    aliases = {"take_profit": "take_profits", "takeprofit": "take_profits", "tp": "take_profits",
               "stop": "stop_loss", "stoploss": "stop_loss", "sl": "stop_loss", "decision": "action",
               "signal": "action", "reason": "reasoning"}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = str(k).strip().lower().replace("-", "_").replace(" ", "_")
        key = aliases.get(key, key)
        if key not in out:
            out[key] = v
    return out


def validate_vote(obj: dict[str, Any], voter: str, snapshot: Snapshot, limits: Limits = Limits()) -> ParseResult:
    """Strict validation of an extracted object against the schema and the snapshot."""
    obj = _normalise_keys(obj)
    try:
        reply = VoteReply.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "reply"
        return ParseResult(None, f"{loc}: {first.get('msg', 'invalid')}", obj)
    notes: list[str] = []
    price = snapshot.price
    if reply.symbol and reply.symbol.upper().replace("/", "").replace(":USDT", "") != snapshot.symbol:
        return ParseResult(None, f"symbol {reply.symbol!r} is not {snapshot.symbol}", obj)
    action = Action(reply.action)
    lev = reply.leverage
    if lev is not None:
        if lev > limits.absurd_leverage:
            return ParseResult(None, f"leverage {lev:g} is absurd (above {limits.absurd_leverage:g})", obj)
        if lev > limits.max_leverage:
            notes.append(f"leverage {lev:g} clamped to {limits.max_leverage:g}")
            lev = limits.max_leverage
    stop: float | None = reply.stop_loss
    tps = reply.take_profits
    if action in (Action.LONG, Action.SHORT):
        sign = 1 if action is Action.LONG else -1
        if stop is None:
            return ParseResult(None, f"{action.value} needs a stop_loss price", obj)
        if (price - stop) * sign <= 0:
            side = "below" if sign > 0 else "above"
            return ParseResult(None, f"stop_loss {stop:g} must be {side} the price {price:g} for {action.value}", obj)
        dist = abs(price - stop) / price * 100
        if dist < limits.min_stop_pct or dist > limits.max_stop_pct:
            return ParseResult(None, f"stop_loss {stop:g} is {dist:.2f} % from the price; allowed "
                               f"{limits.min_stop_pct:g}-{limits.max_stop_pct:g} %", obj)
        if len(tps) > limits.max_take_profits:
            return ParseResult(None, f"{len(tps)} take_profits; at most {limits.max_take_profits}", obj)
        for tp in tps:
            if not math.isfinite(tp) or tp <= 0 or (tp - price) * sign <= 0:
                side = "above" if sign > 0 else "below"
                return ParseResult(None, f"take_profit {tp:g} must be {side} the price {price:g} for "
                                   f"{action.value}", obj)
            if abs(tp - price) / price * 100 > limits.max_tp_pct:
                return ParseResult(None, f"take_profit {tp:g} is more than {limits.max_tp_pct:g} % away", obj)
        tps = tuple(sorted(tps, reverse=sign < 0))
    else:
        stop, tps, lev = None, (), None
    vote = Vote(voter=voter, symbol=snapshot.symbol, action=action, confidence=float(reply.confidence),
                leverage=lev, stop_loss=stop, take_profits=tps, horizon=reply.horizon,
                reasoning=reply.reasoning)
    return ParseResult(vote, None, reply.model_dump(mode="json"), tuple(notes))


def parse_reply(text: str, voter: str, snapshot: Snapshot, limits: Limits = Limits()) -> ParseResult:
    """Extract and validate; never raises for bad replies."""
    try:
        obj = extract_json(text)
    except AmbiguousReply as exc:
        return ParseResult(None, str(exc), ambiguous=True)
    except ParseError as exc:
        return ParseResult(None, str(exc))
    return validate_vote(obj, voter, snapshot, limits)


def vote_is_valid(vote: Vote, snapshot: Snapshot, limits: Limits = Limits()) -> bool:
    """Independent re-check of a vote's invariants (used by tests and as a last guard)."""
    if vote.symbol != snapshot.symbol or not (0.0 <= vote.confidence <= 1.0) or not math.isfinite(vote.confidence):
        return False
    if vote.leverage is not None and not (0 < vote.leverage <= limits.max_leverage):
        return False
    if vote.action in (Action.LONG, Action.SHORT):
        sign = 1 if vote.action is Action.LONG else -1
        if vote.stop_loss is None or (snapshot.price - vote.stop_loss) * sign <= 0:
            return False
        dist = abs(snapshot.price - vote.stop_loss) / snapshot.price * 100
        if not limits.min_stop_pct <= dist <= limits.max_stop_pct:
            return False
        return all(tp > 0 and (tp - snapshot.price) * sign > 0 for tp in vote.take_profits)
    return vote.stop_loss is None and not vote.take_profits
