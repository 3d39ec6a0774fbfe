"""MOD-004 Reset scheduler: the daily reset, exactly once per trading day, DST-safe.

Each reset is recorded in `reset_log` under the trading day it ends (the local date of the
reset). A reset missed while riskman was stopped is caught up at start. The reset's effects
(daily lockouts, trade-counter session, end-of-day balances) are idempotent and run before the
reset is logged, so a crash in the middle repeats harmless work instead of skipping a reset.
The reset is reported (`on_done`) only once it is logged: a crash can never make riskman say
a reset happened twice, or say it happened when a restart would not know it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta

from riskman.calendar import HolidayCalendar, ResetSchedule
from riskman.core.clock import Clock, TimerHandle
from riskman.storage.db import Database, to_db_time

log = logging.getLogger(__name__)

ResetHandler = Callable[[date, datetime, str], Awaitable[None]]
"""Called with (trading day that ended, the reset instant, "scheduled" | "catch_up")."""
ResetReporter = Callable[[date, datetime, str], None]
"""Called with the same arguments once the reset is committed to `reset_log`."""


class ResetScheduler:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        schedule: ResetSchedule,
        calendar: HolidayCalendar,
        on_reset: ResetHandler,
        on_done: ResetReporter | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self.schedule = schedule
        self.calendar = calendar
        self._on_reset = on_reset
        self._on_done = on_done
        self._handle: TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Catch up a missed reset, then arm the timer for the next one."""
        await self.catch_up()
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def reconfigure(self, schedule: ResetSchedule, calendar: HolidayCalendar) -> None:
        self.schedule = schedule
        self.calendar = calendar
        if self._handle is not None:
            self.stop()
            self._arm()

    async def settled(self) -> None:
        """Wait for a reset that is running (tests, shutdown)."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)

    # --- queries -------------------------------------------------------------------------

    def trading_day(self, now: datetime | None = None) -> date:
        return self.schedule.trading_day(now or self._clock.now())

    def next_reset(self, now: datetime | None = None) -> datetime:
        return self.schedule.next_reset(now or self._clock.now())

    def day_start(self, now: datetime | None = None) -> datetime:
        """When the current trading day began (the last reset)."""
        return self.schedule.day_start(self.trading_day(now))

    def is_holiday(self, day: date) -> bool:
        return self.calendar.is_holiday(day)

    # --- firing --------------------------------------------------------------------------

    async def catch_up(self) -> bool:
        """Run the most recent reset if it has not run (riskman was down). True if it ran."""
        now = self._clock.now()
        ended = self.trading_day(now) - timedelta(days=1)
        return await self._fire(ended, "catch_up")

    def _arm(self) -> None:
        when = self.next_reset()
        ended = self.schedule.trading_day(when - timedelta(microseconds=1))
        self._handle = self._clock.call_at(when, lambda: self._due(ended))

    def _due(self, ended: date) -> None:
        self._handle = None
        self._task = asyncio.get_running_loop().create_task(self._run_due(ended))

    async def _run_due(self, ended: date) -> None:
        try:
            await self._fire(ended, "scheduled")
        except Exception:
            log.exception("daily reset for %s failed; it will be retried at start", ended)
        finally:
            self._arm()

    async def _fire(self, ended: date, how: str) -> bool:
        async with self._lock:
            row = await self._db.fetchone(
                "SELECT 1 FROM reset_log WHERE trading_day = ?", (ended.isoformat(),)
            )
            if row is not None:
                return False
            at = self.schedule.reset_at(ended)
            log.info("daily reset for trading day %s (%s)", ended, how)
            await self._on_reset(ended, at, how)
            await self._db.execute(
                "INSERT OR IGNORE INTO reset_log (trading_day, fired, how) VALUES (?, ?, ?)",
                (ended.isoformat(), to_db_time(self._clock.now()), how),
            )
            if self._on_done is not None:
                self._on_done(ended, at, how)
            return True
