"""PaperExchange: a simulated USDⓈ-M venue whose books live in Postgres (tables `paper_*`).

It implements the `Exchange` protocol, so the engine cannot tell it from Binance, and it uses
the shared `FillModel` (quorum.domain.fills), so paper and backtest fill alike:

- market orders fill at once at the last known price plus slippage (half the spread + size
  impact), taker fee; the last price comes from `on_price` / `on_bar`;
- conditional orders (reduce-only STOP_MARKET / TAKE_PROFIT_MARKET) trigger inside `on_bar`
  (the bar stands in for the mark price); a stop the bar gaps through fills at the bar's open;
- isolated margin per position, a liquidation price from the symbol's brackets; a liquidation
  closes the position at the liquidation price and charges the taker fee;
- funding at each funding time (every `funding_interval_ms` on the UTC grid) at the rate the
  `funding_source` gives for that time — recorded data in a replay, the rate Binance published
  on live data (`quorum.market.funding.PublishedFunding`) — and only when none can be had, the
  fixed `funding_rate` (PAPER_FUNDING_RATE); `funding_stats` counts both. Positive rate: longs pay.

Each operation is one database transaction, so a session killed at any point restarts from a
consistent venue state. When a position closes, its remaining reduce-only orders expire.

The venue remembers how far it has seen each symbol's price path (`paper_symbols.bar_until_ms`):
a bar it has already processed is ignored, so feeding it again (a retried step) changes nothing,
and `held()` tells the engine where to resume feeding each open position after any gap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import asyncpg

from quorum import metrics
from quorum.domain.fills import FillModel, funding_times
from quorum.domain.models import Bracket, Candle, Side, SymbolFilters
from quorum.execution.exchange import (
    InsufficientMargin,
    OrderRejected,
    OrderRequest,
    UnknownSymbol,
    VenueFill,
    VenueOrder,
    WouldTrigger,
)
from quorum.execution.paper_books import CallableFunding, FundingSource, PaperBooks, order_from_row
from quorum.execution.venue_rules import (  # re-exported: the backtester's venue uses the same rules
    DEFAULT_BRACKETS,
    EPS,
    bracket_for,
    default_filters,
    isolated_liquidation_price,
)

__all__ = ["DEFAULT_BRACKETS", "FundingSource", "PaperExchange", "bracket_for", "default_filters",
           "isolated_liquidation_price"]


class PaperExchange(PaperBooks):
    """A paper venue for one `account` (e.g. "paper"); see the module docstring."""

    name = "paper"
    definitive_lookups = True  # one transaction per operation: "not found" means never placed

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        account: str = "paper",
        fill_model: FillModel | None = None,
        initial_balance: float = 1000.0,
        filters: Mapping[str, SymbolFilters] | None = None,
        brackets: Mapping[str, tuple[Bracket, ...]] | None = None,
        funding_rate: float | None = 0.0001,
        funding_source: FundingSource | Callable[[str, int], float | None] | None = None,
        funding_interval_ms: int = 8 * 3_600_000,
        timeframe_ms: int = 300_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._pool = pool
        self.account = account
        self.model = fill_model or FillModel()
        self.initial_balance = initial_balance
        self._filters = dict(filters or {})
        self._brackets = dict(brackets or {})
        self.funding_rate = funding_rate
        self.funding_source: FundingSource | None = (
            funding_source if funding_source is None or hasattr(funding_source, "prefetch")
            else CallableFunding(funding_source))  # type: ignore[arg-type]
        self.funding_stats = {"published": 0, "fallback": 0}
        self._funded_hint: dict[str, int] = {}
        self.funding_interval_ms = funding_interval_ms
        self.timeframe_ms = timeframe_ms
        self._clock = clock
        self._started = False

    async def start(self) -> None:
        """Create the account on first use (an existing account keeps its balance)."""
        await self._pool.execute(
            "INSERT INTO paper_accounts (account, wallet_balance) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.account, self.initial_balance,
        )
        self._started = True

    async def _ensure(self) -> None:
        if not self._started:
            await self.start()

    async def close(self) -> None:
        return None

    # --- market data in ------------------------------------------------------------------
    async def on_price(self, symbol: str, price: float, time_ms: int) -> None:
        """The latest (mark/last) price; market orders fill from it. While the symbol is flat the
        venue has nothing to replay, so its progress marks move with the price: the path is seen
        up to `time_ms` and funding is settled up to just before it — the funding due AT
        `time_ms` is charged to what is held after the orders at `time_ms`, as when every bar was
        shown (the convention the backtester shares); a symbol seen for the first time starts
        settled at `time_ms`."""
        await self._ensure()
        if price <= 0:
            raise ValueError(f"{symbol}: price must be > 0")
        await self._pool.execute(
            """INSERT INTO paper_symbols (account, symbol, last_price, last_time_ms, funded_until_ms, bar_until_ms)
               VALUES ($1,$2,$3,$4::bigint,$4::bigint,$4::bigint) ON CONFLICT (account, symbol)
               DO UPDATE SET last_price=$3, last_time_ms=$4,
                 bar_until_ms = CASE WHEN EXISTS (SELECT 1 FROM paper_positions p WHERE p.account=$1 AND p.symbol=$2)
                                     THEN paper_symbols.bar_until_ms
                                     ELSE GREATEST(coalesce(paper_symbols.bar_until_ms, $4), $4) END,
                 funded_until_ms = CASE WHEN EXISTS (SELECT 1 FROM paper_positions p WHERE p.account=$1 AND p.symbol=$2)
                                     THEN paper_symbols.funded_until_ms
                                     ELSE GREATEST(coalesce(paper_symbols.funded_until_ms, $4 - 1), $4 - 1) END""",
            self.account, symbol, price, time_ms,
        )

    async def held(self) -> dict[str, int | None]:
        """Symbols with an open position → the close time of the last bar the venue processed
        for them (None if unknown): the engine feeds each one every bar after that, in order."""
        await self._ensure()
        rows = await self._pool.fetch(
            """SELECT p.symbol, coalesce(s.bar_until_ms, s.last_time_ms) AS until FROM paper_positions p
               LEFT JOIN paper_symbols s ON s.account=p.account AND s.symbol=p.symbol
               WHERE p.account=$1 ORDER BY p.symbol""", self.account)
        return {r["symbol"]: None if r["until"] is None else int(r["until"]) for r in rows}

    async def on_bar(self, symbol: str, bar: Candle, timeframe_ms: int | None = None) -> list[VenueFill]:
        """Process one closed bar of the price path (`timeframe_ms` long, the execution timeframe
        by default; 1m bars on live data): funding due at or before its open, then stops,
        take-profits and liquidation on its range; finally the close becomes the last price.
        A bar the venue has already processed is ignored."""
        await self._ensure()
        close_ms = bar.open_ms + (timeframe_ms or self.timeframe_ms)
        if self.funding_source is not None:  # rates are fetched before the transaction, never inside
            since = self._funded_hint.get(symbol, bar.open_ms - 30 * 86_400_000)
            await self.funding_source.prefetch(symbol, since, bar.open_ms)
        fills: list[VenueFill] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            sym = await conn.fetchrow("SELECT * FROM paper_symbols WHERE account=$1 AND symbol=$2 FOR UPDATE",
                                      self.account, symbol)
            if sym is None:
                await conn.execute(
                    """INSERT INTO paper_symbols (account, symbol, last_price, last_time_ms, funded_until_ms)
                       VALUES ($1,$2,$3,$4,$4)""", self.account, symbol, bar.open, bar.open_ms)
                funded_until = bar.open_ms
            else:
                if sym["bar_until_ms"] is not None and close_ms <= int(sym["bar_until_ms"]):
                    return []  # already processed (a retried step, an overlapping catch-up)
                funded_until = int(sym["funded_until_ms"] or bar.open_ms)
            for t in funding_times(funded_until, bar.open_ms, self.funding_interval_ms):
                await self._apply_funding(conn, symbol, t, bar.open)
            for _ in range(4):  # a partial TP and the stop may both trigger on one bar
                fill = await self._trigger(conn, symbol, bar)
                if fill is None:
                    break
                fills.append(fill)
            await conn.execute(
                """UPDATE paper_symbols SET last_price=$3, last_time_ms=$4, bar_until_ms=$4,
                          funded_until_ms=GREATEST($5, funded_until_ms) WHERE account=$1 AND symbol=$2""",
                self.account, symbol, bar.close, close_ms, bar.open_ms)
        self._funded_hint[symbol] = max(self._funded_hint.get(symbol, 0), bar.open_ms)
        return fills

    async def _apply_funding(self, conn: asyncpg.Connection, symbol: str, t: int, mark: float) -> None:
        pos = await conn.fetchrow("SELECT * FROM paper_positions WHERE account=$1 AND symbol=$2", self.account, symbol)
        if pos is None:
            return
        rate = self.funding_source.rate(symbol, t) if self.funding_source else None
        source = "published"
        if rate is None:
            rate, source = self.funding_rate, "fallback"
        if rate is None:
            return
        qty = float(pos["quantity"])
        amount = self.model.funding_payment(Side(pos["side"]), qty, mark, rate)
        done = await conn.fetchval(
            """INSERT INTO paper_funding (account, symbol, time_ms, rate, mark_price, quantity, amount)
               VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING RETURNING 1""",
            self.account, symbol, t, rate, mark, qty, amount)
        if done:
            await conn.execute("UPDATE paper_accounts SET wallet_balance = wallet_balance - $2 WHERE account=$1",
                               self.account, amount)
            self.funding_stats[source] += 1
            metrics.FUNDING_EVENTS.labels(source).inc()

    async def _trigger(self, conn: asyncpg.Connection, symbol: str, bar: Candle) -> VenueFill | None:
        pos = await conn.fetchrow("SELECT * FROM paper_positions WHERE account=$1 AND symbol=$2", self.account, symbol)
        if pos is None:
            return None
        side = Side(pos["side"])
        orders = await conn.fetch(
            """SELECT * FROM paper_orders WHERE account=$1 AND symbol=$2 AND state='accepted'
                 AND type IN ('stop_market','take_profit_market') ORDER BY exchange_order_id""",
            self.account, symbol)
        stops = [o for o in orders if o["type"] == "stop_market"]
        tps = [o for o in orders if o["type"] == "take_profit_market"]
        # the stop nearest the price triggers first (highest for a long); the nearest TP likewise
        stop = max(stops, key=lambda o: float(o["stop_price"]) * side.sign, default=None)
        tp = min(tps, key=lambda o: float(o["stop_price"]) * side.sign, default=None)
        liq = None if pos["liquidation_price"] is None else float(pos["liquidation_price"])
        ex = self.model.bar_exit(side, bar.open, bar.high, bar.low,
                                 stop_price=None if stop is None else float(stop["stop_price"]),
                                 take_profit=None if tp is None else float(tp["stop_price"]),
                                 liquidation_price=liq)
        if ex is None:
            return None
        qty = float(pos["quantity"])
        order = {"stop": stop, "take_profit": tp}.get(ex.kind.value)
        fill_qty = qty if order is None else min(qty, float(order["quantity"]))
        price, fee = self.model.exit_fill(side, ex, fill_qty)
        cid = order["client_order_id"] if order is not None else f"liquidation-{bar.open_ms}"
        if order is None:
            await self._insert_order(conn, OrderRequest(cid, symbol, "sell" if side is Side.LONG else "buy", "market",
                                                        fill_qty, None, True), bar.open_ms, "accepted")
        return await self._fill(conn, cid, symbol, fill_qty, price, fee, bar.open_ms, reason=ex.kind.value)

    # --- trading -------------------------------------------------------------------------
    async def _lock(self, conn: asyncpg.Connection) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM paper_accounts WHERE account=$1 FOR UPDATE", self.account)
        assert row is not None
        return row

    async def _insert_order(self, conn: asyncpg.Connection, req: OrderRequest, t: int, state: str) -> None:
        await conn.execute(
            """INSERT INTO paper_orders (account, client_order_id, symbol, side, type, reduce_only, quantity,
                      stop_price, state, time_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)""",
            self.account, req.client_order_id, req.symbol, req.order_side, req.type, req.reduce_only,
            req.quantity, req.stop_price, state, t)

    async def create_order(self, request: OrderRequest) -> VenueOrder:
        await self._ensure()
        filters = await self.symbol_filters(request.symbol)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            if await conn.fetchval("SELECT 1 FROM paper_orders WHERE account=$1 AND client_order_id=$2",
                                   self.account, request.client_order_id):
                raise OrderRejected(f"client order id {request.client_order_id} is duplicated", code="-4116")
            sym = await conn.fetchrow("SELECT * FROM paper_symbols WHERE account=$1 AND symbol=$2",
                                      self.account, request.symbol)
            if sym is None or sym["last_price"] is None:
                raise UnknownSymbol(f"{request.symbol}: no price yet on the paper venue")
            price, t = float(sym["last_price"]), int(self._clock() if self._clock else sym["last_time_ms"])
            if request.quantity < filters.min_qty - EPS:
                raise OrderRejected(f"quantity {request.quantity} below min {filters.min_qty}", code="-4003")
            pos = await conn.fetchrow("SELECT * FROM paper_positions WHERE account=$1 AND symbol=$2",
                                      self.account, request.symbol)
            if request.conditional:
                if pos is None:
                    raise OrderRejected("reduce-only order rejected: no position", code="-2022")
                side = Side(pos["side"])
                sp = float(request.stop_price or 0)
                gap = (price - sp) * side.sign
                crossed = gap <= 0 if request.type == "stop_market" else gap >= 0
                if crossed:
                    raise WouldTrigger(f"order would immediately trigger ({request.type} {sp} vs mark {price})",
                                       code="-2021")
                await self._insert_order(conn, request, t, "accepted")
            else:
                if request.reduce_only and (pos is None or (request.order_side == "buy") == (pos["side"] == "long")):
                    raise OrderRejected("reduce-only order rejected: it would not reduce the position", code="-2022")
                qty = request.quantity
                if request.reduce_only and pos is not None:
                    qty = min(qty, float(pos["quantity"]))
                notional = qty * price
                if not request.reduce_only and notional < filters.min_notional - EPS:
                    raise OrderRejected(f"order's notional {notional:.4f} must be no smaller than "
                                        f"{filters.min_notional}", code="-4164")
                fill_price = self.model.market_price(request.order_side, price, notional)
                fee = self.model.fee(qty * fill_price)
                await self._insert_order(conn, request, t, "accepted")
                await self._fill(conn, request.client_order_id, request.symbol, qty, fill_price, fee, t)
            row = await conn.fetchrow("SELECT * FROM paper_orders WHERE account=$1 AND client_order_id=$2",
                                      self.account, request.client_order_id)
            return order_from_row(row)

    async def _fill(self, conn: asyncpg.Connection, cid: str, symbol: str, qty: float, price: float, fee: float,
                    t: int, reason: str | None = None) -> VenueFill:
        """Execute `qty` of order `cid` at `price`: position, margin, wallet, trade, order state."""
        order = await conn.fetchrow("SELECT * FROM paper_orders WHERE account=$1 AND client_order_id=$2",
                                    self.account, cid)
        buy = order["side"] == "buy"
        pos = await conn.fetchrow("SELECT * FROM paper_positions WHERE account=$1 AND symbol=$2", self.account, symbol)
        sym = await conn.fetchrow("SELECT * FROM paper_symbols WHERE account=$1 AND symbol=$2", self.account, symbol)
        leverage = int(sym["leverage"]) if sym else 20
        realized = 0.0
        wallet_delta = -fee
        if pos is None or (pos["side"] == "long") == buy:  # open or add
            side = Side.LONG if buy else Side.SHORT
            margin = qty * price / leverage
            acct = await conn.fetchrow("SELECT wallet_balance FROM paper_accounts WHERE account=$1", self.account)
            used = await conn.fetchval("SELECT coalesce(sum(isolated_margin),0) FROM paper_positions WHERE account=$1",
                                       self.account)
            if float(acct["wallet_balance"]) - float(used) < margin + fee:
                raise InsufficientMargin("Margin is insufficient.", code="-2019")
            if pos is None:
                new_qty, entry, new_margin = qty, price, margin
            else:
                old = float(pos["quantity"])
                new_qty = old + qty
                entry = (float(pos["entry_price"]) * old + price * qty) / new_qty
                new_margin, leverage = float(pos["isolated_margin"]) + margin, int(pos["leverage"])
            b = bracket_for(new_qty * entry, self._brackets.get(symbol, DEFAULT_BRACKETS))
            liq = isolated_liquidation_price(side, new_qty, entry, new_margin, b.maint_margin_rate, b.maint_amount)
            await conn.execute(
                """INSERT INTO paper_positions (account, symbol, side, quantity, entry_price, leverage, margin_mode,
                          isolated_margin, liquidation_price) VALUES ($1,$2,$3,$4,$5,$6,'isolated',$7,$8)
                   ON CONFLICT (account, symbol) DO UPDATE SET quantity=$4, entry_price=$5, isolated_margin=$7,
                          liquidation_price=$8, updated_at=now()""",
                self.account, symbol, side.value, new_qty, entry, leverage, new_margin, liq)
        else:  # reduce (never flips: callers open after a close)
            side = Side(pos["side"])
            old = float(pos["quantity"])
            qty = min(qty, old)
            entry = float(pos["entry_price"])
            realized = (price - entry) * qty * side.sign
            released = float(pos["isolated_margin"]) * qty / old
            wallet_delta += realized
            if old - qty <= EPS:
                await conn.execute("DELETE FROM paper_positions WHERE account=$1 AND symbol=$2", self.account, symbol)
                await conn.execute(
                    """UPDATE paper_orders SET state='expired', closed_ms=$4 WHERE account=$1 AND symbol=$2
                         AND reduce_only AND state='accepted' AND client_order_id <> $3""",
                    self.account, symbol, cid, t)
            else:
                rest = old - qty
                margin = float(pos["isolated_margin"]) - released
                b = bracket_for(rest * entry, self._brackets.get(symbol, DEFAULT_BRACKETS))
                liq = isolated_liquidation_price(side, rest, entry, margin, b.maint_margin_rate, b.maint_amount)
                await conn.execute(
                    """UPDATE paper_positions SET quantity=$3, isolated_margin=$4, liquidation_price=$5,
                              updated_at=now() WHERE account=$1 AND symbol=$2""",
                    self.account, symbol, rest, margin, liq)
        await conn.execute("UPDATE paper_accounts SET wallet_balance = wallet_balance + $2, updated_at=now() "
                           "WHERE account=$1", self.account, wallet_delta)
        trade_id = await conn.fetchval(
            """INSERT INTO paper_trades (account, client_order_id, symbol, side, quantity, price, fee, realized_pnl,
                      reason, time_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING trade_id""",
            self.account, cid, symbol, order["side"], qty, price, fee, realized, reason, t)
        filled = float(order["filled_quantity"]) + qty
        avg = price if not order["average_price"] else (
            (float(order["average_price"]) * float(order["filled_quantity"]) + price * qty) / filled)
        # a reduce-only order capped at the position size is complete
        await conn.execute(
            """UPDATE paper_orders SET filled_quantity=$3, average_price=$4, state='filled', closed_ms=$5
               WHERE account=$1 AND client_order_id=$2""", self.account, cid, filled, avg, t)
        return VenueFill(str(trade_id), cid, str(order["exchange_order_id"]), symbol, order["side"], qty, price, fee,
                         t, "taker", realized)

    async def cancel_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        await self._ensure()
        row = await self._pool.fetchrow(
            """UPDATE paper_orders o SET state='cancelled', closed_ms=(
                   SELECT s.last_time_ms FROM paper_symbols s WHERE s.account=o.account AND s.symbol=o.symbol)
               WHERE o.account=$1 AND o.client_order_id=$2 AND o.state='accepted' RETURNING o.*""",
            self.account, client_order_id)
        if row is None:
            return await self.fetch_order(symbol, client_order_id)
        return order_from_row(row)

    # --- account -------------------------------------------------------------------------
    async def symbol_filters(self, symbol: str) -> SymbolFilters:
        if symbol in self._filters:
            return self._filters[symbol]
        price = await self._pool.fetchval("SELECT last_price FROM paper_symbols WHERE account=$1 AND symbol=$2",
                                          self.account, symbol)
        if price is None:
            raise UnknownSymbol(f"symbol {symbol!r} does not exist on the paper venue (no filters, no price)")
        self._filters[symbol] = default_filters(symbol, float(price))
        return self._filters[symbol]

    async def leverage_brackets(self, symbol: str) -> tuple[Bracket, ...]:
        await self.symbol_filters(symbol)
        return self._brackets.get(symbol, DEFAULT_BRACKETS)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        brackets = await self.leverage_brackets(symbol)
        if leverage < 1 or leverage > brackets[0].max_leverage:
            raise OrderRejected(f"leverage {leverage} is not valid for {symbol} (max {brackets[0].max_leverage})",
                                code="-4028")
        await self._pool.execute(
            """INSERT INTO paper_symbols (account, symbol, leverage) VALUES ($1,$2,$3)
               ON CONFLICT (account, symbol) DO UPDATE SET leverage=$3""", self.account, symbol, leverage)

    async def set_margin_mode(self, symbol: str, mode: str = "isolated") -> None:
        if mode != "isolated":
            raise OrderRejected("the paper exchange keeps isolated margin only", code="-4046")
        await self.symbol_filters(symbol)

    async def check_position_mode(self) -> None:
        return None  # always one-way
