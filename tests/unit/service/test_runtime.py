"""RuntimeState: control hooks, event listeners, redaction of engine-supplied error texts."""

from __future__ import annotations

from typing import Any

from quorum.engine.runtime import RuntimeState
from quorum.logging import register_secrets


async def test_controls_set_flags_and_call_hooks() -> None:
    rt = RuntimeState()
    calls: list[str] = []

    async def hook_pause() -> None:
        calls.append("pause")

    async def hook_kill() -> dict[str, Any]:
        calls.append("kill")
        return {"closed": 1}

    rt.on_pause, rt.on_kill = hook_pause, hook_kill
    await rt.pause()
    assert rt.paused and calls == ["pause"]
    assert await rt.kill() == {"closed": 1}
    assert rt.kill_requested and rt.paused
    await rt.resume()  # no hook registered: flags only
    assert not rt.paused and not rt.kill_requested


async def test_a_failing_listener_never_breaks_the_engine() -> None:
    rt = RuntimeState()
    got: list[tuple[str, dict[str, Any]]] = []

    async def broken(kind: str, payload: dict[str, Any]) -> None:
        raise ConnectionError("telegram down")

    async def good(kind: str, payload: dict[str, Any]) -> None:
        got.append((kind, payload))

    rt.listeners += [broken, good]
    await rt.emit("trade_closed", {"symbol": "BTCUSDT"})
    assert got == [("trade_closed", {"symbol": "BTCUSDT"})]


def test_provider_and_exchange_errors_are_redacted_and_bounded() -> None:
    register_secrets(["sk-live-abcdef123456"])
    rt = RuntimeState()
    rt.mark_provider("openai:gpt", False, "401 bad key sk-live-abcdef123456 " + "x" * 500)
    assert "sk-live" not in rt.provider_last_error["openai:gpt"]
    assert len(rt.provider_last_error["openai:gpt"]) == 200
    rt.mark_provider("openai:gpt", True, now_ms=5)
    assert rt.provider_last_success["openai:gpt"] == 5 and "openai:gpt" not in rt.provider_last_error
    rt.mark_exchange(False, "timeout sk-live-abcdef123456")
    assert rt.exchange_error == "timeout ***" and not rt.exchange_ok
    rt.set_breaker("drawdown", "dd 21%")
    rt.set_breaker("drawdown", None)
    assert rt.breakers == {}
    assert rt.uptime_s(rt.started_ms + 1500) == 1.5
