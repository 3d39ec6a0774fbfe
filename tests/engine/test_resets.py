from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from riskman.calendar import HolidayCalendar, ResetSchedule
from riskman.core.clock import FakeClock
from riskman.engine.resets import ResetScheduler
from riskman.storage.db import Database

CHICAGO = ZoneInfo("America/Chicago")
SCHEDULE = ResetSchedule(time(17, 0), CHICAGO)


def chicago(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CHICAGO).astimezone(UTC)


async def _scheduler(
    path: Path, clock: FakeClock, fired: list[tuple[date, datetime, str]]
) -> tuple[Database, ResetScheduler]:
    db = await Database.open(path)

    async def on_reset(ended: date, at: datetime, how: str) -> None:
        fired.append((ended, at, how))

    scheduler = ResetScheduler(db, clock, SCHEDULE, HolidayCalendar(), on_reset)
    clock.add_settler(scheduler.settled)
    return db, scheduler


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [
        (date(2026, 3, 8), 22),  # spring forward: 17:00 CDT = 22:00 UTC
        (date(2026, 11, 1), 23),  # fall back: 17:00 CST = 23:00 UTC
    ],
)
async def test_reset_fires_exactly_once_on_dst_days(
    tmp_path: Path, day: date, utc_hour: int
) -> None:
    start = datetime(day.year, day.month, day.day, 0, 30, tzinfo=CHICAGO).astimezone(UTC)
    clock = FakeClock(start)
    fired: list[tuple[date, datetime, str]] = []
    db, scheduler = await _scheduler(tmp_path / "r.db", clock, fired)
    try:
        await scheduler.start()
        fired.clear()  # the catch-up for the previous day
        await clock.advance(24 * 3600)
        on_day = [f for f in fired if f[0] == day]
        assert len(on_day) == 1
        assert on_day[0][1] == datetime(day.year, day.month, day.day, utc_hour, tzinfo=UTC)
        assert on_day[0][2] == "scheduled"
    finally:
        scheduler.stop()
        await db.close()


async def test_missed_reset_is_caught_up_once_at_start(tmp_path: Path) -> None:
    clock = FakeClock(chicago(2026, 11, 18, 10))
    fired: list[tuple[date, datetime, str]] = []
    db, scheduler = await _scheduler(tmp_path / "r.db", clock, fired)
    await scheduler.start()
    scheduler.stop()
    assert fired == [(date(2026, 11, 17), chicago(2026, 11, 17, 17), "catch_up")]
    await db.close()

    # riskman was down across the 18th's reset; started again on the 19th at 09:00.
    fired.clear()
    clock2 = FakeClock(chicago(2026, 11, 19, 9))
    db2, scheduler2 = await _scheduler(tmp_path / "r.db", clock2, fired)
    try:
        await scheduler2.start()
        assert fired == [(date(2026, 11, 18), chicago(2026, 11, 18, 17), "catch_up")]
        fired.clear()
        await scheduler2.catch_up()  # a second start the same day repeats nothing
        assert fired == []
    finally:
        scheduler2.stop()
        await db2.close()


async def test_reset_runs_every_day_across_a_week(tmp_path: Path) -> None:
    clock = FakeClock(chicago(2026, 11, 16, 9))
    fired: list[tuple[date, datetime, str]] = []
    db, scheduler = await _scheduler(tmp_path / "r.db", clock, fired)
    try:
        await scheduler.start()
        await clock.advance(7 * 24 * 3600)
        scheduled = [f[0] for f in fired if f[2] == "scheduled"]
        assert scheduled == [date(2026, 11, 16) + timedelta(days=i) for i in range(7)]
        rows = await db.fetchall("SELECT trading_day FROM reset_log")
        assert len(rows) == len({r[0] for r in rows}) == 8
    finally:
        scheduler.stop()
        await db.close()


def test_trading_day_rolls_at_the_reset() -> None:
    assert SCHEDULE.trading_day(chicago(2026, 11, 18, 16, 59)) == date(2026, 11, 18)
    assert SCHEDULE.trading_day(chicago(2026, 11, 18, 17, 0)) == date(2026, 11, 19)
    assert SCHEDULE.day_start(date(2026, 11, 19)) == chicago(2026, 11, 18, 17)
    assert SCHEDULE.next_reset(chicago(2026, 11, 18, 17, 0)) == chicago(2026, 11, 19, 17)
