"""RULE-021 blackouts: windows in which no new exposure is allowed (an FOMC release, the open).

Windows come from three places: `windows` (one-off ISO date-times; without an offset they are
wall times in the rule's `timezone`, by default the top-level one), `weekly` (days and HH:MM;
an end before the start ends the next day) and `ics_file` (an iCalendar file, such as an
exported economic calendar; see `riskman.calendar.read_ics`). Windows that overlap or touch
count as one.

During a window the account is in a cooldown held by this rule until the window ends: a
position opened or grown is cut back, entry orders are cancelled (the stop and target of an open
position are not), as in any cooldown. With `flatten_before`, the window starts that much
earlier and riskman flattens the account as it starts; without it, positions already open are
kept.

The rule arms a timer for the next window start, so the cooldown begins on time without any
event; the cooldown itself ends by its own expiry (MOD-002), and survives a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from riskman.calendar import WEEKDAYS, Blackout, local_instant, read_ics
from riskman.core.intents import Category, CloseAll, Intent
from riskman.core.rules import (
    AccountTrigger,
    CheckTrigger,
    PositionTrigger,
    Rule,
    RuleContext,
    TimerTrigger,
    Trigger,
)
from riskman.core.views import RuleStatus

if TYPE_CHECKING:
    from riskman.config import BlackoutsConfig

log = logging.getLogger(__name__)

TIMER = "window"
HORIZON = timedelta(days=8)
"""How far ahead weekly windows are unrolled (more than a week: one always lies ahead)."""


@dataclass(frozen=True, slots=True)
class Span:
    """A window as enforced: from `begin` (its start, less `flatten_before`) to `end`."""

    begin: datetime
    end: datetime
    reason: str
    start: datetime


class Blackouts(Rule):
    id = "RULE-021"
    key = "blackouts"
    title = "Blackout windows"
    category = Category.COOLDOWN
    triggers = frozenset({TimerTrigger, CheckTrigger, PositionTrigger, AccountTrigger})
    """An account update arms the timer of an account seen for the first time."""

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self._ics: dict[tuple[Path, str, float], tuple[int, list[Blackout]]] = {}
        self._flattened: dict[int, datetime] = {}
        """Per account: the start of the window it was last flattened for."""

    # --- rule API ------------------------------------------------------------------------

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        cfg: BlackoutsConfig = self.cfg(account_id)
        now = self.ctx.now()
        spans = self.spans(account_id, now)
        current = _current(spans, now)
        ahead = next((s for s in spans if s.begin > now), None)
        if ahead is not None:
            if self.ctx.rule_timer_deadline(self.id, account_id, TIMER) != ahead.begin:
                self.ctx.start_rule_timer(self.id, account_id, TIMER, ahead.begin)
        else:
            self.ctx.cancel_rule_timer(self.id, account_id, TIMER)
        if current is None:
            return []
        intents: list[Intent] = []
        held = self._held_until(account_id)
        until_text = current.end.astimezone(self._zone(account_id)).strftime("%a %H:%M")
        reason = f"blackout: {current.reason} until {until_text}"
        if held is None or held < current.end:
            intents += self.cooldown(account_id, reason, current.end)
        if (
            cfg.flatten_before is not None
            and self._flattened.get(account_id) != current.start
            and self.ctx.state.get_all_positions(account_id)
        ):
            self._flattened[account_id] = current.start
            intents.append(
                CloseAll(
                    rule=self.id,
                    account_id=account_id,
                    reason=f"{reason}: flatten before it starts",
                    category=Category.CLOSE,
                )
            )
        return intents

    def status(self, account_id: int) -> RuleStatus:
        now = self.ctx.now()
        zone = self._zone(account_id)
        try:
            spans = self.spans(account_id, now)
        except ValueError as exc:
            return RuleStatus(value="calendar unreadable", limit="", detail=str(exc))
        current = _current(spans, now)
        if current is not None:
            end = current.end.astimezone(zone).strftime("%H:%M")
            return RuleStatus(
                value=f"in blackout until {end}", limit=current.reason, used=1.0, detail=""
            )
        ahead = next((s for s in spans if s.begin > now), None)
        if ahead is None:
            return RuleStatus(value="no window ahead", limit="", used=0.0)
        begins = ahead.start.astimezone(zone).strftime("%a %d %b %H:%M")
        return RuleStatus(value=f"next: {begins}", limit=ahead.reason, used=0.0)

    # --- queries -------------------------------------------------------------------------

    def spans(self, account_id: int, now: datetime) -> list[Span]:
        """The windows that have not ended by `now` (merged), soonest first."""
        cfg: BlackoutsConfig = self.cfg(account_id)
        zone = self._zone(account_id)
        lead = timedelta(seconds=float(cfg.flatten_before or 0))
        raw: list[Blackout] = []
        for window in cfg.windows:
            raw.append(Blackout(_utc(window.start, zone), _utc(window.end, zone), window.reason))
        today = now.astimezone(zone).date()
        for weekly in cfg.weekly:
            for offset in range(-1, HORIZON.days + 1):
                day = today + timedelta(days=offset)
                if WEEKDAYS[day.weekday()] not in weekly.days:
                    continue
                start = local_instant(day, weekly.start, zone)
                end_day = day if weekly.end > weekly.start else day + timedelta(days=1)
                raw.append(Blackout(start, local_instant(end_day, weekly.end, zone), weekly.reason))
        if cfg.ics_file is not None:
            raw += self._read_ics(cfg.ics_file, zone, float(cfg.around_events))
        spans = sorted(
            (Span(w.start - lead, w.end, w.reason, w.start) for w in raw if w.end > now),
            key=lambda s: s.begin,
        )
        merged: list[Span] = []
        for span in spans:
            last = merged[-1] if merged else None
            if last is not None and span.begin <= last.end:
                if span.end > last.end:
                    merged[-1] = Span(
                        last.begin, span.end, f"{last.reason}, {span.reason}", last.start
                    )
                continue
            merged.append(span)
        return merged

    # --- internals -----------------------------------------------------------------------

    def _zone(self, account_id: int) -> ZoneInfo:
        cfg: BlackoutsConfig = self.cfg(account_id)
        return ZoneInfo(cfg.timezone or self.ctx.settings.timezone)

    def _held_until(self, account_id: int) -> datetime | None:
        for lock in self.ctx.lockouts.get_lockout_info(account_id):
            if lock.rule == self.id and lock.symbol is None:
                return lock.until or datetime.max.replace(tzinfo=UTC)
        return None

    def _read_ics(self, path: Path, zone: ZoneInfo, around: float) -> list[Blackout]:
        """The file's windows, read again only when the file changes."""
        key = (path, zone.key, around)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = -1
        cached = self._ics.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            windows = read_ics(path, zone, timedelta(seconds=around))
        except ValueError as exc:
            if cached is not None:
                log.warning("%s: %s; keeping the windows read before", self.id, exc)
                return cached[1]
            raise
        self._ics[key] = (mtime, windows)
        return windows


def _utc(value: datetime, zone: ZoneInfo) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return aware.astimezone(UTC)


def _current(spans: list[Span], now: datetime) -> Span | None:
    return next((s for s in spans if s.begin <= now < s.end), None)
