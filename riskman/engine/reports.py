"""Breach reports: why riskman acted, with the evidence.

A report starts when a plan acts for a rule on an account (a `Breach`, published once the
actions are dispatched). It holds the event that triggered it, the rule's threshold and the
value it saw, the price of each position (with its age and source, hub or REST), then every
gateway call made for it (the enforcement records of that rule and account, with timing and
answer), and finally the account's state once the calls are done. Reports are kept in memory
for the screens and stored in `breach_reports` (a deferred write, off the enforcement path).

The evidence is read a moment after the breach (`call_soon`: the actions' tasks start first),
before any answer of the gateway can have changed the state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

from riskman.core.clock import Clock, TimerHandle
from riskman.core.rules import Rule
from riskman.core.views import (
    BREACH_WINDOW,
    Breach,
    BreachReport,
    CallMade,
    EnforcementRecord,
    EngineChange,
    PriceSeen,
    StateAfter,
)
from riskman.engine.lockouts import LockoutManager
from riskman.engine.pnl import PnlTracker
from riskman.engine.quotes import QuoteTracker
from riskman.engine.state import StateManager
from riskman.storage.db import Database, to_db_time
from riskman.symbols import display_symbol

log = logging.getLogger(__name__)

SETTLE = timedelta(seconds=3)
"""The state afterwards is read this long after the last call's answer."""
KEEP = 200


