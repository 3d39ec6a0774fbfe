"""The trader screens on a seeded engine: what the trader sees, and every trader binding."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from textual.command import CommandList, CommandPalette
from textual.widgets import TabbedContent

from riskman.config import Settings
from riskman.core.ports import QuoteEvent
from riskman.core.views import FeedHealth, FeedState
from riskman.runtime import StartError
from riskman.tui.app import EXIT_START, RiskmanApp
from riskman.tui.modals import ConfirmQuit
from tests.fakes import MNQ, quote
from tests.tui.conftest import (
    ACC_A,
    ACC_B,
    SIZE,
    FactorySource,
    engine_of,
    footer_keys,
    make_app,
    running,
    source_of,
    until,
)
from widgets.account_card import AccountCard
from widgets.health import Banner
from widgets.live_table import LiveTable


def card(app: RiskmanApp, account_id: int) -> AccountCard:
    return app.screen.query_one(f"#account-{account_id}", AccountCard)


def label(app: RiskmanApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_dashboard_shows_each_account_status_balance_and_pnl_against_the_limit(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        a, b = card(app, ACC_A), card(app, ACC_B)
        assert a.has_class("-cooldown") and b.has_class("-locked")
        assert a.part("status").strip() == "COOLDOWN"
        assert "RULE-006  4 trades within a minute" in a.part("locks")
        assert "$49,787.50" in a.part("balance")
        assert a.part("realized-amount") == "-$212.50"
        assert a.part("open-amount") == "-$40.00"
        assert a.part("total-amount") == "-$252.50"
        used = a.used("total")
        assert used is not None and round(used, 3) == 0.842
        assert a.level("total") == "warn"
        assert b.level("total") == "danger"
        assert a.level("open") == "ok"
        assert "minute 1/3" in a.part("trades")
        assert "LOCKED" in b.part("status")
        assert "until the daily reset" in b.part("locks")
        # What the card draws, line by line.
        assert "Total         -$252.50  ████" in a.text
        assert "Balance $49,787.50" in a.text.splitlines()[0]


async def test_trader_keys_switch_between_dashboard_positions_rules_and_log(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        tabs = app.screen.query_one(TabbedContent)
        for key, tab in (("p", "positions"), ("r", "rules"), ("l", "log"), ("d", "dashboard")):
            await pilot.press(key)
            assert tabs.active == tab


async def test_trader_keys_switch_tabs_when_the_tables_are_empty(
    settings: Settings, config_path: Path
) -> None:
    app = make_app(settings, config_path, seed=None)
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        tabs = app.screen.query_one(TabbedContent)
        for key, tab in (("p", "positions"), ("d", "dashboard"), ("l", "log"), ("d", "dashboard")):
            await pilot.press(key)
            assert tabs.active == tab


async def test_tabs_switch_with_the_mouse_too(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.click("Tab#--content-tab-log")
        assert app.screen.query_one(TabbedContent).active == "log"


async def test_positions_and_orders_tables_show_symbol_side_pnl_and_stop(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("p")  # a tab is brought up to date when it comes into view
        positions = app.screen.query_one("#positions-table", LiveTable)
        assert positions.keys == [f"{ACC_A}|{MNQ}"]
        cells = [str(cell) for cell in positions.cells(f"{ACC_A}|{MNQ}")]
        assert cells[1:4] == ["MNQ", "LONG", "2"]
        assert cells[6] == "-$40.00" and cells[8] == "✓ stop"
        orders = app.screen.query_one("#orders-table", LiveTable)
        assert [str(c) for c in orders.cells(f"{ACC_A}|501")][3:6] == ["STOP", "SELL", "2"]


async def test_rules_table_lists_every_rule_with_limit_value_and_percent_used(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("r")
        table = app.screen.query_one("#rules-table", LiveTable)
        engine = engine_of(app)
        assert engine is not None
        assert len(table.keys) == 2 * len(engine.rules)
        loss = [str(c) for c in table.cells(f"{ACC_B}|RULE-003")]
        assert loss[3:6] == ["on", "-$300.00", "-$320.00"]
        assert loss[6].endswith("107%")


async def test_enforcement_log_is_newest_first_with_rule_action_result_and_latency(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("l")
        table = app.screen.query_one("#log-table", LiveTable)
        first = [str(c) for c in table.cells(table.keys[0])]
        assert first[1:5] == [f"ACC-{ACC_B}", "LOCKOUT", "close", "ES Z26"]
        assert first[6] == "ok" and first[7].endswith("ms")
        times = [table.cells(key)[0].at for key in table.keys]
        assert times == sorted(times, reverse=True)


async def test_a_burst_of_quotes_costs_a_few_redraws_and_the_screen_shows_the_last(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        assert engine is not None
        before = app.redraws
        for tick in range(2000):
            engine.submit(QuoteEvent(MNQ, quote(str(Decimal(20900) + tick % 50))))
        engine.submit(QuoteEvent(MNQ, quote("21010")))
        await engine.drain()
        await until(pilot, lambda: card(app, ACC_A).part("open-amount") == "$40.00")
        assert app.redraws - before <= 3


async def test_live_tables_update_cells_in_place_and_keep_the_cursor(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("r")
        table = app.screen.query_one("#rules-table", LiveTable)
        table.move_cursor(row=3)
        engine = engine_of(app)
        assert engine is not None
        keys = table.keys
        untouched = table.cells(f"{ACC_B}|RULE-001")  # B holds no MNQ: its rows stay
        drawn = app.redraws
        engine.submit(QuoteEvent(MNQ, quote("20980")))
        await engine.drain()
        await until(pilot, lambda: app.redraws > drawn)
        assert table.cursor_row == 3
        assert table.keys == keys
        assert table.cells(f"{ACC_B}|RULE-001") is untouched
        assert "-$292.50" in str(table.cells(f"{ACC_A}|RULE-003")[5])


async def test_a_stale_feed_is_shown_loudly(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        assert engine is not None
        banner = app.screen.query_one(Banner)
        assert not banner.has_class("-shown")
        engine.feed_health(FeedHealth("user", FeedState.STALE, 45.0, 1, "silent"))
        await until(pilot, lambda: banner.has_class("-shown"))
        assert "FEED STALE" in banner.text and banner.has_class("-error")
        assert "NOT ENFORCING" in label(app, "#status")


async def test_quitting_asks_first_and_no_keeps_riskman_running(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        # Embedded, q quits and the footer warns that it stops the guard.
        await until(pilot, lambda: "q" in footer_keys(app))
        assert footer_keys(app)["q"] == ("Quit", "Quit riskman (asks first: it stops the guard)")
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuit)
        assert "NOTHING enforces your rules" in str(app.screen.query_one(".message").render())
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmQuit) and app.is_running
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running)
        assert app.return_code == 0
        assert source_of(app).stopped


class FailingSource(FactorySource):
    async def start(self):  # type: ignore[no-untyped-def]
        raise StartError("cannot reach the gateway at http://127.0.0.1:9: connection refused")


async def test_a_start_error_is_shown_with_its_reason_and_quit_exits_non_zero(
    settings, config_path
) -> None:
    app = make_app(settings, config_path)
    app.control.source = FailingSource(settings, app.clock)  # type: ignore[attr-defined]
    async with app.run_test(size=SIZE) as pilot:
        banner = app.screen.query_one(Banner)
        await until(pilot, lambda: "CANNOT CONNECT" in banner.text)
        assert "connection refused" in banner.text
        assert "Press q to quit." in banner.text and "this terminal only" not in banner.text
        await pilot.press("a")
        assert app.screen.id == "trader"
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == EXIT_START


async def test_the_palette_offers_every_footer_binding_as_a_command(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        from riskman.tui.commands import BindingCommands

        provider = BindingCommands(app.screen)
        titles = [title for title, *_ in provider._commands()]
        for expected in ("Dashboard (d)", "Positions (p)", "Rules (r)", "Log (l)", "Admin (a)"):
            assert expected in titles
        assert not any(title.startswith("Buy") for title in titles)  # no demo outside the demo
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"positions")
        commands = app.screen.query_one(CommandList)

        def first_is_positions() -> bool:
            return commands.option_count > 0 and "Positions (p)" in str(
                commands.get_option_at_index(0).prompt
            )

        await until(pilot, first_is_positions)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.id == "trader")
        await until(pilot, lambda: app.screen.query_one(TabbedContent).active == "positions")


async def test_a_theme_switch_recolours_the_live_tables(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("p")
        table = app.screen.query_one("#positions-table", LiveTable)

        def side_colour() -> str:
            return str(table.cells(f"{ACC_A}|{MNQ}")[2].style).lower()

        before = side_colour()
        assert before == app.theme_variables["success"].lower()
        nord = app.available_themes["nord"].success
        assert nord is not None and nord.lower() != before
        app.theme = "nord"
        await until(pilot, lambda: side_colour() == nord.lower())


async def test_a_redraw_waits_for_a_burst_of_events_to_settle_once(app: RiskmanApp) -> None:
    """A redraw due while the gateway's events are arriving (a fill's four, an order and its
    fill) waits until they have settled, so it never sits between a fill and its close; it
    waits once, so a steady stream of events still gets drawn (issue 16)."""
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        assert engine is not None
        engine.submit(QuoteEvent(MNQ, quote("20990")))
        await engine.drain()
        await until(pilot, lambda: not app._dirty)
        drawn = app.redraws
        app._drawn_at = float("-inf")  # due now
        engine.submit(QuoteEvent(MNQ, quote("20995")))
        await engine.drain()
        app.redraw()
        assert app.redraws == drawn, "drawn in the middle of the burst"
        await until(pilot, lambda: app.redraws == drawn + 1)
        # Events still arriving when the postponed redraw comes: it draws anyway.
        app._drawn_at = float("-inf")
        engine.submit(QuoteEvent(MNQ, quote("21000")))
        await engine.drain()
        app.redraw()
        assert app.redraws == drawn + 1
        engine.submit(QuoteEvent(MNQ, quote("21005")))
        await engine.drain()
        await until(pilot, lambda: app.redraws == drawn + 2)
