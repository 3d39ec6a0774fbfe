"""Trading calendar: CME holidays (full closures and early closes), trading days and sessions.

Pure functions of time: nothing here reads a clock. All instants are aware UTC datetimes; local
wall times are built in the configured zone only here, so DST is handled in one place.

A *trading day* is labelled by the local date on which it ends: with the daily reset at 17:00,
Tuesday 16:59 and Monday 17:00 both belong to Tuesday's trading day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from riskman.yamlfile import ConfigError, YamlProblem, parse_hhmm, parse_zone, read_yaml

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall time `at` on `day` in `zone`.

    A wall time skipped by a DST jump maps to the same offset as before the jump (02:30 on a
    spring-forward day is 03:30 daylight time); a repeated one maps to its first occurrence.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Holiday:
    day: date
    name: str
    early_close: time | None = None
    """None: the exchange is closed all day. Otherwise trading halts at this local time."""

    @property
    def is_full_closure(self) -> bool:
        return self.early_close is None


class HolidayCalendar:
    """The exchange holiday table of `config/holidays.yaml`."""

    def __init__(self, holidays: Iterable[Holiday] = (), zone: str = "America/Chicago") -> None:
        self.zone_name = zone
        self.zone = ZoneInfo(zone)
        self._by_day = {holiday.day: holiday for holiday in holidays}

    def __len__(self) -> int:
        return len(self._by_day)

    def __iter__(self) -> Any:
        return iter(sorted(self._by_day.values(), key=lambda h: h.day))

    def get(self, day: date) -> Holiday | None:
        return self._by_day.get(day)

    def is_holiday(self, day: date) -> bool:
        """True when the exchange is closed all day."""
        holiday = self._by_day.get(day)
        return holiday is not None and holiday.is_full_closure

    def early_close(self, day: date) -> time | None:
        holiday = self._by_day.get(day)
        return None if holiday is None else holiday.early_close

    @classmethod
    def load(cls, path: Path) -> HolidayCalendar:
        """Read and validate a holidays file; raise ConfigError listing every problem."""
        try:
            data = read_yaml(path)
        except YamlProblem as exc:
            raise ConfigError([f"{path}: {exc.key}: {exc.reason}"]) from None
        problems: list[str] = []
        zone = data.get("timezone", "America/Chicago")
        try:
            zone = parse_zone(zone)
        except ValueError as exc:
            problems.append(f"{path}: timezone: {exc}")
            zone = "America/Chicago"
        unknown = set(data) - {"timezone", "closed", "early_close"}
        problems.extend(f"{path}: {key}: unknown key" for key in sorted(unknown))
        holidays: list[Holiday] = []
        for section in ("closed", "early_close"):
            entries = data.get(section) or []
            if not isinstance(entries, list):
                problems.append(f"{path}: {section}: expected a list of dates")
                continue
            for index, entry in enumerate(entries):
                where = f"{path}: {section}.{index}"
                if not isinstance(entry, dict):
                    problems.append(f"{where}: expected {{date: YYYY-MM-DD, name: ...}}")
                    continue
                try:
                    day = _parse_date(entry.get("date"))
                    name = str(entry.get("name") or "holiday")
                    close = None
                    if section == "early_close":
                        close = parse_hhmm(entry.get("time"))
                    extra = set(entry) - {"date", "name", "time"}
                    if extra:
                        raise ValueError(f"unknown key {sorted(extra)[0]}")
                except ValueError as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                holidays.append(Holiday(day, name, close))
        seen: set[date] = set()
        for holiday in holidays:
            if holiday.day in seen:
                problems.append(f"{path}: {holiday.day}: listed twice")
            seen.add(holiday.day)
        if problems:
            raise ConfigError(problems)
        return cls(holidays, zone)


def _parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date YYYY-MM-DD")


# --- trading days and the daily reset --------------------------------------------------------


@dataclass(frozen=True)
class ResetSchedule:
    """The daily reset at a local time of day (17:00 America/Chicago for Topstep)."""

    at: time
    zone: ZoneInfo

    def trading_day(self, now: datetime) -> date:
        """The trading day `now` belongs to (labelled by the date it ends on)."""
        local = now.astimezone(self.zone)
        day = local.date()
        return day + timedelta(days=1) if local >= self._local(day) else day

    def reset_at(self, day: date) -> datetime:
        """The reset that ends trading day `day` (UTC)."""
        return local_instant(day, self.at, self.zone)

    def next_reset(self, now: datetime) -> datetime:
        return self.reset_at(self.trading_day(now))

    def day_start(self, day: date) -> datetime:
        """When trading day `day` began: the previous day's reset."""
        return self.reset_at(day - timedelta(days=1))

    def _local(self, day: date) -> datetime:
        return datetime.combine(day, self.at, tzinfo=self.zone)


