"""MOD-005 P&L tracker: today's realized P&L per account, and open P&L from quotes.

Realized P&L of a trading day = sum of `profitAndLoss` of its closing fills minus the fees of
all its fills; voided fills never count (a fill voided later is taken back out). A fill belongs
to the trading day of its own timestamp. Each fill is stored once (unique per account and
trade id), in the same transaction as the day's total, so a replay never counts twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from riskman.calendar import ResetSchedule
from riskman.core.clock import Clock
from riskman.core.facts import ClosingFill, OpenPnl, PositionState, TradeEffect
from riskman.core.models import Trade
from riskman.engine.contracts import ContractCache
from riskman.engine.quotes import QuoteTracker
from riskman.engine.state import StateManager
from riskman.storage.db import Database, Transaction, from_db_time, to_db_time

ZERO = Decimal(0)


@dataclass(slots=True)
class DayTotals:
    realized: Decimal = ZERO
    gross: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0


def open_pnl(
    mark: Decimal, average: Decimal, tick_size: Decimal, tick_value: Decimal, signed_size: int
) -> Decimal:
    """(mark - average) / tickSize x tickValue x size, positive when the position gains."""
    return (mark - average) / tick_size * tick_value * signed_size


class PnlTracker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        schedule: Callable[[], ResetSchedule],
        state: StateManager,
        quotes: QuoteTracker,
        contracts: ContractCache,
    ) -> None:
        self._db = db
        self._clock = clock
        self._schedule = schedule
        self._state = state
        self._quotes = quotes
        self._contracts = contracts
        self._days: dict[tuple[int, date], DayTotals] = {}
        self._seen: dict[tuple[int, int], tuple[date, bool, Decimal]] = {}

    # --- start-up ------------------------------------------------------------------------

    async def realized_between(self, first: date, before: date) -> dict[int, Decimal]:
        """Stored realized P&L (net of fees) of the trading days from `first` up to `before`
        (excluded), per account."""
        rows = await self._db.fetchall(
            "SELECT account_id, realized FROM daily_pnl WHERE trading_day >= ? AND trading_day < ?",
            (first.isoformat(), before.isoformat()),
        )
        totals: dict[int, Decimal] = {}
        for row in rows:
            totals[row["account_id"]] = totals.get(row["account_id"], ZERO) + Decimal(
                row["realized"]
            )
        return totals

    async def closing_fills(self, day: date) -> list[ClosingFill]:
        """The stored, not voided closing fills of trading day `day`, oldest first."""
        rows = await self._db.fetchall(
            "SELECT account_id, contract_id, ts, pnl, fees FROM trades "
            "WHERE trading_day = ? AND voided = 0 AND pnl IS NOT NULL ORDER BY ts",
            (day.isoformat(),),
        )
        fills = []
        for row in rows:
            at = from_db_time(row["ts"])
            if at is not None:
                net = Decimal(row["pnl"]) - Decimal(row["fees"])
                fills.append(ClosingFill(row["account_id"], row["contract_id"], at, net))
        return fills

    async def restore(self) -> None:
        """Load today's and yesterday's fills (the ones a reconnect can replay)."""
        today = self.trading_day()
        days = (today.isoformat(), date.fromordinal(today.toordinal() - 1).isoformat())
        rows = await self._db.fetchall(
            "SELECT account_id, trade_id, trading_day, pnl, fees, voided FROM trades "
            "WHERE trading_day IN (?, ?)",
            days,
        )
        for row in rows:
            net = Decimal(row["pnl"] or 0) - Decimal(row["fees"])
            self._seen[(row["account_id"], row["trade_id"])] = (
                date.fromisoformat(row["trading_day"]),
                bool(row["voided"]),
                net,
            )
        totals = await self._db.fetchall(
            "SELECT account_id, trading_day, realized, gross, fees, fills FROM daily_pnl "
            "WHERE trading_day IN (?, ?)",
            days,
        )
        for row in totals:
            self._days[(row["account_id"], date.fromisoformat(row["trading_day"]))] = DayTotals(
                Decimal(row["realized"]), Decimal(row["gross"]), Decimal(row["fees"]), row["fills"]
            )

    # --- fills ---------------------------------------------------------------------------

    def trading_day(self) -> date:
        return self._schedule().trading_day(self._clock.now())

    def record(self, trade: Trade) -> TradeEffect | None:
        """Count a fill in memory at once. None if it changes nothing (a duplicate)."""
        key = (trade.account_id, trade.id)
        day = self._schedule().trading_day(trade.creation_timestamp)
        seen = self._seen.get(key)
        net = trade.net_pnl
        if seen is None:
            self._seen[key] = (day, trade.voided, net)
            if trade.voided:
                return TradeEffect(trade, day, True, ZERO, 0)
            self._add(trade.account_id, day, trade, 1)
            return TradeEffect(trade, day, True, net, 1)
        seen_day, was_voided, seen_net = seen
        if trade.voided and not was_voided:
            self._seen[key] = (seen_day, True, seen_net)
            totals = self._days.setdefault((trade.account_id, seen_day), DayTotals())
            totals.realized -= seen_net
            totals.gross -= seen_net + trade.fees
            totals.fees -= trade.fees
            totals.fills -= 1
            return TradeEffect(trade, seen_day, False, -seen_net, -1)
        return None

    async def persist(self, effect: TradeEffect, *, by_riskman: bool = False) -> None:
        """Store the fill and the day's new total in one transaction.

        `by_riskman` marks a fill of riskman's own close (not counted as a trader's trade).
        """
        trade = effect.trade
        async with self._db.transaction() as tx:
            if effect.is_new:
                inserted = await tx.execute(
                    "INSERT OR IGNORE INTO trades (account_id, trade_id, contract_id, ts, "
                    "trading_day, price, pnl, fees, side, size, voided, order_id, by_riskman) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        trade.account_id,
                        trade.id,
                        trade.contract_id,
                        to_db_time(trade.creation_timestamp),
                        effect.day.isoformat(),
                        str(trade.price),
                        None if trade.profit_and_loss is None else str(trade.profit_and_loss),
                        str(trade.fees),
                        int(trade.side),
                        trade.size,
                        int(trade.voided),
                        trade.order_id,
                        int(by_riskman),
                    ),
                )
                if not inserted:
                    return
            else:
                changed = await tx.execute(
                    "UPDATE trades SET voided = 1 WHERE account_id = ? AND trade_id = ? "
                    "AND voided = 0",
                    (trade.account_id, trade.id),
                )
                if not changed:
                    return
            if effect.fills_delta:
                await self._write_day(tx, trade, effect.day, effect.fills_delta)

    def _add(self, account_id: int, day: date, trade: Trade, fills: int) -> None:
        totals = self._days.setdefault((account_id, day), DayTotals())
        totals.realized += trade.net_pnl
        totals.gross += trade.profit_and_loss or ZERO
        totals.fees += trade.fees
        totals.fills += fills

    async def _write_day(self, tx: Transaction, trade: Trade, day: date, sign: int) -> None:
        # The stored total moves by the stored fill, in the transaction that stores (or voids)
        # that fill, so it can never include a fill that is only in memory (fills are written
        # in the background), and a busy day costs one row per fill, not a re-sum of the day.
        key = (trade.account_id, day.isoformat())
        fill = await tx.fetchone(
            "SELECT pnl, fees FROM trades WHERE account_id = ? AND trade_id = ?",
            (trade.account_id, trade.id),
        )
        assert fill is not None  # stored or voided just now, in this transaction
        gross = ZERO if fill["pnl"] is None else Decimal(fill["pnl"])
        fees = Decimal(fill["fees"])
        row = await tx.fetchone(
            "SELECT realized, gross, fees, fills FROM daily_pnl "
            "WHERE account_id = ? AND trading_day = ?",
            key,
        )
        totals = DayTotals()
        if row is not None:
            totals.realized = Decimal(row["realized"])
            totals.gross = Decimal(row["gross"])
            totals.fees = Decimal(row["fees"])
            totals.fills = row["fills"]
        totals.realized += sign * (gross - fees)
        totals.gross += sign * gross
        totals.fees += sign * fees
        totals.fills += sign
        await tx.execute(
            "INSERT OR REPLACE INTO daily_pnl (account_id, trading_day, realized, gross, fees, "
            "fills, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                *key,
                str(totals.realized),
                str(totals.gross),
                str(totals.fees),
                totals.fills,
                to_db_time(self._clock.now()),
            ),
        )

    # --- queries -------------------------------------------------------------------------

    def get_daily_realized_pnl(self, account_id: int, day: date | None = None) -> Decimal:
        totals = self._days.get((account_id, day or self.trading_day()))
        return ZERO if totals is None else totals.realized

    def day_totals(self, account_id: int, day: date | None = None) -> DayTotals:
        totals = self._days.get((account_id, day or self.trading_day()))
        return DayTotals() if totals is None else replace(totals)

    def position_pnl(self, state: PositionState, *, allow_stale: bool = False) -> Decimal | None:
        """Open P&L of one position, or None without a (fresh) quote or tick data."""
        contract = self._contracts.get(state.contract_id)
        if contract is None:
            return None
        if not allow_stale and self._quotes.is_quote_stale(state.contract_id):
            return None
        mark = self._quotes.get_mark(state.contract_id, state.sign)
        if mark is None:
            return None
        return open_pnl(
            mark,
            state.position.average_price,
            contract.tick_size,
            contract.tick_value,
            state.signed_size,
        )

    def position_ticks(self, state: PositionState) -> Decimal | None:
        """How many ticks the position is in profit (negative in loss), from a fresh quote."""
        contract = self._contracts.get(state.contract_id)
        if contract is None or self._quotes.is_quote_stale(state.contract_id):
            return None
        mark = self._quotes.get_mark(state.contract_id, state.sign)
        if mark is None:
            return None
        return (mark - state.position.average_price) / contract.tick_size * state.sign

    def calculate_unrealized_pnl(self, account_id: int) -> OpenPnl:
        total = ZERO
        priced = 0
        unpriced = []
        for state in self._state.get_all_positions(account_id):
            value = self.position_pnl(state)
            if value is None:
                unpriced.append(state.contract_id)
            else:
                total += value
                priced += 1
        return OpenPnl(total, priced, tuple(unpriced))

    def forget_before(self, day: date) -> None:
        """Drop in-memory fills of days before `day` (they stay in the database)."""
        self._seen = {k: v for k, v in self._seen.items() if v[0] >= day}
        self._days = {k: v for k, v in self._days.items() if k[1] >= day}
