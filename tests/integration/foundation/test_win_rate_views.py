"""The win-rate views on a small known set of trades, checked against a hand count."""

from datetime import UTC, datetime, timedelta

import pytest

DAY1 = datetime(2025, 10, 6, 12, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)

# (id, symbol, side, gross, fees, funding, closed_at)  → net = gross − fees − funding
TRADES = [
    ("t1", "BTCUSDT", "long", 30.0, 1.0, 0.5, DAY1),    # +28.5 win
    ("t2", "BTCUSDT", "short", -10.0, 1.0, -0.2, DAY1),  # −10.8 loss
    ("t3", "ETHUSDT", "long", 1.0, 0.6, 0.6, DAY2),     # −0.2 loss: fees turned a winner into a loser
    ("t4", "ETHUSDT", "long", 12.0, 0.5, 0.0, DAY2),    # +11.5 win
    ("t5", "SOLUSDT", "short", -20.0, 0.8, 0.2, DAY2),  # −21.0 loss
]


async def _insert(pool):
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO market_snapshots (hash, symbol, at, price, regime, payload)
               VALUES ('h1', 'BTCUSDT', $1, 100, 'ranging', '{}'::jsonb)""", DAY1)
        for tid, symbol, side, gross, fees, funding, closed in TRADES:
            await conn.execute(
                """INSERT INTO decisions (id, mode, symbol, at, snapshot_hash, analyst, action, confidence)
                   VALUES ($1, 'paper', $2, $3, 'h1', 'models', $4, 0.8)""",
                f"d-{tid}", symbol, closed - timedelta(hours=2), side.upper())
            await conn.execute(
                """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity, initial_quantity,
                       leverage, initial_stop, stop_price, peak_price, opened_at, closed_at, exit_price, exit_reason,
                       fees, funding, gross_pnl, net_pnl, decision_id)
                   VALUES ($1, 'paper', $2, $3, 'closed', 100, 0, 1, 2, 95, 95, 100, $4, $5, 101, 'stop_loss',
                       $6::numeric, $7::numeric, $8::numeric, $8::numeric - $6::numeric - $7::numeric, $9)""",
                tid, symbol, side, closed - timedelta(hours=1), closed, fees, funding, gross, f"d-{tid}")
        # model A voted with the trade on t1, t2, t3; model B on t1 and t5; model B voted against t4;
        # an abstention never counts.
        votes = [("t1", "a:m", None), ("t2", "a:m", None), ("t3", "a:m", None), ("t1", "b:m", None),
                 ("t5", "b:m", None), ("t4", "b:m", "opposite"), ("t4", "c:m", "abstain")]
        for tid, voter, special in votes:
            side = next(t[2] for t in TRADES if t[0] == tid)
            action = {"long": "SHORT", "short": "LONG"}[side] if special == "opposite" else side.upper()
            await conn.execute(
                """INSERT INTO model_votes (decision_id, symbol, voter, provider, model, prompt_version, action,
                       abstain_reason) VALUES ($1, 'X', $2, split_part($2, ':', 1), 'm', 'v1', $3, $4)""",
                f"d-{tid}", voter, None if special == "abstain" else action,
                "timeout" if special == "abstain" else None)
        # an open position never counts
        await conn.execute(
            """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity, initial_quantity, leverage,
                   initial_stop, stop_price, peak_price, opened_at) VALUES
               ('open1', 'paper', 'XRPUSDT', 'long', 'open', 1, 1, 1, 1, 0.9, 0.9, 1, $1)""", DAY2)


async def test_overall_win_rate_matches_hand_count(pool):
    await _insert(pool)
    row = await pool.fetchrow("SELECT * FROM win_rate WHERE mode = 'paper'")
    nets = [g - f - fu for _, _, _, g, f, fu, _ in TRADES]
    wins = [n for n in nets if n > 0]
    losses = [n for n in nets if n <= 0]
    assert (row["trades"], row["wins"], row["losses"]) == (5, 2, 3)
    assert float(row["win_rate"]) == pytest.approx(0.4)
    assert float(row["profit_factor"]) == pytest.approx(round(sum(wins) / -sum(losses), 4))  # 40/32 = 1.25
    assert float(row["profit_factor"]) == pytest.approx(1.25)
    assert float(row["expectancy_usd"]) == pytest.approx(sum(nets) / 5)  # 8.0 / 5 = 1.6
    assert float(row["net_pnl"]) == pytest.approx(8.0)
    assert float(row["fees"]) == pytest.approx(3.9)


async def test_breakdowns_match_hand_count(pool):
    await _insert(pool)
    by_symbol = {r["symbol"]: r for r in await pool.fetch("SELECT * FROM win_rate_by_symbol")}
    assert {s: (r["trades"], r["wins"]) for s, r in by_symbol.items()} == {
        "BTCUSDT": (2, 1), "ETHUSDT": (2, 1), "SOLUSDT": (1, 0)}
    assert by_symbol["SOLUSDT"]["profit_factor"] is None or float(by_symbol["SOLUSDT"]["profit_factor"]) == 0
    by_side = {r["side"]: r for r in await pool.fetch("SELECT * FROM win_rate_by_side")}
    assert (by_side["long"]["trades"], by_side["long"]["wins"]) == (3, 2)
    assert (by_side["short"]["trades"], by_side["short"]["wins"]) == (2, 0)
    by_day = {r["day"].isoformat(): (r["trades"], r["wins"]) for r in await pool.fetch("SELECT * FROM win_rate_by_day")}
    assert by_day == {"2025-10-06": (2, 1), "2025-10-07": (3, 1)}
    by_model = {r["voter"]: r for r in await pool.fetch("SELECT * FROM win_rate_by_model")}
    assert set(by_model) == {"a:m", "b:m"}
    assert (by_model["a:m"]["trades"], by_model["a:m"]["wins"]) == (3, 1)
    assert (by_model["b:m"]["trades"], by_model["b:m"]["wins"]) == (2, 1)
    assert float(by_model["b:m"]["net_pnl"]) == pytest.approx(28.5 - 21.0)
