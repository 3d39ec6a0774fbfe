"""Modal dialogs: confirm quitting, and the admin password (create it on first run)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Label, Static

from riskman.admin import FREE_TRIES, MIN_LENGTH, AdminGuard, PasswordError
from riskman.engine.clock import Clock
from widgets.formatting import clock_time, countdown

Audit = Callable[..., Awaitable[None]]


def no_blink(screen: ModalScreen[object] | object) -> None:
    """Inputs stop blinking when the app asks (frozen snapshots in tests)."""
    from textual.screen import Screen

    if isinstance(screen, Screen) and not getattr(screen.app, "cursor_blink", True):
        for field in screen.query(Input):
            field.cursor_blink = False


class ConfirmQuit(ModalScreen[bool]):
    """Quitting riskman stops the guard: say so, and make staying the easy answer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n,escape", "answer(False)", "Keep riskman running"),
        Binding("y", "answer(True)", "Quit riskman"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger"):
            yield Label("Quit riskman?", classes="title")
            yield Static(
                "While riskman is closed NOTHING enforces your rules: no position is closed, "
                "no order is cancelled, no lockout is kept.\n\n"
                "If you are about to quit because riskman stopped you, that is exactly the "
                "moment it exists for. Take a break instead.",
                classes="message",
            )
            with Horizontal(classes="buttons"):
                yield Button("Keep riskman running (n)", variant="primary", id="stay")
                yield Button("Quit riskman (y)", variant="error", id="quit")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit")

    def action_answer(self, quit_now: bool) -> None:
        self.dismiss(quit_now)


class PasswordModal(ModalScreen[bool]):
    """The admin password: verified against the salted hash, throttled by `AdminGuard`.

    On the first run (no password set yet) it asks for a new one, twice. Dismisses with True
    once the admin screens may open.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, guard: AdminGuard, clock: Clock, zone: tzinfo, audit: Audit, *, first_run: bool
    ) -> None:
        super().__init__()
        self.guard = guard
        self.clock = clock
        self.zone = zone
        self.audit = audit
        self.first_run = first_run
        self.locked_until: datetime | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            if self.first_run:
                yield Label("Create the admin password", classes="title")
                yield Static(
                    "No admin password is set yet. The admin screens change your rules and "
                    f"clear lockouts: choose a password of at least {MIN_LENGTH} characters "
                    "that you will not type on a bad day (a coach can keep it). Only a salted "
                    "hash is stored.",
                    classes="message",
                )
                yield Input(password=True, placeholder="New admin password", id="new")
                yield Input(password=True, placeholder="Repeat it", id="repeat")
            else:
                yield Label("Admin password", classes="title")
                yield Static(
                    f"The admin screens change rules and clear lockouts. After {FREE_TRIES} "
                    "wrong passwords they lock, for longer after each further mistake.",
                    classes="message",
                )
                yield Input(password=True, placeholder="Admin password", id="password")
            yield Static("", id="feedback")
        yield Footer()

    async def on_mount(self) -> None:
        no_blink(self)
        self._timer = self.set_interval(1.0, self._tick, pause=True)
        if not self.first_run:
            until = await self.guard.locked_until()
            if until is not None:
                self._lock(until)

    @property
    def feedback(self) -> str:
        return str(self.query_one("#feedback", Static).content)

    def _say(self, text: str, level: str = "error") -> None:
        feedback = self.query_one("#feedback", Static)
        for name in ("error", "warning", "success"):
            feedback.set_class(name == level, f"-{name}")
        feedback.update(text)

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.first_run:
            if event.input.id == "new":
                self.query_one("#repeat", Input).focus()
            else:
                await self._create()
        else:
            await self._check(event.value)

    async def _create(self) -> None:
        first = self.query_one("#new", Input)
        second = self.query_one("#repeat", Input)
        if first.value != second.value:
            second.value = ""
            self._say("The two passwords differ. Type the same password twice.")
            second.focus()
            return
        try:
            await asyncio.to_thread(self.guard.store.set, first.value)
        except PasswordError as exc:
            first.value = second.value = ""
            self._say(f"Not set: {exc}.")
            first.focus()
            return
        await self.audit("password", "admin password", old=None, new="set", reason="first run")
        self.dismiss(True)

    async def _check(self, password: str) -> None:
        field = self.query_one("#password", Input)
        field.value = ""
        field.disabled = True
        attempt = await self.guard.try_password(password)
        if attempt.ok:
            self.dismiss(True)
            return
        if attempt.locked_until is not None:
            if attempt.failures >= FREE_TRIES:
                await self.audit(
                    "admin_locked",
                    "admin screens",
                    old=None,
                    new=f"locked until {attempt.locked_until.isoformat()}",
                    reason=f"{attempt.failures} wrong passwords in a row",
                )
            self._lock(attempt.locked_until)
            return
        left = FREE_TRIES - attempt.failures
        self._say(
            f"Wrong password. {left} more wrong password{'s' if left != 1 else ''} and the "
            "admin screens lock."
        )
        field.disabled = False
        field.focus()

    def _lock(self, until: datetime) -> None:
        self.locked_until = until
        self.query_one("#password", Input).disabled = True
        if self._timer is not None:
            self._timer.resume()
        self._tick()

    def _tick(self) -> None:
        if self.locked_until is None:
            return
        left = (self.locked_until - self.clock.now()).total_seconds()
        if left <= 0:
            self.locked_until = None
            if self._timer is not None:
                self._timer.pause()
            field = self.query_one("#password", Input)
            field.disabled = False
            field.focus()
            self._say("You can try again.", "warning")
            return
        self._say(
            "Too many wrong passwords: the admin screens are locked. "
            f"Try again in {countdown(left)} (at {clock_time(self.locked_until, self.zone)})."
        )

    def action_cancel(self) -> None:
        self.dismiss(False)
