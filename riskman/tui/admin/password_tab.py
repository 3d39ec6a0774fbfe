"""Admin · Password: a new admin password, typed twice."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Static

from riskman.control.interface import ControlError, Invalid, PasswordChange
from riskman.tui.admin.base import AdminTab


class PasswordTab(AdminTab):
    def __init__(self) -> None:
        super().__init__("Password", id="admin-password")

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="admin-pane", can_focus=False):
            yield Static(
                "A new admin password (at least 8 characters), typed twice. Only its salted "
                "scrypt hash is stored.",
                classes="hint",
            )
            yield Input(password=True, placeholder="New password", id="new-password")
            yield Input(password=True, placeholder="Repeat it", id="repeat-password")
            yield Static("", id="password-problems", classes="problems")
            with Horizontal(classes="buttons"):
                yield Button("Change password (ctrl+s)", id="change-password", variant="primary")

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "change-password":
            event.stop()
            await self.save()

    async def save(self) -> None:
        problems = self.query_one("#password-problems", Static)
        first = self.query_one("#new-password", Input)
        second = self.query_one("#repeat-password", Input)
        if first.value != second.value:
            second.value = ""
            problems.update("The two passwords differ.")
            return
        try:
            await self.control.change_password(self.session, PasswordChange(password=first.value))
        except ControlError as exc:
            problems.update(exc.text() if isinstance(exc, Invalid) else f"Not changed: {exc}.")
            return
        first.value = second.value = ""
        problems.update("")
        self.notify("The admin password was changed.", title="Password")
        await self.admin.load_audit()
