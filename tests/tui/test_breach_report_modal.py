"""Enter on an enforcement-log entry opens its breach report."""

from __future__ import annotations

from textual.widgets import Static

from riskman.tui.app import RiskmanApp
from riskman.tui.breach_report import BreachReportModal
from tests.tui.conftest import ACC_B, SIZE, running, until
from widgets.live_table import LiveTable


async def test_enter_on_a_log_entry_shows_its_breach_report(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("l")
        table = app.screen.query_one("#log-table", LiveTable)
        await until(pilot, lambda: table.row_count > 0)
        screen = app.screen
        row = next(
            i
            for i, key in enumerate(table.keys)
            if screen._log_records[key].rule == "RULE-003"  # type: ignore[attr-defined]
            and screen._log_records[key].action == "flatten"  # type: ignore[attr-defined]
        )
        table.focus()
        table.move_cursor(row=row)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, BreachReportModal))
        modal = app.screen
        assert isinstance(modal, BreachReportModal)
        await until(pilot, lambda: modal.report is not None)
        body = str(modal.query_one("#report-body", Static).render())
        assert f"account {ACC_B}" in body and "RULE-003 Daily loss limit" in body
        assert "saw:" in body and "threshold -$300.00" in body
        assert "call:" in body and "flatten" in body
        # The lock's end in the configured zone, like the rest of the screens (not raw UTC ISO).
        assert "until the daily reset at 17:00:00 CST" in body and "+00:00" not in body
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, BreachReportModal))