# --- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One trading session, [start, end) in UTC, for the trading day `day`."""

    day: date
    start: datetime
    end: datetime
    early_close: bool = False

    def contains(self, now: datetime) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True)
class SessionSchedule:
    """The allowed trading session: `start`-`end` local time on `days`, minus holidays.

    A session whose end is not after its start runs overnight and belongs to the day it ends
    on (`start: "17:00", end: "15:10"` is Topstep's trading day). On an early-close day the
    session ends `early_close_buffer` seconds before the exchange halts, if that is earlier.
    """

    start: time
    end: time
    days: frozenset[str]
    zone: ZoneInfo
    calendar: HolidayCalendar | None = None
    early_close_buffer: float = 0.0

    def window(self, day: date) -> Window | None:
        """The session of trading day `day`, or None if there is none that day."""
        if WEEKDAYS[day.weekday()] not in self.days:
            return None
        if self.calendar is not None and self.calendar.is_holiday(day):
            return None
        start_day = day - timedelta(days=1) if self.end <= self.start else day
        start = local_instant(start_day, self.start, self.zone)
        end = local_instant(day, self.end, self.zone)
        early = False
        if self.calendar is not None:
            halt = self.calendar.early_close(day)
            if halt is not None:
                cutoff = local_instant(day, halt, self.calendar.zone) - timedelta(
                    seconds=self.early_close_buffer
                )
                if cutoff < end:
                    end, early = cutoff, True
        if end <= start:
            return None
        return Window(day, start, end, early)

    def current_or_next(self, now: datetime) -> Window | None:
        """The session open at `now`, else the next one to open (None if none in 3 weeks)."""
        local_day = now.astimezone(self.zone).date()
        for offset in range(-1, 22):
            window = self.window(local_day + timedelta(days=offset))
            if window is not None and window.end > now:
                return window
        return None

    def is_open(self, now: datetime) -> bool:
        window = self.current_or_next(now)
        return window is not None and window.contains(now)

    def next_start(self, now: datetime) -> datetime | None:
        """When trading is next allowed after `now` (the start of the next session)."""
        window = self.current_or_next(now)
        if window is None:
            return None
        if not window.contains(now):
            return window.start
        following = self.current_or_next(window.end)
        return None if following is None else following.start


# --- blackout windows (RULE-021) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blackout:
    """One window in which no new exposure is allowed, [start, end) in UTC."""

    start: datetime
    end: datetime
    reason: str


def read_ics(path: Path, zone: ZoneInfo, around: timedelta) -> list[Blackout]:
    """The events of an iCalendar file as blackout windows.

    Times without a zone are in `zone`; an all-day event blocks its whole day(s) there; an
    event without an end (an economic release) blocks `around` before and after it. Recurring
    events count only at their first occurrence. Raises ValueError with the reason.
    """
    import icalendar

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError and others for bad files
        raise ValueError(f"{path} is not an iCalendar file: {exc}") from None
    windows = []
    for event in calendar.walk("VEVENT"):
        start_prop = event.get("DTSTART")
        if start_prop is None:
            continue
        start, all_day = _ics_instant(start_prop.dt, zone)
        end_prop = event.get("DTEND")
        duration = event.get("DURATION")
        if end_prop is not None:
            end, _ = _ics_instant(end_prop.dt, zone)
        elif duration is not None:
            end = start + duration.dt
        elif all_day:
            end = _ics_instant(start_prop.dt + timedelta(days=1), zone)[0]
        else:
            end = start
        if end <= start:
            start, end = start - around, start + around
        if end <= start:
            continue
        reason = str(event.get("SUMMARY") or "calendar event")
        windows.append(Blackout(start, end, reason))
    return sorted(windows, key=lambda w: w.start)


def _ics_instant(value: Any, zone: ZoneInfo) -> tuple[datetime, bool]:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return aware.astimezone(UTC), False
    if isinstance(value, date):
        return local_instant(value, time(0, 0), zone), True
    raise ValueError(f"{value!r} is not a date or date-time")
