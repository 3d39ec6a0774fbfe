"""The trader terminal: the Textual app, on the engine's one interface (`Control`).

The app owns one `Control`: the engine inside its event loop (`InProcessControl`, started in a
worker on mount) or an engine it attached to (`AttachedControl`). The control tells the app that
something changed through a listener that only sets a flag (in-process it runs inside the
engine and must cost nothing); a fixed-rate timer rebuilds the screens from
`control.snapshot()` when the flag is set, and at least once a second (quote ages, stale feeds
and session changes move with time alone). A burst of events therefore costs one redraw, and a
redraw updates only what is on screen (the tab in view, the cards scrolled into view), in
place, without a layout of the screen unless something changed size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from collections import deque
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen

from riskman.config import ConfigError, Settings, load_config
from riskman.control.interface import Control, ControlError, Notice, Session
from riskman.core.clock import Clock, SystemClock
from riskman.core.views import BURST_SETTLE, EngineSnapshot
from riskman.tui.commands import BindingCommands
from riskman.tui.modals import ConfirmQuit, PasswordModal
from riskman.tui.trader import LiveScreen, TraderScreen
from styles import APP_CSS
from widgets.formatting import span

if TYPE_CHECKING:
    pass

log = logging.getLogger("riskman.tui")

REFRESH = 0.2
"""Seconds between redraws while the engine reports changes (5 per second at most)."""
FORCE_EVERY = 1.0
"""Redraw at least this often even without a change event."""
LOOP_SHARE = 0.04
"""At most this share of the event loop (which the engine shares) goes to redraws: after a
redraw that took long (a snapshot of many accounts that all changed) the next one waits
proportionally longer, up to FORCE_EVERY."""
EXIT_START = 3
LOG_FILE = "riskman.log"
PROBE_TIMEOUT = 2.0
"""Seconds an engine has to answer before the terminal decides none runs."""
NEWS_KEEP = 20
NEWS_PER_TICK = 3
EMBEDDED = (
    "embedded: riskman runs inside this window, and closing it stops enforcing · "
    "a guard that keeps running: sudo riskman service install"
)


class RiskmanApp(App[int]):
    CSS_PATH = APP_CSS
    TITLE = "riskman"
    COMMANDS = App.COMMANDS | {BindingCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "admin", "Admin", tooltip="Open the password-protected admin screens"),
        # Attached, q detaches (the guard goes on) and says so; embedded it quits, after a
        # warning. `detach` comes first and is only allowed attached (see check_action), so
        # the footer and the palette show the one that applies.
        Binding("q", "detach", "Detach", tooltip="Detach this terminal (riskman goes on guarding)"),
        Binding("q", "quit", "Quit", tooltip="Quit riskman (asks first: it stops the guard)"),
        Binding("ctrl+q", "detach", "Detach", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        settings: Settings,
        config_path: Path,
        control: Control,
        *,
        clock: Clock | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.config_path = config_path
        self.control = control
        """The engine, through its one interface (in this process, or attached)."""
        self.clock: Clock = clock or SystemClock()
        self.cursor_blink = cursor_blink
        self.phase = "connecting"
        """connecting, running, failed or stopping."""
        self.start_error = ""
        self.log_file: Path | None = None
        """Where the logs go (set by `run_app`), to point at from an error."""
        self.snapshot: EngineSnapshot | None = None
        self.admin_unlocked = False
        self.admin_session: Session | None = None
        self.last_input = self.clock.now()
        self.redraws = 0
        self._dirty = True
        self._changed_at = float("-inf")
        self._postponed = False
        self._drawn_at = float("-inf")
        self._spacing = 0.0
        """The least time between two redraws (see LOOP_SHARE)."""
        self._news: deque[Notice] = deque(maxlen=NEWS_KEEP)
        self._unsubscribe: Any = None
        self._lost_shown = False

    def get_default_screen(self) -> Screen[Any]:
        return TraderScreen(id="trader")

    def on_mount(self) -> None:
        self.set_interval(REFRESH, self.redraw)
        self.connect()

    # --- the engine ------------------------------------------------------------------------

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def connect(self) -> None:
        self.phase = "connecting"
        self._show_phase()
        try:
            await self.control.start()
        except ControlError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:
            log.exception("riskman could not start")
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        self._unsubscribe = self.control.subscribe(self._on_change)
        self.phase = "running"
        self.mark_dirty()
        self.redraw()

    def _failed(self, reason: str) -> None:
        self.phase = "failed"
        self.start_error = reason
        self._show_phase()

    def _on_change(self, notice: Notice | None) -> None:
        # Called synchronously inside the engine: O(1) only, never a redraw from here.
        self._dirty = True
        self._changed_at = time.monotonic()
        lost = self.control.lost is not None
        if lost != self._lost_shown:
            # The engine stopped answering (or answers again): say so now, not at the next tick.
            self._lost_shown = lost
            self._drawn_at = float("-inf")
            self._spacing = 0.0
            self.call_next(self.redraw)
        if notice is not None:
            self._news.append(notice)

    def mark_dirty(self) -> None:
        self._dirty = True

    def redraw(self) -> None:
        """Rebuild the screens from a fresh snapshot, if something changed (the timer)."""
        if self.phase not in ("running", "stopping"):
            return
        started = time.monotonic()
        since = started - self._drawn_at
        if (not self._dirty and since < FORCE_EVERY) or since < self._spacing:
            return
        quiet_for = started - self._changed_at
        if quiet_for < BURST_SETTLE and not self._postponed:
            # Events are arriving: draw once they have settled (or in BURST_SETTLE anyway).
            self._postponed = True
            self.set_timer(BURST_SETTLE - quiet_for, self.redraw)
            return
        self._postponed = False
        self._dirty = False
        self._drawn_at = started
        try:
            snapshot = self.control.snapshot()
        except Exception:
            # The guard keeps running without a screen update; say so rather than crash.
            log.exception("snapshot failed")
            self.notify("The screen could not be updated (see the log).", severity="error")
            return
        if snapshot is None:
            return
        self.snapshot = snapshot
        self.redraws += 1
        for screen in self.screen_stack:
            if isinstance(screen, LiveScreen) and screen.ready:
                # A screen being taken down (at exit) may have lost its widgets already.
                with contextlib.suppress(NoMatches):
                    screen.show_snapshot(snapshot)
        self._announce()
        self._spacing = min(FORCE_EVERY, (time.monotonic() - started) / LOOP_SHARE)

    def _announce(self) -> None:
        """Toasts for new locks and failed actions: a few per redraw, the rest summed up (the
        dashboard and the log show them all)."""
        for _ in range(min(NEWS_PER_TICK, len(self._news))):
            notice = self._news.popleft()
            if notice.bell:
                self.bell()
            self.notify(
                notice.text, title=notice.title, severity=notice.severity, timeout=notice.timeout
            )
        if self._news:
            self.notify(
                f"{len(self._news)} more: see the dashboard and the enforcement log.",
                severity="error",
            )
            self._news.clear()

    @property
    def zone(self) -> ZoneInfo:
        """The timezone the screens show times in: the engine's (its snapshot says which; an
        attached terminal may not be able to read the admin overlay that set it), else the
        configuration file's."""
        name = self.snapshot.timezone if self.snapshot is not None else ""
        if name and name != self.settings.timezone:
            return _zone(name) or self.settings.zone
        return self.settings.zone

    def mode_line(self) -> str:
        """Which riskman this terminal shows (the strip's last line)."""
        if self.control.mode == "attached":
            info = self.control.info
            if info is None:
                return "attached to riskman"
            up = span((self.clock.now() - info.started).total_seconds())
            return f"attached to riskman (pid {info.pid}, up {up}) · q detaches, riskman goes on"
        return EMBEDDED

    def _show_phase(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, TraderScreen) and screen.ready:
                screen.show_phase()

    async def settings_saved(self) -> None:
        """The admin saved the configuration: read it again (off the event loop) for what the
        screens show (the timezone, the idle lock)."""
        try:
            self.settings = await asyncio.to_thread(load_config, self.config_path)
        except (ConfigError, OSError):
            log.warning("the saved configuration could not be read again", exc_info=True)
        self.mark_dirty()

    # --- input, admin and quitting -----------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        # What counts as activity for the admin idle lock (a mouse merely passing does not).
        if isinstance(
            event, events.Key | events.MouseDown | events.MouseScrollDown | events.MouseScrollUp
        ):
            self.last_input = self.clock.now()
        await super().on_event(event)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "admin":
            return isinstance(self.screen, TraderScreen)
        if action == "detach":
            return self.control.mode == "attached"
        return True

    async def action_admin(self) -> None:
        if self.phase != "running":
            self.notify("The admin screens open once riskman is running.", severity="warning")
            return
        try:
            state = await self.control.admin_state()
        except ControlError as exc:
            self.notify(str(exc), title="Admin password", severity="error", timeout=15)
            return
        modal = PasswordModal(self.control, self.clock, self.zone, state)
        self.push_screen(modal, self._admin_answer)

    def _admin_answer(self, session: Session | None) -> None:
        if session is not None:
            self.run_worker(self.unlock_admin(session), group="admin", exclusive=True)

    async def unlock_admin(self, session: Session) -> None:
        """Open the admin screens with what they show from their first frame."""
        from riskman.tui.admin import AdminData, AdminScreen

        try:
            rules = await self.control.get_rules(session)
            schedule = await self.control.get_schedule(session)
        except ControlError as exc:
            self.notify(str(exc), title="Admin", severity="error")
            return
        self.admin_session = session
        self.admin_unlocked = True
        self.last_input = self.clock.now()
        self.push_screen(AdminScreen(AdminData(session, rules, schedule)))

    def lock_admin(self, why: str) -> None:
        from riskman.tui.admin import AdminScreen

        self.admin_unlocked = False
        session, self.admin_session = self.admin_session, None
        if session is not None:
            self.run_worker(self.control.logout(session), group="logout", exit_on_error=False)
        if any(isinstance(screen, AdminScreen) for screen in self.screen_stack):
            while not isinstance(self.screen, AdminScreen):
                self.pop_screen()
            self.pop_screen()
            self.notify(why, title="Admin")

    async def action_quit(self) -> None:
        """Every way out (q, ctrl+q, the palette) asks first while riskman is guarding in this
        process; an attached terminal just detaches (the engine goes on)."""
        if self.phase == "stopping":
            return
        if self.control.mode == "attached":
            self.stop_and_exit()
            return
        if self.phase != "running":
            self.stop_and_exit()
            return
        if not isinstance(self.screen, ConfirmQuit):
            self.push_screen(ConfirmQuit(), self._quit_answer)

    async def action_detach(self) -> None:
        """Attached: leave the engine running and close this terminal (no question asked)."""
        await self.action_quit()

    def _quit_answer(self, quit_now: bool | None) -> None:
        if quit_now:
            self.stop_and_exit()

    async def on_unmount(self) -> None:
        # The last thing the app does on every way out (a crash and the tests' exit included):
        # stop the engine inside this event loop, flushing its state.
        await self.before_stop()
        await self.control.stop()

    async def before_stop(self) -> None:
        """What an app built on this one stops before the engine (nothing here)."""

    @work(exclusive=True, group="stop", exit_on_error=False)
    async def stop_and_exit(self) -> None:
        failed = self.phase == "failed"
        self.phase = "stopping"
        self._show_phase()
        self.workers.cancel_group(self, "engine")
        await self.before_stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        try:
            await self.control.stop()
        except Exception:
            log.exception("stopping riskman failed")
        code = EXIT_START if failed else 0
        self.exit(code, return_code=code)


