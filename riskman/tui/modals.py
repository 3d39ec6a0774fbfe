"""Modal dialogs: confirm quitting, and the admin password (create it on first run)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Label, Static

from riskman.control.interface import (
    AdminState,
    Control,
    ControlError,
    Invalid,
    LoginRequest,
    PasswordChange,
    Session,
)
from riskman.core.clock import Clock
from widgets.formatting import clock_time, countdown


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


class LockMeOut(ModalScreen[str | None]):
    """Lock me out now (issue 13): the trader, without the password. It cannot be undone.

    Dismisses with what riskman understands (15m, 30m, 1h, session, reset, HH:MM) or None.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Keep trading")]

    CHOICES = (
        ("15 min", "15m"),
        ("30 min", "30m"),
        ("1 hour", "1h"),
        ("Until the session ends", "session"),
        ("Until the daily reset", "reset"),
    )

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger"):
            yield Label("Lock me out now", classes="title")
            yield Static(
                "riskman closes every open position, cancels every working order and locks "
                "you out of every guarded account until the end you choose.\n\n"
                "THIS CANNOT BE UNDONE: nobody can clear it before its end, not even with "
                "the admin password.",
                classes="message",
            )
            with Horizontal(classes="buttons"):
                for text, spec in self.CHOICES[:3]:
                    yield Button(text, id=f"lock-{spec}", variant="error")
            with Horizontal(classes="buttons"):
                for text, spec in self.CHOICES[3:]:
                    yield Button(text, id=f"lock-{spec}", variant="error")
            yield Input(placeholder="…or until a time HH:MM, then Enter", id="lock-until")
            yield Button("Keep trading (escape)", id="lock-cancel", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        no_blink(self)
        self.query_one("#lock-cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        name = event.button.id or ""
        self.dismiss(None if name == "lock-cancel" else name.removeprefix("lock-"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class PasswordModal(ModalScreen[Session | None]):
    """The admin password: checked by the engine (salted hash, throttled).

    On the first run (no password set yet) it asks for a new one, twice. Dismisses with the
    admin session once the admin screens may open (None: cancelled).
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, control: Control, clock: Clock, zone: tzinfo, state: AdminState) -> None:
        super().__init__()
        self.control = control
        self.clock = clock
        self.zone = zone
        self.state = state
        self.first_run = not state.password_set
        self.locked_until: datetime | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        tries, shortest = self.state.free_tries, self.state.min_length
        with Vertical(id="dialog"):
            if self.first_run:
                yield Label("Create the admin password", classes="title")
                yield Static(
                    "No admin password is set yet. The admin screens change your rules and "
                    f"clear lockouts: choose a password of at least {shortest} characters "
                    "that you will not type on a bad day (a coach can keep it). Only a salted "
                    "hash is stored.",
                    classes="message",
                )
                yield Input(password=True, placeholder="New admin password", id="new")
                yield Input(password=True, placeholder="Repeat it", id="repeat")
            else:
                yield Label("Admin password", classes="title")
                yield Static(
                    f"The admin screens change rules and clear lockouts. After {tries} "
                    "wrong passwords they lock, for longer after each further mistake.",
                    classes="message",
                )
                yield Input(password=True, placeholder="Admin password", id="password")
            yield Static("", id="feedback")
        yield Footer()

    async def on_mount(self) -> None:
        no_blink(self)
        self._timer = self.set_interval(1.0, self._tick, pause=True)
        if not self.first_run and self.state.locked_until is not None:
            self._lock(self.state.locked_until)

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
            answer = await self.control.create_password(PasswordChange(password=first.value))
        except ControlError as exc:
            first.value = second.value = ""
            self._say(exc.text() if isinstance(exc, Invalid) else f"Not set: {exc}.")
            first.focus()
            return
        self.dismiss(answer.session)

    async def _check(self, password: str) -> None:
        field = self.query_one("#password", Input)
        field.value = ""
        field.disabled = True
        try:
            attempt = await self.control.login(LoginRequest(password=password))
        except ControlError as exc:
            self._say(str(exc))
            field.disabled = False
            return
        if attempt.session is not None:
            self.dismiss(attempt.session)
            return
        if attempt.locked_until is not None:
            self._lock(attempt.locked_until)
            return
        left = self.state.free_tries - attempt.failures
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
        self.dismiss(None)
