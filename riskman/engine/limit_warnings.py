"""Warnings before a money limit: at `warnings.at` percent (50, 75, 90 by default) of the
daily loss limit (RULE-003), of the distance to the maximum loss floor (RULE-014) and of the
daily profit target (RULE-013), once per threshold, trading day and account.

The check is not part of enforcement: an account change only marks the account, and the
check runs a moment later on the loop (coalesced), reading the rules' own status. What fired
is stored (deferred write), so a restart does not warn again the same day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Decimal

from riskman.config import Settings
from riskman.core.clock import Clock, TimerHandle
from riskman.core.rules import Rule
from riskman.core.views import AccountChanged, EngineChange, LimitWarning, ResetDone
from riskman.storage.db import Database, to_db_time

log = logging.getLogger("riskman.warnings")

WATCHED = ("daily_realized_loss", "max_loss_limit", "daily_realized_profit", "trailing_daily_loss")
"""The money limits that warn, by rule key."""
CHECK_DELAY = 0.2
"""Seconds between an account change and its check (changes meanwhile are coalesced)."""

CONSISTENCY = "consistency"


def _money(value: Decimal) -> str:
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


_WHAT = {
    "daily_realized_loss": "of the daily loss limit used",
    "max_loss_limit": "of the way to the maximum loss floor",
    "daily_realized_profit": "of the daily profit target reached",
    "trailing_daily_loss": "of the trailing daily loss used",
}


class LimitWarnings:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        rules: Sequence[Rule],
        clock: Clock,
        db: Database,
        trading_day: Callable[[], date],
        accounts: Callable[[], Sequence[int]],
        publish: Callable[[EngineChange], None],
        realized: Callable[[int], Decimal] = lambda account_id: Decimal(0),
    ) -> None:
        self._settings = settings
        self._rules = {rule.key: rule for rule in rules if rule.key in WATCHED}
        self._clock = clock
        self._db = db
        self._trading_day = trading_day
        self._accounts = accounts
        self._publish = publish
        self._realized = realized
        self._fired: set[tuple[date, int, str, int]] = set()
        self._before: dict[int, tuple[Decimal, Decimal]] = {}
        """Per account, over the trading days before today: (total realized P&L, best day)."""
        self._reload: asyncio.Task[None] | None = None
        self._dirty: set[int] = set()
        self._scheduled: TimerHandle | None = None
        self.enabled = False
        """Set once the engine has started (restored what fired today)."""

    async def restore(self) -> None:
        day = self._trading_day()
        rows = await self._db.fetchall(
            "SELECT account_id, rule, threshold FROM limit_warnings WHERE trading_day = ?",
            (day.isoformat(),),
        )
        for row in rows:
            self._fired.add((day, row["account_id"], row["rule"], row["threshold"]))
        await self._load_days(day)
        self.enabled = True

    async def _load_days(self, today: date) -> None:
        before: dict[int, tuple[Decimal, Decimal]] = {}
        for row in await self._db.fetchall(
            "SELECT account_id, realized FROM daily_pnl WHERE trading_day < ?",
            (today.isoformat(),),
        ):
            total, best = before.get(row["account_id"], (Decimal(0), Decimal(0)))
            pnl = Decimal(row["realized"])
            before[row["account_id"]] = (total + pnl, max(best, pnl))
        self._before = before

    def consistency(self, account_id: int) -> tuple[Decimal, Decimal, Decimal] | None:
        """(the best day's share of the total profit so far, today's share, the total) with
        today counted; None while the total is not a profit."""
        total_before, best_before = self._before.get(account_id, (Decimal(0), Decimal(0)))
        today = self._realized(account_id)
        total = total_before + today
        if total <= 0:
            return None
        return max(best_before, today) / total, max(Decimal(0), today) / total, total

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._reload is not None:
            # A reload still reading when the engine stops would outlive the database.
            self._reload.cancel()
            self._reload = None
        self.enabled = False

    def on_change(self, change: EngineChange) -> None:
        """The engine's listener: remember which account to look at; check a moment later."""
        if not self.enabled:
            return
        if isinstance(change, AccountChanged):
            if change.account_id is None:
                self._dirty.update(self._accounts())
            else:
                self._dirty.add(change.account_id)
        elif isinstance(change, ResetDone):
            day = self._trading_day()
            self._fired = {key for key in self._fired if key[0] >= day}
            self._reload = asyncio.get_running_loop().create_task(self._load_days(day))
            return
        else:
            return
        if self._scheduled is None:
            self._scheduled = self._clock.call_at(
                self._clock.now() + timedelta(seconds=CHECK_DELAY), self.check_now
            )

    def check_now(self) -> list[LimitWarning]:
        """Check the marked accounts (tests call it directly)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        dirty, self._dirty = self._dirty, set()
        fired: list[LimitWarning] = []
        for account_id in sorted(dirty):
            try:
                fired.extend(self._check(account_id))
            except Exception:
                log.exception("warning check failed for account %s", account_id)
        return fired

    def _check(self, account_id: int) -> list[LimitWarning]:
        thresholds = self._settings().warnings.at
        day = self._trading_day()
        fired = []
        for key, rule in self._rules.items():
            if not rule.enabled(account_id) or rule.locked_by_me(account_id):
                continue
            status = rule.status(account_id)
            # A stale price is left out of the rule's value: what is known still warns.
            if status.used is None:
                continue
            percent = status.used * 100
            crossed = [t for t in thresholds if percent >= t]
            new = [t for t in crossed if (day, account_id, rule.id, t) not in self._fired]
            if not new:
                continue
            top = max(new)
            for threshold in new:
                self._fired.add((day, account_id, rule.id, threshold))
                self._db.defer(
                    "INSERT OR IGNORE INTO limit_warnings (trading_day, account_id, rule, "
                    "threshold, ts, value) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        day.isoformat(),
                        account_id,
                        rule.id,
                        threshold,
                        to_db_time(self._clock.now()),
                        status.value,
                    ),
                )
            text = (
                f"{rule.id} {rule.title}: {top}% {_WHAT[key]} "
                f"({status.value}, limit {status.limit})"
            )
            warning = LimitWarning(account_id, rule.id, top, status.used, text, self._clock.now())
            log.warning("account=%s %s", account_id, text)
            self._publish(warning)
            fired.append(warning)
        fired.extend(self._check_consistency(account_id, day))
        return fired

    def _check_consistency(self, account_id: int, day: date) -> list[LimitWarning]:
        """Topstep's consistency target: warn once a day when today's profit would be more
        than `consistency.max_day_share` of the total profit so far."""
        share = self._settings().consistency.max_day_share
        key = (day, account_id, CONSISTENCY, 100)
        if share is None or key in self._fired:
            return []
        numbers = self.consistency(account_id)
        if numbers is None:
            return []
        _best, today_share, total = numbers
        if today_share <= share:
            return []
        self._fired.add(key)
        self._db.defer(
            "INSERT OR IGNORE INTO limit_warnings (trading_day, account_id, rule, "
            "threshold, ts, value) VALUES (?, ?, ?, ?, ?, ?)",
            (day.isoformat(), account_id, CONSISTENCY, 100, to_db_time(self._clock.now()), ""),
        )
        text = (
            f"Consistency: today is {today_share:.0%} of your total profit {_money(total)} "
            f"(at most {share:.0%} counts for one day)"
        )
        warning = LimitWarning(
            account_id, CONSISTENCY, 100, float(today_share / share), text, self._clock.now()
        )
        log.warning("account=%s %s", account_id, text)
        self._publish(warning)
        return [warning]
