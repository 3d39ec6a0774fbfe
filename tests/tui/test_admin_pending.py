"""Issue 13 on the admin screens: the Rules tab lists the looser changes waiting for the reset
and cancels one; the Lockouts tab lists the unlock requests with their countdown and withdraws
one. Both through the interface, asserted on the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Button

from riskman.config import Settings
from riskman.control.interface import RulesPut
from riskman.tui.admin import AdminScreen
from riskman.tui.app import RiskmanApp
from tests.tui.conftest import ACC_B, SIZE, engine_of, open_admin, running, text_of, until
from tests.tui.test_attach import Served, attached_app
from widgets.tables import KeyedTable


async def click_when_shown(pilot: Any, selector: str) -> None:
    """Click a button once it is laid out on screen (a box shown a moment ago may not be)."""
    button = pilot.app.screen.query_one(selector, Button)
    button.scroll_visible(animate=False)
    await until(pilot, lambda: button.region.width > 0 and button.region in pilot.app.screen.region)
    await pilot.pause()
    assert await pilot.click(selector)


async def test_an_admin_cancels_a_pending_loosening(app: RiskmanApp, config_path: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        await open_admin(pilot)
        await until(pilot, lambda: isinstance(app.screen, AdminScreen) and app.screen.ready)
        screen = app.screen
        assert isinstance(screen, AdminScreen)
        assert not screen.query_one("#pending-box").display  # nothing pending: not shown
        looser = RulesPut(rules={"daily_realized_loss": {"limit": 900}})
        result = await app.control.put_rules(screen.session, looser)
        assert result.pending, "a higher loss limit waits for the reset"
        table = screen.query_one("#pending-table", KeyedTable)
        await until(pilot, lambda: table.row_count == 1)
        cells = [str(cell) for cell in table.get_row_at(0)]
        assert cells[1:4] == ["rules.daily_realized_loss.limit", "300", "900"]
        assert cells[4].startswith("17:00 CST (in 7:5"), cells[4]
        assert screen.query_one("#pending-box").display

        await click_when_shown(pilot, "#cancel-pending")
        await until(pilot, lambda: engine.pending == ())
        assert engine.settings.rules.daily_realized_loss.limit == 300
        assert engine.desired.rules.daily_realized_loss.limit == 300
        assert "limit: 900" not in text_of(config_path)
        await until(pilot, lambda: table.row_count == 0)
        rows = await engine.db.fetchall(
            "SELECT target FROM admin_audit WHERE action = 'cancel_pending'"
        )
        assert rows


async def test_an_admin_withdraws_an_unlock_request(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        assert engine.lockouts.is_locked_out(ACC_B)
        asked = await engine.request_unlock(ACC_B, "coach approved: data error")
        await open_admin(pilot)
        await until(pilot, lambda: isinstance(app.screen, AdminScreen) and app.screen.ready)
        screen = app.screen
        assert isinstance(screen, AdminScreen)
        screen.action_tab("admin-locks")
        table = screen.query_one("#unlock-requests", KeyedTable)
        await until(pilot, lambda: table.row_count == 1)
        due = str(table.get_row_at(0)[3])
        assert "(in 30:00)" in due or "(in 29:5" in due, due
        assert "coach approved" in str(table.get_row_at(0)[2])

        await click_when_shown(pilot, "#withdraw-unlock")
        await until(pilot, lambda: engine.unlocks.open() == [])
        await until(pilot, lambda: table.row_count == 0)
        # The request is gone: the lock stays past the delay.
        await app.clock.advance(engine.settings.admin.unlock_delay + 60)  # type: ignore[attr-defined]
        assert engine.lockouts.is_locked_out(ACC_B)
        rows = await engine.db.fetchall(
            "SELECT target FROM admin_audit WHERE action = 'unlock_withdrawn'"
        )
        assert rows and f"request {asked.id}" in rows[0][0]


async def test_attached_the_admin_cancels_and_withdraws_through_the_socket(
    settings: Settings, config_path: Path
) -> None:
    served = Served(settings)
    await served.start()
    try:
        engine = served.engine
        assert engine is not None
        app = attached_app(settings, config_path)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.accounts) == 2)
            await open_admin(pilot)
            await until(pilot, lambda: isinstance(app.screen, AdminScreen) and app.screen.ready)
            screen = app.screen
            assert isinstance(screen, AdminScreen)
            looser = RulesPut(rules={"daily_realized_loss": {"limit": 900}})
            await app.control.put_rules(screen.session, looser)
            pending = screen.query_one("#pending-table", KeyedTable)
            await until(pilot, lambda: pending.row_count == 1)
            await click_when_shown(pilot, "#cancel-pending")
            await until(pilot, lambda: engine.pending == ())
            assert engine.desired.rules.daily_realized_loss.limit == 300

            await engine.request_unlock(ACC_B, "coach approved: data error")
            screen.action_tab("admin-locks")
            unlocks = screen.query_one("#unlock-requests", KeyedTable)
            await until(pilot, lambda: unlocks.row_count == 1)
            await click_when_shown(pilot, "#withdraw-unlock")
            await until(pilot, lambda: engine.unlocks.open() == [])
            assert engine.lockouts.is_locked_out(ACC_B)
    finally:
        await served.stop()
