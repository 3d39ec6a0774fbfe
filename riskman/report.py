"""The day's report: its summary per account (P&L, trades, breaches, locks, actions per rule)
and every breach report (`riskman report`, the control API's `/v1/report`, the History tab).

Reads the database only. Works on the engine's `Database` (aiosqlite) or, from the command
line, on a read-only sqlite3 connection (the guard may be running: nothing is written).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from riskman.calendar import ResetSchedule
from riskman.core.localtime import local_times
from riskman.core.views import BreachReport
from riskman.storage.db import to_db_time


class Reader(Protocol):
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...


class SqliteReader:
    """A read-only connection to the database file, for the command line."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.conn.row_factory = sqlite3.Row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(self.conn.execute(sql, params).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a database from before the reports existed
                return []
            raise

    def close(self) -> None:
        self.conn.close()


@dataclass
class AccountDay:
    account_id: int
    realized: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    trades: int = 0
    breaches: int = 0
    locks: int = 0
    actions: dict[str, dict[str, int]] = field(default_factory=dict)
    """rule -> action -> how many."""

    @property
    def action_count(self) -> int:
        return sum(sum(by_action.values()) for by_action in self.actions.values())


@dataclass
class DayReport:
    day: date
    start: datetime
    end: datetime
    accounts: list[AccountDay]
    breaches: list[BreachReport]

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "accounts": [
                {**asdict(a), "realized": str(a.realized), "fees": str(a.fees)}
                for a in self.accounts
            ],
            "breaches": [json.loads(b.to_json()) for b in self.breaches],
        }


async def day_report(db: Reader, schedule: ResetSchedule, day: date) -> DayReport:
    start, end = schedule.day_start(day), schedule.reset_at(day)
    lo, hi = to_db_time(start), to_db_time(end)
    accounts: dict[int, AccountDay] = {}

    def acc(account_id: int) -> AccountDay:
        return accounts.setdefault(account_id, AccountDay(account_id))

    for row in await db.fetchall(
        "SELECT account_id, realized, fees FROM daily_pnl WHERE trading_day = ?",
        (day.isoformat(),),
    ):
        acc(row["account_id"]).realized = Decimal(row["realized"])
        acc(row["account_id"]).fees = Decimal(row["fees"])
    for row in await db.fetchall(
        "SELECT account_id, COUNT(*) AS n FROM trades WHERE trading_day = ? AND voided = 0 "
        "AND by_riskman = 0 GROUP BY account_id",
        (day.isoformat(),),
    ):
        acc(row["account_id"]).trades = row["n"]
    for row in await db.fetchall(
        "SELECT account_id, COUNT(*) AS n FROM lockouts WHERE created >= ? AND created < ? "
        "GROUP BY account_id",
        (lo, hi),
    ):
        acc(row["account_id"]).locks = row["n"]
    for row in await db.fetchall(
        "SELECT account_id, rule, action, COUNT(*) AS n FROM enforcement_log "
        "WHERE ts >= ? AND ts < ? GROUP BY account_id, rule, action",
        (lo, hi),
    ):
        acc(row["account_id"]).actions.setdefault(row["rule"], {})[row["action"]] = row["n"]
    breaches = []
    for row in await db.fetchall(
        "SELECT payload FROM breach_reports WHERE trading_day = ? ORDER BY id", (day.isoformat(),)
    ):
        try:
            report = BreachReport.from_json(row["payload"])
        except (ValueError, TypeError, KeyError):
            continue
        breaches.append(report)
        acc(report.account_id).breaches += 1
    return DayReport(day, start, end, [accounts[k] for k in sorted(accounts)], breaches)


# --- text -------------------------------------------------------------------------------------


def _money(value: Decimal | str | None) -> str:
    if value is None:
        return "-"
    amount = Decimal(value)
    return f"{'-' if amount < 0 else ''}${abs(amount):,.2f}"


def breach_lines(report: BreachReport, zone: ZoneInfo) -> list[str]:
    """A breach report as lines of text (the screen's modal and `riskman report`)."""

    def local(ts: datetime) -> str:
        return ts.astimezone(zone).strftime("%H:%M:%S.%f")[:-3]

    def text(value: str) -> str:  # times written into stored text, in the configured zone
        return local_times(value, zone)

    zone_name = report.ts.astimezone(zone).tzname() or ""
    lines = [
        f"#{report.id}  {local(report.ts)} {zone_name}  account {report.account_id}  "
        f"{report.rule} {report.title}",
        f"  why:       {text(report.reason)}",
    ]
    if report.trigger:
        lines.append(f"  triggered: {text(report.trigger)}")
    if report.value or report.threshold:
        lines.append(
            f"  saw:       {report.value}  (threshold {report.threshold})"
            + (f"  {text(report.detail)}" if report.detail else "")
        )
    for price in report.prices:
        age = "no quote" if price.age is None else f"{price.age:.1f} s old"
        lines.append(
            f"  price:     {price.symbol} {price.side} {price.size} @ {price.average}, "
            f"last {price.last or '-'} ({age}, from {price.source}), open {_money(price.open_pnl)}"
        )
    for call in report.calls:
        latency = "" if call.latency_ms is None else f" in {call.latency_ms:.1f} ms"
        detail = f" ({text(call.detail)})" if call.detail else ""
        lines.append(
            f"  call:      {local(call.ts)} {call.action} {call.target}: {call.result}"
            f"{latency}{detail}"
        )
    if report.after is not None:
        after = report.after
        lines.append(
            f"  after:     {after.status}; positions: {', '.join(after.positions) or 'flat'}; "
            f"realized {_money(after.realized)}, open {_money(after.open_pnl)}"
        )
        lines += [f"             {text(lock)}" for lock in after.locks]
    return lines


