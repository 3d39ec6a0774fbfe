"""The History tab: the last 30 trading days (P&L, trades, breaches, locks), one line each
with its P&L as a bar (losses to the left of the axis, profits to the right)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from riskman.control.interface import ControlError, HistoryRow

HALF = 24
"""Characters of a bar on each side of the axis."""


def _money(value: Decimal) -> str:
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def consistency_lines(rows: Sequence[HistoryRow], max_share: Decimal | None, text: Text) -> None:
    """Per account: the best day's share of the total profit of these days, as a bar."""
    for account_id in sorted({row.account_id for row in rows}):
        days = [row.realized for row in rows if row.account_id == account_id]
        total = sum(days, Decimal(0))
        if total <= 0:
            continue
        best = max(days)
        share = best / total
        filled = min(HALF, int(share * HALF))
        over = max_share is not None and share > max_share
        text.append(
            f"Account {account_id}: best day {_money(best)} is {share:.0%} of the total profit "
            f"{_money(total)}"
            + ("" if max_share is None else f" (consistency target: at most {max_share:.0%})")
            + "  "
        )
        text.append("█" * filled, style="red" if over else "green")
        text.append("░" * (HALF - filled) + "\n")
    text.append("\n")


def history_text(rows: Sequence[HistoryRow], max_share: Decimal | None = None) -> Text:
    if not rows:
        return Text(
            "No finished trading day yet: each day's summary is kept here at the daily reset."
        )
    top = max(abs(row.realized) for row in rows) or Decimal(1)
    text = Text()
    consistency_lines(rows, max_share, text)
    text.append(
        f"{'Day':<12}{'Account':>10}{'P&L':>13}{'Trades':>8}{'Breaches':>10}{'Locks':>7}  "
        f"{'loss':>{HALF}}│profit\n",
        style="bold",
    )
    for row in rows:
        size = int(abs(row.realized) / top * HALF) if row.realized else 0
        if row.realized and not size:
            size = 1
        loss = "█" * size if row.realized < 0 else ""
        profit = "█" * size if row.realized > 0 else ""
        text.append(
            f"{row.day.isoformat():<12}{row.account_id:>10}{_money(row.realized):>13}"
            f"{row.trades:>8}{row.breaches:>10}{row.locks:>7}  "
        )
        text.append(f"{loss:>{HALF}}", style="red")
        text.append("│")
        text.append(f"{profit}\n", style="green")
    return text


class HistoryView(VerticalScroll, can_focus=True):
    """Loads the history through the control interface whenever it is shown."""

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("Loading the history…", id="history-chart")

    async def load(self, control: object, max_share: Decimal | None = None) -> None:
        chart = self.query_one("#history-chart", Static)
        try:
            rows = await control.history(30)  # type: ignore[attr-defined]
        except ControlError as exc:
            chart.update(str(exc))
            return
        self.rows = rows
        chart.update(history_text(rows, max_share))
