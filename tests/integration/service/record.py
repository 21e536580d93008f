"""Helpers that write a synthetic paper record (closed positions, equity, alerts) into Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

START = datetime(2026, 1, 1, tzinfo=UTC)


async def insert_trades(pool: asyncpg.Pool, pnls: list[float], *, days: float, mode: str = "paper",
                        symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"), fee: float = 0.5,
                        initial: float = 1000.0) -> None:
    """Closed positions spread evenly over `days`, with an equity snapshot after each."""
    step = timedelta(days=days) / max(len(pnls), 1)
    equity = initial
    for i, pnl in enumerate(pnls):
        opened = START + step * i
        closed = opened + step * 0.5
        side = "long" if i % 3 else "short"
        symbol = symbols[i % len(symbols)]
        await pool.execute(
            """INSERT INTO decisions (id, mode, symbol, at, analyst, action, confidence)
               VALUES ($1, $2, $3, $4, 'rules', $5, 0.7)""", f"d{i}", mode, symbol, opened, side.upper())
        await pool.execute(
            """INSERT INTO model_votes (decision_id, symbol, voter, provider, model, prompt_version, action,
                   confidence) VALUES ($1, $2, 'rules', 'rules', 'rules', 'v1', $3, 0.7)""",
            f"d{i}", symbol, side.upper())
        await pool.execute(
            """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity, initial_quantity,
                   leverage, initial_stop, stop_price, peak_price, opened_at, closed_at, exit_price, fees,
                   gross_pnl, net_pnl, exit_reason, risk_usd, decision_id)
               VALUES ($1, $2, $3, $4, 'closed', 100, 0, 1, 3, 98, 98, 101, $5, $6, 101, $7, $8, $9,
                       $10, 10, $11)""",
            f"p{i}", mode, symbol, side, opened, closed, fee, pnl + fee, pnl,
            "take_profit" if pnl > 0 else "stop", f"d{i}")
        equity += pnl
        await pool.execute(
            "INSERT INTO equity_snapshots (mode, at, equity, wallet_balance) VALUES ($1, $2, $3, $3)",
            mode, closed, equity)
