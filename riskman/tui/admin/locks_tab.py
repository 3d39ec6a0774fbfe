"""Admin · Lockouts: the active locks and cooldowns; an unlock asked with a reason ends the
lock after admin.unlock_delay (issue 13)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Static

from riskman.control.interface import ClearLocks, ControlError
from riskman.core.views import EngineSnapshot
from riskman.tui.admin.base import AdminTab
from widgets.countdowns import lock_label
from widgets.formatting import clock_time, countdown
from widgets.tables import KeyedTable

LOCK_COLUMNS = (
    ("account", "Account"),
    ("kind", "Lock"),
    ("rule", "Rule"),
    ("reason", "Reason"),
    ("ends", "Ends"),
)

UNLOCK_COLUMNS = (
    ("account", "Account"),
    ("lock", "Lock"),
    ("reason", "Reason"),
    ("due", "Unlocks at"),
)


class LocksTab(AdminTab):
    def __init__(self) -> None:
        super().__init__("Lockouts", id="admin-locks")

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="admin-pane", can_focus=False):
            yield Static(
                "Active lockouts and cooldowns. Clearing one takes effect after "
                "admin.unlock_delay (30 min by default; the trader sees the countdown): a reason "
                "of at least 10 characters is required and is kept in the audit log. A lock the "
                "trader set on himself ends only on time.",
                classes="hint",
            )
            yield KeyedTable(LOCK_COLUMNS, id="admin-locks-table")
            yield Input(placeholder="Reason (at least 10 characters)", id="clear-reason")
            yield Static("", id="locks-problems", classes="problems")
            with Horizontal(classes="buttons"):
                yield Button("Unlock selected lock (ctrl+s)", id="clear-one", variant="warning")
                yield Button(
                    "Unlock every lock of that account (f8)", id="clear-all", variant="error"
                )
            with Vertical(id="unlock-box"):
                yield Static(
                    "Unlock requests waiting for admin.unlock_delay: withdraw one and the lock "
                    "stays.",
                    classes="hint",
                )
                yield KeyedTable(UNLOCK_COLUMNS, id="unlock-requests")
                yield Static("", id="unlock-problems", classes="problems")
                with Horizontal(classes="buttons"):
                    yield Button(
                        "Withdraw selected unlock request", id="withdraw-unlock", variant="primary"
                    )

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        app = self.riskman
        zone = app.settings.zone
        now = app.clock.now()
        rows = []
        for view in snapshot.accounts:
            for lock in view.locks:
                if lock.until is not None and lock.until <= now:
                    continue
                ends = (
                    f"{clock_time(lock.until, zone, seconds=True)} "
                    f"(in {countdown((lock.until - now).total_seconds())})"
                    if lock.until is not None
                    else lock.unlock
                )
                rows.append(
                    (
                        f"{view.account_id}|{lock.id}",
                        (view.name, lock_label(lock), lock.rule, lock.reason, ends),
                    )
                )
        self.query_one("#admin-locks-table", KeyedTable).sync(rows)
        asked = []
        for view in snapshot.accounts:
            labels = {lock.id: f"{lock_label(lock)} {lock.rule}" for lock in view.locks}
            for unlock in view.unlocks:
                which = (
                    "every lock"
                    if unlock.lock_id is None
                    else labels.get(unlock.lock_id, f"lock {unlock.lock_id}")
                )
                left = countdown(max(0.0, (unlock.due - now).total_seconds()))
                due = f"{clock_time(unlock.due, zone, seconds=True)} (in {left})"
                if unlock.comes_back:
                    due += ", the lock comes back"
                asked.append((str(unlock.id), (view.name, which, unlock.reason, due)))
        self.query_one("#unlock-requests", KeyedTable).sync(asked)
        self.query_one("#unlock-box").display = bool(asked)

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id in ("clear-one", "clear-all"):
            event.stop()
            await self.clear(every=event.button.id == "clear-all")
        elif event.button.id == "withdraw-unlock":
            event.stop()
            await self.withdraw()

    async def withdraw(self) -> None:
        """Withdraw the selected unlock request: the lock stays (audited by the engine)."""
        problems = self.query_one("#unlock-problems", Static)
        table = self.query_one("#unlock-requests", KeyedTable)
        if table.row_count == 0:
            problems.update("There is no unlock request to withdraw.")
            return
        request_id = int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))
        try:
            await self.control.withdraw_unlock(self.session, request_id)
        except ControlError as exc:
            self.admin.refused(exc, problems)
            return
        problems.update("")
        self.riskman.mark_dirty()
        self.notify(f"Unlock request {request_id} withdrawn: the lock stays.", title="Withdrawn")
        await self.admin.load_audit()

    async def save(self) -> None:
        await self.clear(every=False)

    async def clear(self, *, every: bool) -> None:
        problems = self.query_one("#locks-problems", Static)
        table = self.query_one("#admin-locks-table", KeyedTable)
        if table.row_count == 0:
            problems.update("There is no lock to clear.")
            return
        reason_field = self.query_one("#clear-reason", Input)
        reason = reason_field.value.strip()
        if not reason:
            problems.update("A reason is required to clear a lock (it goes to the audit log).")
            reason_field.focus()
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        account, lock_id = (int(part) for part in key.split("|"))
        request = ClearLocks(account=account, lock=None if every else lock_id, reason=reason)
        try:
            asked = await self.control.clear_lockouts(self.session, request)
        except ControlError as exc:
            self.admin.refused(exc, problems)
            reason_field.focus()
            return
        reason_field.value = ""
        due = "" if asked.due is None else clock_time(asked.due, self.riskman.settings.zone)
        problems.update(f"Unlock of account {account} asked: it takes effect at {due}.")
        self.riskman.mark_dirty()
        self.notify(
            f"Account {account} unlocks at {due} (admin.unlock_delay): {reason}",
            title="Unlock asked",
        )
        await self.admin.load_audit()
