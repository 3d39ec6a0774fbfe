"""SVG snapshots of each screen at 160x48, clock frozen (FakeClock), cursor blink off.

Update after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the report before committing the new SVGs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from riskman.config import load_config
from riskman.engine.engine import Engine
from riskman.tui.admin import AdminScreen
from riskman.tui.admin.rules_tab import RulesTab
from riskman.tui.app import RiskmanApp
from riskman.tui.modals import PasswordModal
from tests.tui.conftest import (
    SIZE,
    FactorySource,
    make_app,
    open_admin,
    running,
    until,
    write_config,
)

Compare = Callable[..., bool]


@pytest.fixture
def snap_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RiskmanApp:
    # A relative config path: the admin header shows it, and it must not change between runs.
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path)
    from riskman.admin import PasswordStore
    from tests.tui.conftest import PASSWORD

    path = Path("riskman.yaml")
    settings = load_config(path)
    PasswordStore(settings.password_file).set(PASSWORD)
    return make_app(settings, path)


async def _running(pilot: Pilot[Any]) -> None:
    await running(pilot)


async def _admin(pilot: Pilot[Any]) -> None:
    app = await running(pilot)
    await open_admin(pilot)
    await until(pilot, lambda: isinstance(app.screen, AdminScreen) and app.screen.ready)
    await until(pilot, lambda: app.redraws > 1)
    await pilot.pause()


def test_dashboard(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    assert snap_compare(snap_app, terminal_size=SIZE, run_before=_running)


def test_positions(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    assert snap_compare(snap_app, terminal_size=SIZE, run_before=_running, press=["p"])


def test_rules(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    assert snap_compare(snap_app, terminal_size=SIZE, run_before=_running, press=["r"])


def test_enforcement_log(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    assert snap_compare(snap_app, terminal_size=SIZE, run_before=_running, press=["l"])


def test_quit_confirmation(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    assert snap_compare(snap_app, terminal_size=SIZE, run_before=_running, press=["q"])


def test_password_dialog(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        app = await running(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PasswordModal))

    assert snap_compare(snap_app, terminal_size=SIZE, run_before=before)


def test_admin_rules(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _admin(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, AdminScreen)
        await screen.query_one(RulesTab).show_rule("trade_frequency_limit")
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=SIZE, run_before=before)


def test_admin_lockouts(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    assert snap_compare(snap_app, terminal_size=SIZE, run_before=_admin, press=["f5"])


def test_admin_schedule(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    assert snap_compare(snap_app, terminal_size=SIZE, run_before=_admin, press=["f4"])


class SlowSource(FactorySource):
    """A gateway that does not answer (yet)."""

    async def start(self) -> Engine:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_connecting(snap_compare: Compare, snap_app: RiskmanApp) -> None:
    snap_app.control.source = SlowSource(snap_app.settings, snap_app.clock)  # type: ignore[attr-defined]
    assert snap_compare(snap_app, terminal_size=SIZE)
