"""MOD-008 Trade counter: trades per rolling minute, rolling hour and session, per account.

A trade is one order that filled: its partial fills count once, at the time of its first
fill, by the fill's own timestamp (not when riskman heard of it). Counts are rebuilt on start
from the stored fills of the session, so they survive a restart.

The fills themselves are counted too (`fill_times`, `get_fill_counts`), for rules configured
with `count_trades_as: fills` (TopstepX's way: every entry and every exit counts).
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, timedelta

from riskman.core.clock import Clock
from riskman.core.models import Trade
from riskman.core.views import TradeCounts
from riskman.storage.db import Database, from_db_time, to_db_time

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


class TradeCounter:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._session_start: dict[int, datetime] = {}
        self._default_start: datetime | None = None
        self._times: dict[int, list[datetime]] = {}
        self._orders: dict[int, set[int]] = {}
        self._fills: dict[int, list[datetime]] = {}
        self._fill_ids: dict[int, set[int]] = {}

    async def trades_between(self, first: date, before: date) -> dict[int, tuple[int, int]]:
        """The trader's trades and fills (riskman's own closes not counted) of the trading days
        from `first` up to `before` (excluded), per account, from the stored fills."""
        rows = await self._db.fetchall(
            "SELECT account_id, COUNT(DISTINCT order_id) AS n, COUNT(*) AS f FROM trades "
            "WHERE voided = 0 AND by_riskman = 0 AND trading_day >= ? AND trading_day < ? "
            "GROUP BY account_id",
            (first.isoformat(), before.isoformat()),
        )
        return {row["account_id"]: (row["n"], row["f"]) for row in rows}

    async def restore(self, session_start: datetime) -> None:
        """Rebuild counts from the fills stored since each account's session start."""
        self._default_start = session_start
        rows = await self._db.fetchall("SELECT account_id, session_start FROM trade_counter")
        for row in rows:
            start = from_db_time(row["session_start"])
            if start is not None:
                self._session_start[row["account_id"]] = max(start, session_start)
        fills = await self._db.fetchall(
            "SELECT account_id, order_id, MIN(ts) AS first FROM trades WHERE voided = 0 "
            "AND by_riskman = 0 AND ts >= ? GROUP BY account_id, order_id",
            (to_db_time(session_start),),
        )
        for row in fills:
            ts = from_db_time(row["first"])
            if ts is not None:
                self._add(row["account_id"], row["order_id"], ts)
        each = await self._db.fetchall(
            "SELECT account_id, trade_id, ts FROM trades WHERE voided = 0 AND by_riskman = 0 "
            "AND ts >= ?",
            (to_db_time(session_start),),
        )
        for row in each:
            ts = from_db_time(row["ts"])
            if ts is not None:
                self._add_fill(row["account_id"], row["trade_id"], ts)

    def get_session_start(self, account_id: int) -> datetime | None:
        return self._session_start.get(account_id, self._default_start)

    def record_trade(self, trade: Trade) -> TradeCounts | None:
        """Count a fill. None if its order was already counted or it is before the session."""
        start = self.get_session_start(trade.account_id)
        if trade.voided or (start is not None and trade.creation_timestamp < start):
            return None
        self._add_fill(trade.account_id, trade.id, trade.creation_timestamp)
        if not self._add(trade.account_id, trade.order_id, trade.creation_timestamp):
            return None
        return self.get_trade_counts(trade.account_id)

    def get_trade_counts(self, account_id: int, now: datetime | None = None) -> TradeCounts:
        now = now or self._clock.now()
        times = self._times.get(account_id, [])
        minute = len(times) - bisect.bisect_right(times, now - MINUTE)
        hour = len(times) - bisect.bisect_right(times, now - HOUR)
        return TradeCounts(minute, hour, len(times))

    def get_fill_counts(self, account_id: int, now: datetime | None = None) -> TradeCounts:
        """Like `get_trade_counts`, counting every fill (entries and exits)."""
        now = now or self._clock.now()
        times = self._fills.get(account_id, [])
        minute = len(times) - bisect.bisect_right(times, now - MINUTE)
        hour = len(times) - bisect.bisect_right(times, now - HOUR)
        return TradeCounts(minute, hour, len(times))

    def fill_times(self, account_id: int) -> list[datetime]:
        """When each counted fill of the session was made, oldest first (a copy)."""
        return list(self._fills.get(account_id, ()))

    def counted_fill(self, account_id: int, trade_id: int) -> bool:
        """Was this fill counted (a trader's fill of this session)?"""
        return trade_id in self._fill_ids.get(account_id, ())

    def trade_times(self, account_id: int) -> list[datetime]:
        """When each trade of the session was made (its first fill), oldest first (a copy)."""
        return list(self._times.get(account_id, ()))

    async def reset_session(self, start: datetime, account_ids: list[int]) -> None:
        """A new session starts at `start` (the daily reset): session counts go to zero."""
        self._default_start = start
        accounts = set(account_ids) | set(self._times) | set(self._session_start)
        async with self._db.transaction() as tx:
            for account_id in accounts:
                self._session_start[account_id] = start
                await tx.execute(
                    "INSERT OR REPLACE INTO trade_counter (account_id, session_start) "
                    "VALUES (?, ?)",
                    (account_id, to_db_time(start)),
                )
        for account_id, times in self._times.items():
            keep = bisect.bisect_left(times, start)
            self._times[account_id] = times[keep:]
        self._orders = {account: set() for account in self._orders}
        for account_id, times in self._fills.items():
            self._fills[account_id] = times[bisect.bisect_left(times, start) :]
        self._fill_ids = {account: set() for account in self._fill_ids}

    def _add(self, account_id: int, order_id: int, ts: datetime) -> bool:
        orders = self._orders.setdefault(account_id, set())
        if order_id and order_id in orders:
            return False
        if order_id:
            orders.add(order_id)
        bisect.insort(self._times.setdefault(account_id, []), ts)
        return True

    def _add_fill(self, account_id: int, trade_id: int, ts: datetime) -> None:
        ids = self._fill_ids.setdefault(account_id, set())
        if trade_id in ids:
            return
        ids.add(trade_id)
        bisect.insort(self._fills.setdefault(account_id, []), ts)
