"""What a voter is shown besides the snapshot: the account and the open positions."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from quorum.domain.models import Side, Snapshot, _round_sig


@dataclass(frozen=True, slots=True)
class PositionView:
    """An open position as the prompt shows it. `pnl` is unrealised USDT, `peak_pnl_pct` the best
    unrealised P&L in percent of margin-free notional since entry."""

    symbol: str
    side: Side
    entry_price: float
    mark_price: float
    quantity: float
    leverage: float
    pnl: float
    peak_pnl_pct: float
    stop_price: float | None
    liquidation_price: float | None


@dataclass(frozen=True, slots=True)
class AccountView:
    equity: float
    available_balance: float
    day_pnl: float
    open_positions: int = 0


@dataclass(frozen=True, slots=True)
class VoteContext:
    """One question to the voters: this snapshot, this account, these open positions."""

    snapshot: Snapshot
    account: AccountView = field(default_factory=lambda: AccountView(0.0, 0.0, 0.0, 0))
    positions: tuple[PositionView, ...] = ()

    def position(self) -> PositionView | None:
        """The open position on the snapshot's symbol, if any."""
        for p in self.positions:
            if p.symbol == self.snapshot.symbol:
                return p
        return None

    def cache_state(self) -> dict[str, object]:
        """The account facts that change a voter's answer (part of the cache key): the position
        on this symbol (side, entry, stop), how many positions are open, and equity to two
        significant digits (small P&L drift within a bar does not defeat the cache)."""
        pos = self.position()
        return {
            "position": None if pos is None else [pos.side.value, _round_sig(pos.entry_price, 6),
                                                  None if pos.stop_price is None else _round_sig(pos.stop_price, 6)],
            "open_positions": len(self.positions),
            "equity": _round_sig(float(self.account.equity), 2),
        }


_HASHES: OrderedDict[Snapshot, str] = OrderedDict()
_HASHES_MAX = 4096


def snapshot_hash(snapshot: Snapshot) -> str:
    """`snapshot.hash`, memoised per equal snapshot (the canonical-JSON hash costs about a
    millisecond; the consensus engine and every voter need it for the same snapshot)."""
    try:
        h = _HASHES.get(snapshot)
    except TypeError:  # an unhashable field value: no memo
        return snapshot.hash
    if h is None:
        h = snapshot.hash
        _HASHES[snapshot] = h
        if len(_HASHES) > _HASHES_MAX:
            _HASHES.popitem(last=False)
    return h
