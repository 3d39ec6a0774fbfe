"""RULE-009 session_block_outside: no trading outside the allowed session.

The session comes from `RuleContext.session` (start/end on `days` in the rule's timezone,
holidays closed, early closes moved earlier by `early_close_buffer`; an overnight session
belongs to the day it ends on). Windows are [start, end): the start instant is inside, the end
instant outside.

Outside the session, the account is locked until the next session start (`Unlock.SESSION`),
flattened and its orders cancelled, when:
- a position opens (by its own opening time) or grows;
- a working entry order is placed (or changed);
- with `flatten_at_end` (the default): the session ends, or the rule is checked and finds the
  account unlocked (a start-up, a config change, a reset). Without it, positions held through
  the end are left alone: only new exposure breaks the rule.

Inside the session the rule's own lock, if one is still there (the schedule changed under it),
is cleared. The rule arms two timers per account, at the next session end and start, and
re-arms them on every evaluation (each timer firing, the start-up check, a config change, an
account update).
"""

from __future__ import annotations

from datetime import datetime, time

from riskman.calendar import SessionSchedule
from riskman.core.facts import OrderChange
from riskman.core.intents import Category, ClearLock, Intent
from riskman.core.locks import Unlock
from riskman.core.rules import (
    AccountTrigger,
    CheckTrigger,
    OrderTrigger,
    PositionTrigger,
    Rule,
    TimerTrigger,
    Trigger,
)
from riskman.core.views import RuleStatus

START = "start"
END = "end"


class SessionBlockOutside(Rule):
    id = "RULE-009"
    key = "session_block_outside"
    title = "Trading session"
    category = Category.LOCKOUT
    # AccountTrigger too: an account seen for the first time gets its session timers (and,
    # outside the session, its lock) without waiting for a trade or a check.
    triggers = frozenset(
        {PositionTrigger, OrderTrigger, TimerTrigger, CheckTrigger, AccountTrigger}
    )

    async def restore(self) -> None:
        accounts = {a.id for a in self.ctx.state.accounts()}
        accounts |= set(self.ctx.state.position_accounts()) | set(self.ctx.settings.account_ids)
        for account_id in sorted(accounts):
            if self.enabled(account_id):
                self._arm(account_id, self._schedule(account_id), self.ctx.now())

    def evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        cfg = self.cfg(account_id)
        schedule = self._schedule(account_id)
        now = self.ctx.now()
        self._arm(account_id, schedule, now)
        locked = self.locked_by_me(account_id)
        if schedule.is_open(now):
            if not locked:
                return []
            # The lock ends at the next start by itself; it outlives the closed hours only when
            # the schedule changed under it (an earlier start, a holiday removed).
            return [
                ClearLock(
                    rule=self.id,
                    account_id=account_id,
                    reason="the trading session is open",
                    category=self.category,
                )
            ]
        if locked:
            return []
        what = self._breach(trigger, schedule, now, bool(cfg.flatten_at_end))
        if what is None:
            return []
        until = schedule.next_start(now)
        if until is None:
            reason = f"{what}; no session in the next 3 weeks"
        else:
            reason = f"{what}; trading resumes {_local(until, schedule)}"
        return self.lock_and_flatten(account_id, reason, until, Unlock.SESSION)

    def status(self, account_id: int) -> RuleStatus:
        schedule = self._schedule(account_id)
        now = self.ctx.now()
        window = schedule.current_or_next(now)
        hours = f"{_hhmm(self.cfg(account_id).start)}-{_hhmm(self.cfg(account_id).end)}"
        if window is None:
            return RuleStatus(value="closed", limit=hours, detail="no session in 3 weeks")
        if window.contains(now):
            early = " (early close)" if window.early_close else ""
            return RuleStatus(
                value="open",
                limit=hours,
                detail=f"ends {_local(window.end, schedule)}{early}",
            )
        return RuleStatus(
            value="closed", limit=hours, detail=f"opens {_local(window.start, schedule)}"
        )

    # --- internals -----------------------------------------------------------------------

    def _schedule(self, account_id: int) -> SessionSchedule:
        return self.ctx.session(self.cfg(account_id))

    def _breach(
        self, trigger: Trigger, schedule: SessionSchedule, now: datetime, flatten: bool
    ) -> str | None:
        """What broke the rule (we are outside the session and not locked yet), or None."""
        if isinstance(trigger, PositionTrigger) and trigger.change.grew:
            change = trigger.change
            assert change.after is not None
            # A position seen for the first time (a reconnect, a fresh start) is judged by its
            # own opening time: one opened inside the session and held is not new exposure.
            # A reversal or an increase happens now.
            at = change.after.opened if change.before is None else now
            if not schedule.is_open(at):
                verb = "opened" if change.opened else "increased"
                return f"position {verb} outside the trading session"
        if isinstance(trigger, OrderTrigger) and self._new_entry(trigger.change):
            return "entry order placed outside the trading session"
        if not flatten:
            return None
        if isinstance(trigger, TimerTrigger) and trigger.name == END:
            return "the trading session ended"
        return "outside the trading session"

    def _new_entry(self, change: OrderChange) -> bool:
        order = change.after
        if order is None or not order.status.is_working:
            return False
        if not self.ctx.state.increases_exposure(order):
            return False
        before = change.before
        # A modified entry (new size or price) is placed again, in effect.
        return before is None or (
            before.side,
            before.size,
            before.limit_price,
            before.stop_price,
        ) != (
            order.side,
            order.size,
            order.limit_price,
            order.stop_price,
        )

    def _arm(self, account_id: int, schedule: SessionSchedule, now: datetime) -> None:
        """Timers at the next session start and end (each firing re-arms them)."""
        window = schedule.current_or_next(now)
        start: datetime | None = None
        end: datetime | None = None
        if window is not None and window.contains(now):
            end = window.end
            following = schedule.current_or_next(window.end)
            start = None if following is None else following.start
        elif window is not None:
            start, end = window.start, window.end
        self._set_timer(account_id, START, start)
        self._set_timer(account_id, END, end)

    def _set_timer(self, account_id: int, name: str, at: datetime | None) -> None:
        if at is None:
            self.ctx.cancel_rule_timer(self.id, account_id, name)
        elif self.ctx.rule_timer_deadline(self.id, account_id, name) != at:
            self.ctx.start_rule_timer(self.id, account_id, name, at)


def _local(at: datetime, schedule: SessionSchedule) -> str:
    """`Mon Nov 23 08:30 CST`: a session time as the trader reads it."""
    return at.astimezone(schedule.zone).strftime("%a %b %d %H:%M %Z")


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")
