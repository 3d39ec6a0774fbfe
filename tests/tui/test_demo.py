"""`riskman demo` in-process: the real simulator, the real REST and SignalR client, the app.
The trader's keys break a rule and riskman enforces it on screen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from riskman.demo import DEMO_PASSWORD, demo_session
from riskman.demo import desk as demo_desk
from riskman.tui.app import RiskmanApp
from riskman.tui.trader import TraderScreen
from tests.tui.conftest import SIZE, text_of, until
from widgets.account_card import AccountCard

pytestmark = pytest.mark.e2e


def holding(app: RiskmanApp) -> bool:
    """Whether riskman sees a position on the demo account."""
    view = app.snapshot.account(1001) if app.snapshot else None
    return view is not None and bool(view.positions)


def first_card(app: RiskmanApp) -> AccountCard:
    return app.screen.query_one("#account-1001", AccountCard)


async def test_four_quick_buys_start_a_cooldown_with_a_countdown(tmp_path: Path) -> None:
    async with demo_session(tmp_path, seed=3) as app, app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.armed, 15)
        assert app.demo is not None and app.demo.password == DEMO_PASSWORD
        await pilot.press("b", "b", "b", "b")
        await until(pilot, lambda: first_card(app).has_class("-cooldown"), 15)
        text = first_card(app).part("locks")
        assert "RULE-006" in text and re.search(r"ends in [01]:\d\d", text)
        assert first_card(app).ticking
        await until(pilot, lambda: bool(app.snapshot and app.snapshot.log), 10)
        log = app.snapshot.log if app.snapshot else ()
        assert any(record.rule == "RULE-006" for record in log)
        # The fourth contract, bought as the cooldown began, was cut at the broker; the three
        # bought before it stay open.
        desk = app.demo
        await until(pilot, lambda: [p.size for p in desk.sim.positions(1001)] == [3], 10)
        await until(pilot, lambda: holding(app), 10)
    config = text_of(tmp_path / "riskman.yaml")
    assert "trade_frequency_limit:" in config and "session_block_outside:" not in config


async def test_the_scripted_trader_over_trades_until_riskman_stops_him(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_desk, "SCRIPT_PAUSE", 0.3)
    async with demo_session(tmp_path, seed=5) as app, app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.armed, 15)
        desk = app.demo
        assert desk is not None
        await pilot.press("t")
        assert desk.scripted
        await until(pilot, lambda: not desk.scripted, 20)
        assert "gives up" in desk.last
        # The card follows at the next redraw (at most 0.2 s later).
        await until(pilot, lambda: not first_card(app).has_class("-ok"))
        panel = app.screen.query_one("#demo")
        assert "gives up" in str(panel.render())


async def test_demo_keys_are_bound_only_in_the_demo(tmp_path: Path) -> None:
    async with demo_session(tmp_path, seed=9) as app, app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None, 15)
        screen = app.screen
        assert isinstance(screen, TraderScreen)
        keys = {b.binding.key for b in screen.active_bindings.values() if b.enabled}
        assert {"b", "s", "i", "f", "t"} <= keys
        await pilot.press("i")
        assert app.demo is not None and app.demo.instrument.symbol == "ES"
        await pilot.press("s")
        await until(pilot, lambda: "SELL 1 ES" in app.demo.last, 10)
        await until(pilot, lambda: holding(app), 10)
        await pilot.press("f")
        await until(pilot, lambda: "Flattened" in app.demo.last, 10)
        await until(pilot, lambda: not holding(app), 10)


def test_a_kept_demo_folder_is_pointed_at_the_new_simulator_port(tmp_path: Path) -> None:
    from riskman.demo import write_config

    class Sim:
        base_url = "http://127.0.0.1:1111"
        user_hub_url = f"{base_url}/hubs/user"
        market_hub_url = f"{base_url}/hubs/market"

    path = write_config(tmp_path, Sim())  # type: ignore[arg-type]
    text = text_of(path).replace(
        "max_contracts:\n    enabled: true\n    limit: 3",
        "max_contracts:\n    enabled: true\n    limit: 2",
    )
    path.write_text(text)
    Sim.base_url = "http://127.0.0.1:2222"
    Sim.user_hub_url = "http://127.0.0.1:2222/hubs/user"
    Sim.market_hub_url = "http://127.0.0.1:2222/hubs/market"
    write_config(tmp_path, Sim())  # type: ignore[arg-type]
    text = text_of(path)
    assert "api_url: http://127.0.0.1:2222" in text and "1111" not in text
    assert "limit: 2" in text and "# Break it: buy 4 contracts" in text
