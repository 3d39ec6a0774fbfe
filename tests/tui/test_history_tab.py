"""The History tab: each finished trading day stored at the reset, with its P&L as a bar."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from textual.widgets import Static

from riskman.report import AccountDay, DayReport, store_day
from riskman.tui.app import RiskmanApp
from riskman.tui.history import HistoryView
from tests.fakes import T0
from tests.tui.conftest import ACC_A, SIZE, engine_of, running, until


async def test_history_tab_shows_the_stored_days_with_a_bar_each(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        assert engine is not None
        for n, (pnl, trades) in enumerate((("-400", 7), ("200", 3), ("0", 0))):
            day = date(2026, 11, 17) - timedelta(days=n)
            account = AccountDay(ACC_A, realized=Decimal(pnl), trades=trades, breaches=n, locks=1)
            report = DayReport(day, T0, T0, [account], [])
            await store_day(engine.db, report, {}, T0)
        await pilot.press("h")
        view = app.screen.query_one(HistoryView)
        await until(pilot, lambda: getattr(view, "rows", None) is not None)
        assert [row.day.isoformat() for row in view.rows] == [
            "2026-11-17",
            "2026-11-16",
            "2026-11-15",
        ]
        lines = str(view.query_one("#history-chart", Static).render()).splitlines()
        assert lines[0] == ""  # no profit over these days: no consistency line
        lines = lines[1:]
        assert lines[1].startswith("2026-11-17") and "-$400.00" in lines[1]
        assert lines[1].endswith("█" * 24 + "│")  # the biggest loss: a full bar to the left
        assert lines[2].endswith("│" + "█" * 12)  # half as big, a profit: to the right
        assert lines[3].endswith(" " * 24 + "│")  # a flat day: no bar


def test_the_best_days_share_of_the_profit_is_a_bar() -> None:
    from riskman.control.interface import HistoryRow
    from riskman.tui.history import history_text

    rows = [
        HistoryRow(
            day=date(2026, 11, d),
            account_id=ACC_A,
            realized=Decimal(p),
            trades=1,
            breaches=0,
            locks=0,
            actions=0,
        )
        for d, p in ((17, "600"), (16, "300"), (13, "100"))
    ]
    first = str(history_text(rows, Decimal("0.5"))).splitlines()[0]
    assert first.startswith(
        f"Account {ACC_A}: best day $600.00 is 60% of the total profit $1,000.00 "
        "(consistency target: at most 50%)"
    )
    assert first.endswith("█" * 14 + "░" * 10)