def report_text(report: DayReport, zone: ZoneInfo) -> str:
    out = [
        f"riskman report for the trading day {report.day} "
        f"({report.start.astimezone(zone):%a %d %b %H:%M} - "
        f"{report.end.astimezone(zone):%a %d %b %H:%M %Z})",
        "",
    ]
    if not report.accounts:
        out.append("No trading, breach or action recorded that day.")
    for a in report.accounts:
        out.append(
            f"Account {a.account_id}: P&L {_money(a.realized)} (fees {_money(a.fees)}), "
            f"{a.trades} trades, {a.breaches} breaches, {a.locks} locks, "
            f"{a.action_count} actions"
        )
        for rule in sorted(a.actions):
            counts = ", ".join(f"{action} x{n}" for action, n in sorted(a.actions[rule].items()))
            out.append(f"  {rule}: {counts}")
    if report.breaches:
        out += ["", "Breaches:"]
        for breach in report.breaches:
            out += [*breach_lines(breach, zone), ""]
    return "\n".join(out).rstrip() + "\n"


def report_csv(report: DayReport) -> str:
    """Two CSV tables: the summary per account and rule, then one row per gateway call."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["day", "account", "pnl", "fees", "trades", "breaches", "locks", "rule", "action", "count"]
    )
    for a in report.accounts:
        base = [report.day, a.account_id, a.realized, a.fees, a.trades, a.breaches, a.locks]
        rows: list[tuple[str, str, int | str]] = [
            (rule, action, n) for rule, by in a.actions.items() for action, n in by.items()
        ]
        for rule, action, n in sorted(rows, key=str) or [("", "", "")]:
            writer.writerow([*base, rule, action, n])
    writer.writerow([])
    writer.writerow(
        [
            "breach",
            "time",
            "account",
            "rule",
            "reason",
            "trigger",
            "value",
            "threshold",
            "call_time",
            "action",
            "target",
            "result",
            "latency_ms",
            "detail",
            "after",
        ]
    )
    for b in report.breaches:
        after = "" if b.after is None else b.after.status
        head = [b.id, b.ts.isoformat(), b.account_id, b.rule, b.reason, b.trigger]
        head += [b.value, b.threshold]
        if not b.calls:
            writer.writerow([*head, "", "", "", "", "", "", after])
        for call in b.calls:
            writer.writerow(
                [
                    *head,
                    call.ts.isoformat(),
                    call.action,
                    call.target,
                    call.result,
                    "" if call.latency_ms is None else f"{call.latency_ms:.1f}",
                    call.detail,
                    after,
                ]
            )
    return buffer.getvalue()


# --- the daily history ------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryDay:
    day: date
    account_id: int
    realized: Decimal
    trades: int
    breaches: int
    locks: int
    actions: int


async def store_day(
    db: Any, report: DayReport, balances: dict[int, Decimal], now: datetime
) -> None:
    """Keep a finished trading day's summary in `daily_history` (one row per account)."""
    for a in report.accounts:
        balance = balances.get(a.account_id)
        await db.execute(
            "INSERT OR REPLACE INTO daily_history (account_id, trading_day, realized, fees, "
            "trades, breaches, locks, actions, balance, stored) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.account_id,
                report.day.isoformat(),
                str(a.realized),
                str(a.fees),
                a.trades,
                a.breaches,
                a.locks,
                a.action_count,
                None if balance is None else str(balance),
                to_db_time(now),
            ),
        )


async def history(db: Reader, days: int = 30) -> list[HistoryDay]:
    """The stored summaries of the last `days` trading days, newest first."""
    rows = await db.fetchall(
        "SELECT account_id, trading_day, realized, trades, breaches, locks, actions "
        "FROM daily_history WHERE trading_day IN (SELECT DISTINCT trading_day FROM daily_history "
        "ORDER BY trading_day DESC LIMIT ?) ORDER BY trading_day DESC, account_id",
        (days,),
    )
    return [
        HistoryDay(
            date.fromisoformat(row["trading_day"]),
            row["account_id"],
            Decimal(row["realized"]),
            row["trades"],
            row["breaches"],
            row["locks"],
            row["actions"],
        )
        for row in rows
    ]


def summary_message(a: AccountDay, day: date, name: str) -> str:
    """The daily summary notification of one account."""
    who = name if name == str(a.account_id) else f"{name} ({a.account_id})"
    rules = ", ".join(sorted(a.actions)) or "none"
    return (
        f"{who} day {day}: P&L {_money(a.realized)} (fees {_money(a.fees)}), {a.trades} trades, "
        f"{a.breaches} breaches, {a.locks} locks; rules that acted: {rules}."
    )
