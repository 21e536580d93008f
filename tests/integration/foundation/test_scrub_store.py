"""The store boundary: every text and JSON value written through a Quorum connection is scrubbed,
whoever writes it; Quorum's identifiers are stored as they are and still find their rows."""

from __future__ import annotations

import hashlib

import asyncpg

from quorum.domain.orders import client_order_id
from quorum.execution.exchange import OrderRequest
from quorum.store.orders import OrderRepository
from quorum.store.state import AlertRepository

ECHO = "401 Incorrect API key provided: sk-proj-Ab12****Yz90 (old: sk-ant-api03-Zq8Wm4Xn7Rb2Tc5Vd1Ke6)"


async def test_free_text_and_json_are_scrubbed_and_ids_kept(pool: asyncpg.Pool) -> None:
    alerts = AlertRepository(pool, "paper")
    aid = await alerts.raise_alert("warning", "provider_error", ECHO,
                                   details={"error": ECHO, "headers": {"x-api-key": "plain-secret"}})
    cid = client_order_id("paper", "p-d-BTCUSDT-1759996800000-ab12cd34", "entry")
    orders = OrderRepository(pool, "paper")
    await orders.record_refusal(OrderRequest(cid, "BTCUSDT", "buy", "market", 0.01), purpose="entry",
                                error=f"exchange said: {ECHO}", decision_id=None)
    digest = hashlib.sha256(b"snapshot").hexdigest()
    await pool.execute("INSERT INTO bot_state (key, value) VALUES ($1, $2)", f"note.{digest}",
                       {"reason": f"Bearer {'Qw3Er5Ty7Ui9Op1As3Df5'}", "hash": digest})

    row = await pool.fetchrow("SELECT message, details FROM alerts WHERE id = $1", aid)
    assert row["message"] == "401 Incorrect API key provided: sk-*** (old: sk-***)"
    assert row["details"] == {"error": row["message"], "headers": {"x-api-key": "***"}}
    order = await orders.get(cid)  # looked up by our id, stored unchanged
    assert order is not None and order["client_order_id"] == cid and "sk-proj" not in order["error"]
    assert (await orders.first_event_detail(cid))["refused"] == order["error"]
    state = await pool.fetchval("SELECT value FROM bot_state WHERE key = $1", f"note.{digest}")
    assert state == {"reason": "Bearer ***", "hash": digest}
    dump = await pool.fetchval("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM alerts) t")
    assert "Ab12" not in dump and "Zq8Wm4" not in dump
