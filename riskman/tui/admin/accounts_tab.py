"""Admin · Accounts: which accounts riskman guards."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Label, SelectionList, Static, Switch

from riskman.control.interface import AccountsPut, ControlError
from riskman.tui.admin.base import AdminTab


class AccountsTab(AdminTab):
    def __init__(self, *, guard_all: bool) -> None:
        super().__init__("Accounts", id="admin-accounts")
        self.guard_all = guard_all

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="admin-pane", can_focus=False):
            yield Static(
                "Which accounts riskman guards. With “every active account” on, riskman guards "
                "each account the gateway lists as active (accounts: [] in the file).",
                classes="hint",
            )
            with Horizontal(classes="field-row"):
                yield Label("Guard every active account", classes="field-name")
                yield Switch(self.guard_all, id="guard-all")
            yield SelectionList[int](id="account-list")
            yield Static("", id="accounts-problems", classes="problems")
            with Horizontal(classes="buttons"):
                yield Button("Save accounts (ctrl+s)", id="save-accounts", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#account-list", SelectionList).disabled = self.guard_all

    def load(self) -> None:
        """The profile's accounts (the engine asks the gateway: in a worker)."""
        self.run_worker(self._load(), group="accounts", exclusive=True)

    async def _load(self) -> None:
        try:
            state = await self.control.get_accounts(self.session)
        except ControlError as exc:
            self.query_one("#accounts-problems", Static).update(str(exc))
            return
        if state.problem:
            self.query_one("#accounts-problems", Static).update(state.problem)
        selection = self.query_one("#account-list", SelectionList)
        selection.clear_options()
        selection.add_options([(f"{a.id}  {a.name}", a.id, a.guarded) for a in state.accounts])

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "guard-all":
            self.query_one("#account-list", SelectionList).disabled = event.value

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save-accounts":
            event.stop()
            await self.save()

    async def save(self) -> None:
        problems = self.query_one("#accounts-problems", Static)
        guard_all = self.query_one("#guard-all", Switch).value
        chosen: list[int] = []
        if not guard_all:
            chosen = sorted(self.query_one("#account-list", SelectionList).selected)
            if not chosen:
                problems.update(
                    "Select at least one account, or switch on “Guard every active account”."
                )
                return
        try:
            result = await self.control.put_accounts(
                self.session, AccountsPut(guard_all=guard_all, ids=chosen)
            )
        except ControlError as exc:
            self.admin.refused(exc, problems)
            return
        problems.update("")
        await self.admin.saved(result, unchanged="Nothing changed in the file.")