async def run_app(app: RiskmanApp) -> int:
    """Run the terminal until it exits; stop the engine (or detach) on every way out (SIGTERM,
    SIGHUP and a crash included: the control is stopped again, which is harmless)."""
    from riskman.logs import setup_logging

    # The screen is the terminal: logs go to a file beside the database (or, attached to a
    # guard whose folder this user cannot write, to the user's own state folder).
    log_file = app.log_file = _log_file(app)
    stream = log_file.open("a", encoding="utf-8")
    handler = setup_logging("text", "INFO", stream)
    loop = asyncio.get_running_loop()
    hooked = []

    def closed(signum: int) -> None:
        if signum == signal.SIGHUP:
            if app.control.mode == "attached":
                log.info("the terminal window closed: detached, riskman goes on enforcing")
            else:
                log.warning(
                    "the terminal window closed: riskman stops, and nothing enforces the rules "
                    "until it runs again (a guard that keeps running: riskman service install)"
                )
        app.exit(0)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, closed, signum)
            hooked.append(signum)
    try:
        await app.run_async()
    finally:
        for signum in hooked:
            loop.remove_signal_handler(signum)
        try:
            await app.control.stop()
        finally:
            logging.getLogger().removeHandler(handler)
            stream.close()
    if app.return_code == EXIT_START and app.start_error:
        print(f"riskman: {app.start_error} (log: {log_file})", file=sys.stderr)
        return EXIT_START
    return app.return_code or 0


