from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import holidays
import pytest

from riskman.calendar import HolidayCalendar, SessionSchedule
from riskman.config import ConfigError
from tests.conftest import HOLIDAYS

CHICAGO = ZoneInfo("America/Chicago")
CAL = HolidayCalendar.load(HOLIDAYS)


def ct(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CHICAGO).astimezone(UTC)


def test_shipped_holidays_cover_every_xcme_closure_2025_to_2027() -> None:
    xcme = holidays.financial_holidays("XCME", years=[2025, 2026, 2027])
    for day, name in xcme.items():
        assert CAL.is_holiday(day), f"{day} {name} is an XCME holiday missing from holidays.yaml"
    closures = [h.day for h in CAL if h.is_full_closure]
    assert sorted(closures) == sorted(xcme)


def test_shipped_early_closes_are_weekdays_and_not_closures() -> None:
    early = [h for h in CAL if not h.is_full_closure]
    assert len(early) >= 20
    for holiday in early:
        assert holiday.day.weekday() < 5
        assert holiday.early_close in (time(12, 0), time(12, 15))
        assert not CAL.is_holiday(holiday.day)


def test_bad_holiday_file_is_reported(tmp_path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(
        "closed:\n  - {date: '2026-02-30'}\nearly_close:\n  - {date: 2026-11-27, time: '25:00'}\n"
    )
    with pytest.raises(ConfigError) as info:
        HolidayCalendar.load(path)
    assert any("closed.0" in p for p in info.value.problems)
    assert any("early_close.0" in p for p in info.value.problems)
    path.write_text("closed:\n  - {date: 2026-13-01}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        HolidayCalendar.load(path)


RTH = SessionSchedule(
    time(8, 30), time(15, 10), frozenset({"mon", "tue", "wed", "thu", "fri"}), CHICAGO, CAL, 300
)
OVERNIGHT = SessionSchedule(
    time(17, 0), time(15, 10), frozenset({"mon", "tue", "wed", "thu", "fri"}), CHICAGO, CAL
)


@pytest.mark.parametrize(
    ("now", "open_"),
    [
        (ct(2026, 11, 18, 8, 29), False),
        (ct(2026, 11, 18, 8, 30), True),  # start inclusive
        (ct(2026, 11, 18, 15, 9), True),
        (ct(2026, 11, 18, 15, 10), False),  # end exclusive
        (ct(2026, 11, 21, 10, 0), False),  # Saturday
        (ct(2026, 11, 26, 10, 0), False),  # Thanksgiving: closed
        (ct(2026, 11, 27, 12, 9), True),  # early close 12:15 minus 5 min buffer
        (ct(2026, 11, 27, 12, 10), False),
        (ct(2026, 3, 9, 8, 30), True),  # the Monday after the DST change
    ],
)
def test_regular_session_window(now: datetime, open_: bool) -> None:
    assert RTH.is_open(now) is open_


def test_next_start_skips_weekend_and_holiday() -> None:
    assert RTH.next_start(ct(2026, 11, 20, 15, 10)) == ct(2026, 11, 23, 8, 30)
    assert RTH.next_start(ct(2026, 11, 25, 16, 0)) == ct(2026, 11, 27, 8, 30)


def test_overnight_session_belongs_to_the_day_it_ends() -> None:
    window = OVERNIGHT.window(date(2026, 11, 23))  # Monday's trading day starts Sunday 17:00
    assert window is not None
    assert window.start == ct(2026, 11, 22, 17) and window.end == ct(2026, 11, 23, 15, 10)
    assert OVERNIGHT.is_open(ct(2026, 11, 22, 18))
    assert not OVERNIGHT.is_open(ct(2026, 11, 23, 16))


def test_session_times_follow_dst() -> None:
    before = RTH.window(date(2026, 3, 6))
    after = RTH.window(date(2026, 3, 9))
    assert before is not None and after is not None
    assert before.start.hour == 14 and after.start.hour == 13  # 08:30 CST / CDT in UTC
