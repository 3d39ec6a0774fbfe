"""The terminal attached to a running engine through its real control socket: every screen from
the stream, admin edits through the API, `q` detaches (the engine goes on), and an engine that
stops or hangs shows NOT GUARDED within 2 s while the terminal keeps trying to attach again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from textual.widgets import Input, Static

from riskman.admin import PasswordStore
from riskman.config import Settings, load_config
from riskman.control.attached import AttachedControl
from riskman.control.client import ControlClient
from riskman.control.paths import socket_path
from riskman.control.server import ControlServer
from riskman.core.clock import FakeClock
from riskman.core.localtime import clock_time
from riskman.engine.engine import Engine
from riskman.tui.admin import AdminScreen
from riskman.tui.admin.rules_tab import RulesTab
from riskman.tui.app import RiskmanApp, _terminal
from riskman.tui.modals import ConfirmQuit, PasswordModal
from tests.fakes import T0
from tests.tui.conftest import (
    ACC_A,
    ACC_B,
    PASSWORD,
    SIZE,
    FactorySource,
    footer_keys,
    text_of,
    until,
)
from widgets.health import Banner, StatusStrip

GRACE = 2.0
"""The issue's bound: NOT GUARDED on screen within 2 s of the engine stopping or hanging."""


class Served:
    """The engine of the test config (seeded with the trading day) serving its control API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source = FactorySource(settings, FakeClock(T0))
        self.engine: Engine | None = None
        self.server: ControlServer | None = None

    async def start(self) -> None:
        self.engine = await self.source.start()
        self.server = ControlServer(self.settings, self.engine, socket_path(self.settings))
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        await self.source.stop()


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    engine = Served(settings)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def attached_app(settings: Settings, config_path: Path, **kw: Any) -> RiskmanApp:
    control = AttachedControl(settings, config_path, **kw)
    app = RiskmanApp(settings, config_path, control, cursor_blink=False)
    app.animation_level = "none"
    return app


def strip_text(app: RiskmanApp) -> str:
    return str(app.screen.query_one(StatusStrip).render())


def banner_text(app: RiskmanApp) -> str:
    banner = app.screen.query_one(Banner)
    return str(banner.render()) if banner.has_class("-shown") else ""


async def test_attached_every_screen_from_the_stream_and_q_detaches(
    served: Served, settings: Settings, config_path: Path
) -> None:
    app = attached_app(settings, config_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.accounts) == 2)
        await pilot.pause(0.3)
        assert f"attached to riskman (pid {os.getpid()}, up " in strip_text(app)
        # q detaches here, and the footer says so: no "Quit", no warning that the guard stops.
        await until(pilot, lambda: "q" in footer_keys(app))
        label, tooltip = footer_keys(app)["q"]
        assert label == "Detach" and "goes on guarding" in tooltip and "stops" not in tooltip
        ids = [card.id for card in app.screen.query("AccountCard")]
        assert ids == [f"account-{ACC_A}", f"account-{ACC_B}"]
        await pilot.press("l")
        await until(pilot, lambda: app.screen.query_one("#log-table").row_count > 0)
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, 5)
        assert not isinstance(app.screen, ConfirmQuit)
    assert app.return_code == 0
    # Detaching stopped nothing: the engine answers and still holds B's lock.
    async with ControlClient(socket_path(settings)) as client:
        status = await client.status()
    assert {a["id"]: a["status"] for a in status["accounts"]}[ACC_B] == "LOCKED"
    assert served.source.stopped is False


async def test_admin_edits_go_through_the_socket(
    served: Served, settings: Settings, config_path: Path
) -> None:
    app = attached_app(settings, config_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PasswordModal))
        app.screen.query_one("#password", Input).value = "not it at all"
        await pilot.press("enter")
        await until(
            pilot, lambda: "Wrong password" in app.screen.query_one("#feedback").render().plain
        )  # type: ignore[attr-defined]
        field = app.screen.query_one("#password", Input)
        await until(pilot, lambda: not field.disabled)
        field.value = PASSWORD
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AdminScreen), 10)
        screen = app.screen
        await screen.query_one(RulesTab).show_rule("daily_realized_loss")
        await pilot.pause()
        screen.query_one("#f-daily_realized_loss--limit", Input).value = "250"
        await pilot.press("ctrl+s")
        assert served.engine is not None
        engine = served.engine
        await until(pilot, lambda: engine.settings.rules.daily_realized_loss.limit == 250, 10)
        assert "limit: 250   # keep this comment" in text_of(config_path)
        rows = await engine.db.fetchall(
            "SELECT target, uid FROM admin_audit WHERE action = 'config' ORDER BY id"
        )
        assert [r["target"] for r in rows] == ["rules.daily_realized_loss.limit"]
        assert rows[0]["uid"] == os.getuid()
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, AdminScreen))


async def test_attached_admin_edits_in_guard_mode_land_in_the_admin_overlay(
    settings: Settings, config_path: Path
) -> None:
    # The guard's case once an admin has saved: the overlay beside the database exists (the
    # config folder being root's is tested in tests/control/test_admin_overlay.py).
    settings.admin_overlay.write_text("")
    before = text_of(config_path)
    served = Served(settings)
    await served.start()
    try:
        app = attached_app(settings, config_path)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, PasswordModal))
            app.screen.query_one("#password", Input).value = PASSWORD
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, AdminScreen), 10)
            screen = app.screen
            # The header says where the changes go.
            header = str(screen.query_one("#admin-header", Static).render())
            assert f"admin overlay {settings.admin_overlay}" in header
            await screen.query_one(RulesTab).show_rule("daily_realized_loss")
            await pilot.pause()
            screen.query_one("#f-daily_realized_loss--limit", Input).value = "250"
            await pilot.press("ctrl+s")
            assert served.engine is not None
            engine = served.engine
            await until(pilot, lambda: engine.settings.rules.daily_realized_loss.limit == 250, 10)
            await until(
                pilot,
                lambda: any("in the admin overlay" in str(n.message) for n in app._notifications),
            )
        assert "limit: 250" in settings.admin_overlay.read_text()
        assert text_of(config_path) == before
    finally:
        await served.stop()


async def test_attached_the_first_admin_password_is_created_from_the_terminal(
    settings: Settings, config_path: Path
) -> None:
    settings.password_file.unlink()  # no admin password yet
    served = Served(settings)
    await served.start()
    try:
        app = attached_app(settings, config_path)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, PasswordModal))
            modal = app.screen
            assert isinstance(modal, PasswordModal) and modal.first_run
            modal.query_one("#new", Input).value = "a-good-password"
            modal.query_one("#repeat", Input).value = "a-good-password"
            modal.query_one("#repeat", Input).focus()
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, AdminScreen), 10)
        store = PasswordStore(settings.password_file)
        assert store.verify("a-good-password")
        assert served.engine is not None
        rows = await served.engine.db.fetchall(
            "SELECT new_value, reason, uid FROM admin_audit WHERE action = 'password'"
        )
        assert [(r["new_value"], r["reason"], r["uid"]) for r in rows] == [
            ("set", "first run", os.getuid())
        ]
    finally:
        await served.stop()


async def test_engine_stopped_shows_not_guarded_within_2_s_and_attaches_again(
    served: Served, settings: Settings, config_path: Path
) -> None:
    app = attached_app(settings, config_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        assert banner_text(app) == "" or "NOT GUARDED" not in banner_text(app)
        assert served.server is not None
        began = time.monotonic()
        await served.server.stop()
        served.server = None
        await until(pilot, lambda: "NOT GUARDED" in banner_text(app), GRACE)
        assert time.monotonic() - began < GRACE
        assert "NOT GUARDED" in strip_text(app)
        # It comes back: the terminal attaches again on its own.
        assert served.engine is not None
        served.server = ControlServer(settings, served.engine, socket_path(settings))
        await served.server.start()
        await until(pilot, lambda: app.control.lost is None, 10)
        await until(pilot, lambda: "NOT GUARDED" not in banner_text(app), 5)


async def test_attach_insists_and_says_so_when_nothing_answers(
    settings: Settings, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await _terminal(settings, config_path, attach=True)
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no riskman engine answers on" in err[0]
    assert str(socket_path(settings)) in err[0]


async def test_attached_cannot_connect_says_q_closes_this_terminal_only(
    settings: Settings, config_path: Path
) -> None:
    app = attached_app(settings, config_path)  # nothing serves the socket
    async with app.run_test(size=SIZE) as pilot:
        banner = app.screen.query_one(Banner)
        await until(pilot, lambda: "CANNOT CONNECT" in banner.text)
        assert "Press q to close this terminal only" in banner.text
        assert "Press q to quit." not in banner.text
        assert "NOT ATTACHED" in strip_text(app)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, 5)


async def test_a_hung_engine_shows_not_guarded_within_2_s(
    tmp_path: Path, settings: Settings, config_path: Path
) -> None:
    """A real engine process: SIGSTOP (it looks alive and answers nothing), then SIGCONT."""
    from riskman.sim import Simulator
    from tests.e2e.test_daemon_e2e import Daemon, sim_env

    sim = Simulator(seed=3, quote_interval=None, ping_interval=2.0)
    await sim.start(port=0)
    daemon = await Daemon.start(config_path, sim_env(sim))
    try:
        await daemon.wait_for(lambda line: "armed" in str(line.get("msg", "")), "armed", 60)
        app = attached_app(load_config(config_path), config_path)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and app.snapshot.armed, 20)
            assert f"pid {daemon.process.pid}" in strip_text(app)
            began = time.monotonic()
            os.kill(daemon.process.pid, signal.SIGSTOP)
            try:
                await until(pilot, lambda: "NOT GUARDED" in banner_text(app), GRACE + 1)
                assert time.monotonic() - began < GRACE
            finally:
                os.kill(daemon.process.pid, signal.SIGCONT)
            await until(pilot, lambda: app.control.lost is None, 15)
            began = time.monotonic()
            daemon.process.kill()
            await until(pilot, lambda: "NOT GUARDED" in banner_text(app), GRACE + 1)
            assert time.monotonic() - began < GRACE
    finally:
        if daemon.process.returncode is None:
            daemon.process.kill()
        await daemon.process.wait()
        await sim.stop()
        await asyncio.sleep(0)


async def test_attached_times_are_shown_in_the_engines_timezone(
    settings: Settings, config_path: Path
) -> None:
    """The engine runs on a timezone the terminal cannot read from its file (the admin overlay,
    unreadable to the trader, set it): the screens show the engine's times in the engine's
    zone, as its snapshot says (issue 12)."""
    london = ZoneInfo("Europe/London")
    engine = Served(settings.model_copy(update={"timezone": "Europe/London"}))
    await engine.start()
    try:
        app = attached_app(settings, config_path)
        assert settings.timezone == "America/Chicago"
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            assert app.snapshot is not None
            assert app.snapshot.timezone == "Europe/London"
            assert app.zone == london
            reset = clock_time(app.snapshot.next_reset, london)
            assert reset.startswith("17:00")  # the daily reset, 17:00 where the engine is
            await until(pilot, lambda: f"next daily reset {reset}" in strip_text(app))
    finally:
        await engine.stop()