class BreachReports:
    def __init__(
        self,
        *,
        rules: Sequence[Rule],
        state: StateManager,
        quotes: QuoteTracker,
        pnl: PnlTracker,
        lockouts: LockoutManager,
        clock: Clock,
        db: Database,
        trading_day: Callable[[], date],
    ) -> None:
        self._rules = {rule.id: rule for rule in rules}
        self._state = state
        self._quotes = quotes
        self._pnl = pnl
        self._lockouts = lockouts
        self._clock = clock
        self._db = db
        self._trading_day = trading_day
        self._open: dict[tuple[int, str], tuple[BreachReport, TimerHandle | None]] = {}
        self.done: deque[BreachReport] = deque(maxlen=KEEP)
        self._next_id = 1

    async def restore(self) -> None:
        row = await self._db.fetchone("SELECT MAX(id) FROM breach_reports")
        self._next_id = (row[0] or 0) + 1 if row is not None else 1

    def on_change(self, change: EngineChange) -> None:
        """The engine's listener: O(1) here; the evidence is read a moment later."""
        if isinstance(change, Breach):
            key = (change.account_id, change.rule)
            current = self._open.get(key)
            now = change.at or self._clock.now()
            if current is not None and now - current[0].ts <= BREACH_WINDOW:
                return  # the same breach, still being handled
            if current is not None:
                self._finish(key)
            report = self._new(change.account_id, change.rule, change.reason, change.trigger, now)
            self._open[key] = (report, None)
            try:
                asyncio.get_running_loop().call_soon(self._capture, report)
            except RuntimeError:
                self._capture(report)
        elif isinstance(change, EnforcementRecord):
            self._on_record(change)

    def _new(
        self, account_id: int, rule: str, reason: str, trigger: str, at: datetime
    ) -> BreachReport:
        report = BreachReport(
            id=self._next_id,
            ts=at,
            trading_day=self._trading_day(),
            account_id=account_id,
            rule=rule,
            title=getattr(self._rule(rule), "title", "the lockout gate"),
            reason=reason,
            trigger=trigger,
        )
        self._next_id += 1
        return report

    def _rule(self, name: str) -> Rule | None:
        """The rule behind an action: `RULE-017/trades` is a lock RULE-017 holds by a second
        name (one rule, two locks)."""
        return self._rules.get(name) or self._rules.get(name.split("/", 1)[0])

    def _capture(self, report: BreachReport) -> None:
        try:
            rule = self._rule(report.rule)
            if rule is not None and rule.enabled(report.account_id):
                status = rule.status(report.account_id)
                report.value, report.threshold, report.detail = (
                    status.value,
                    status.limit,
                    status.detail,
                )
            for pos in self._state.get_all_positions(report.account_id):
                quote = self._quotes.get(pos.contract_id)
                pnl = self._pnl.position_pnl(pos, allow_stale=True)
                report.prices.append(
                    PriceSeen(
                        contract_id=pos.contract_id,
                        symbol=display_symbol(pos.root),
                        side="LONG" if pos.sign > 0 else "SHORT",
                        size=pos.size,
                        average=str(pos.position.average_price),
                        last=None if quote is None or quote.last is None else str(quote.last),
                        age=self._quotes.get_quote_age(pos.contract_id),
                        source="none" if quote is None else quote.source,
                        open_pnl=None if pnl is None else str(pnl),
                    )
                )
        except Exception:
            log.exception("could not read the evidence of a breach of %s", report.rule)

    def _on_record(self, record: EnforcementRecord) -> None:
        key = (record.account_id, record.rule)
        current = self._open.get(key)
        if current is None or not current[0].covers(record):
            if current is not None:
                self._finish(key)
            # An action without a plan we saw (the gate, a retry after a restart): its own report.
            report = self._new(record.account_id, record.rule, record.reason, "", record.ts)
            self._capture(report)
            current = (report, None)
        report, timer = current
        report.calls.append(
            CallMade(
                record.ts,
                record.action,
                record.target,
                record.result,
                record.detail,
                record.latency_ms,
            )
        )
        if timer is not None:
            timer.cancel()
        handle = self._clock.call_at(self._clock.now() + SETTLE, lambda: self._finish(key))
        self._open[key] = (report, handle)

    def _finish(self, key: tuple[int, str]) -> None:
        entry = self._open.pop(key, None)
        if entry is None:
            return
        report, timer = entry
        if timer is not None:
            timer.cancel()
        try:
            report.after = self._state_after(report.account_id)
        except Exception:
            log.exception("could not read the state after a breach of %s", report.rule)
        self.done.append(report)
        self._db.defer(
            "INSERT OR REPLACE INTO breach_reports "
            "(id, ts, trading_day, account_id, rule, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (
                report.id,
                to_db_time(report.ts),
                report.trading_day.isoformat(),
                report.account_id,
                report.rule,
                report.to_json(),
            ),
        )

    def _state_after(self, account_id: int) -> StateAfter:
        locks = self._lockouts.get_lockout_info(account_id)
        status = "OK"
        if any(lock.kind.value == "lockout" and lock.symbol is None for lock in locks):
            status = "LOCKED"
        elif any(lock.symbol is None for lock in locks):
            status = "COOLDOWN"
        positions = [
            f"{display_symbol(p.root)} {'LONG' if p.sign > 0 else 'SHORT'} {p.size}"
            for p in self._state.get_all_positions(account_id)
        ]
        return StateAfter(
            ts=self._clock.now(),
            status=status,
            locks=[
                f"{lock.rule} {lock.kind.value}{' ' + lock.symbol if lock.symbol else ''}: "
                f"{lock.reason} ({lock.unlock.describe(lock.until)})"
                for lock in locks
            ],
            positions=positions,
            realized=str(self._pnl.get_daily_realized_pnl(account_id)),
            open_pnl=str(self._pnl.calculate_unrealized_pnl(account_id).total),
        )

    def open_reports(self) -> list[BreachReport]:
        """Reports whose calls are still coming (not stored yet)."""
        return [entry[0] for entry in self._open.values()]

    def finish_all(self) -> None:
        """Close every open report now (at shutdown)."""
        for key in list(self._open):
            self._finish(key)

    def report_for(self, record: EnforcementRecord) -> BreachReport | None:
        """The report an enforcement log entry belongs to (in memory)."""
        candidates = [entry[0] for entry in self._open.values()] + list(self.done)
        for report in reversed(candidates):
            if report.covers(record):
                return report
        return None

    async def load(self, record: EnforcementRecord) -> BreachReport | None:
        """The report of a log entry, from memory or from the database (older entries)."""
        report = self.report_for(record)
        if report is not None:
            return report
        rows = await self._db.fetchall(
            "SELECT payload FROM breach_reports WHERE account_id = ? AND rule = ? "
            "AND ts BETWEEN ? AND ? ORDER BY id DESC",
            (
                record.account_id,
                record.rule,
                to_db_time(record.ts - BREACH_WINDOW),
                to_db_time(record.ts + timedelta(seconds=1)),
            ),
        )
        for row in rows:
            try:
                report = BreachReport.from_json(row["payload"])
            except (ValueError, TypeError, KeyError):
                continue
            if report.covers(record):
                return report
        return None
