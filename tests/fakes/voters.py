"""Reply functions for the fake model servers that vote like a model would: they read the symbol
and the current price from the prompt (prompts/user.md: "Symbol: ...", "Current price: ...") and
answer a valid vote whose stop and take-profit sit on the right side of that price.

`decide(symbol, price, prompt) -> "LONG" | "SHORT" | "HOLD"` chooses the action; the same function
given to an OpenAI and an Anthropic fake makes the two agree, so a consensus can form."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.fakes.openai_server import Reply

Decide = Callable[[str, float, str], str]
_SYMBOL = re.compile(r"Symbol:\s*([A-Z0-9]+)")
_PRICE = re.compile(r"Current price:\s*([0-9.eE+-]+)")


def prompt_text(body: dict[str, Any]) -> str:
    """The user prompt of an OpenAI or Anthropic request body."""
    parts: list[str] = []
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return "\n".join(parts)


def vote(symbol: str, price: float, action: str, *, stop_pct: float = 1.2, tp_pct: float = 2.5,
         confidence: float = 0.8) -> dict[str, Any]:
    sign = {"LONG": 1, "SHORT": -1}.get(action, 0)
    return {"symbol": symbol, "action": action, "confidence": confidence if sign else 0.5, "leverage": 3,
            "stop_loss": round(price * (1 - sign * stop_pct / 100), 8) if sign else None,
            "take_profits": [round(price * (1 + sign * tp_pct / 100), 8)] if sign else [],
            "horizon": "4h", "reasoning": f"scripted {action.lower()}"}


def parsed(body: dict[str, Any]) -> tuple[str, float, str] | None:
    text = prompt_text(body)
    sym, px = _SYMBOL.search(text), _PRICE.search(text)
    if not sym or not px:
        return None
    return sym.group(1), float(px.group(1)), text


def openai_reply(decide: Decide, **kw: Any) -> Callable[[dict[str, Any]], Reply]:
    """Reply function for `FakeOpenAIServer(default=...)`."""

    def reply(body: dict[str, Any]) -> Reply:
        got = parsed(body)
        if got is None:
            return Reply(text="{}")
        sym, price, text = got
        return Reply(text=json.dumps(vote(sym, price, decide(sym, price, text), **kw)))

    return reply


def anthropic_reply(decide: Decide, **kw: Any) -> Callable[[dict[str, Any]], Reply]:
    """Reply function for `FakeAnthropicServer(default=...)` (a tool_use vote)."""

    def reply(body: dict[str, Any]) -> Reply:
        got = parsed(body)
        if got is None:
            return Reply(text="no vote")
        sym, price, text = got
        return Reply(tool_input=vote(sym, price, decide(sym, price, text), **kw))

    return reply


def always(action: str) -> Decide:
    return lambda symbol, price, text: action