def _log_file(app: RiskmanApp) -> Path:
    folders = [app.settings.database.parent]
    if app.control.mode == "attached":
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        folders.append(Path(state) / "riskman")
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / LOG_FILE
            path.open("a", encoding="utf-8").close()
        except OSError:
            continue
        return path
    return Path(tempfile.gettempdir()) / f"riskman-{os.getuid()}.log"


async def engine_answers(path: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether an engine answers on the control socket `path` (within `timeout` seconds)."""
    from riskman.control.client import ApiError, ControlClient, NotAnswering

    async with ControlClient(path, timeout=timeout) as client:
        try:
            await client.status()
        except NotAnswering:
            return False
        except ApiError:
            return True  # it answers (and says what is wrong once attached)
    return True


def run_terminal(settings: Settings, config_path: Path, *, attach: bool = False) -> int:
    """`riskman [--config PATH] [--attach]`: attach to the engine of this config when one
    answers on its control socket; otherwise run the engine inside (never with `attach`)."""
    return asyncio.run(_terminal(settings, config_path, attach=attach))


async def _terminal(settings: Settings, config_path: Path, *, attach: bool) -> int:
    from riskman.control.paths import socket_path

    path = socket_path(settings)
    control: Control
    if await engine_answers(path):
        from riskman.control.attached import AttachedControl

        control = AttachedControl(settings, config_path, path=path)
    elif attach:
        print(
            f"riskman: no riskman engine answers on {path} (start the guard: riskman --no-ui "
            f"--config {config_path}, or sudo riskman service install)",
            file=sys.stderr,
        )
        return EXIT_START
    else:
        from riskman.control.inprocess import InProcessControl
        from riskman.runtime import Runtime, RuntimeSource

        control = InProcessControl(RuntimeSource(Runtime(settings)), config_path)
    return await run_app(RiskmanApp(settings, config_path, control))


@cache
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
