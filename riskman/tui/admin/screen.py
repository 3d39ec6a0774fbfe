"""The admin screen: a header, one tab per concern (each in its own module), the idle lock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.widgets import Footer, Static, TabbedContent

from riskman.config import OVERLAY_NAME
from riskman.config_writer import admin_target
from riskman.control.interface import (
    Control,
    ControlError,
    Invalid,
    RulesState,
    SaveResult,
    ScheduleState,
    Session,
)
from riskman.core.views import EngineSnapshot
from riskman.tui.admin.accounts_tab import AccountsTab
from riskman.tui.admin.audit_tab import AuditTab
from riskman.tui.admin.base import AdminTab
from riskman.tui.admin.locks_tab import LocksTab
from riskman.tui.admin.password_tab import PasswordTab
from riskman.tui.admin.rules_tab import RulesTab
from riskman.tui.admin.schedule_tab import ScheduleTab
from riskman.tui.modals import no_blink
from riskman.tui.trader import LiveScreen
from widgets.formatting import countdown
from widgets.health import StatusStrip

TAB_ACTIONS = {
    "clear_account": "admin-locks",
    "add_holiday": "admin-schedule",
    "remove_holiday": "admin-schedule",
}


@dataclass(frozen=True, slots=True)
class AdminData:
    """What the admin screen shows from its first frame (fetched before it opens)."""

    session: Session
    rules: RulesState
    schedule: ScheduleState


class AdminScreen(LiveScreen):
    AUTO_FOCUS = "#rule-list"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Lock admin", tooltip="Lock the admin screens and go back"),
        Binding("ctrl+s", "save", "Save / apply", tooltip="Save this tab's changes"),
        Binding("f2", "tab('admin-rules')", "Rules"),
        Binding("f3", "tab('admin-accounts')", "Accounts"),
        Binding("f4", "tab('admin-schedule')", "Schedule"),
        Binding("f5", "tab('admin-locks')", "Lockouts"),
        Binding("f6", "tab('admin-password')", "Password"),
        Binding("f7", "tab('admin-audit')", "Audit"),
        # Tab-specific actions: shown (and active) only on their tab.
        Binding("f8", "clear_account", "Clear all of account"),
        Binding("f8", "add_holiday", "Add holiday"),
        Binding("f9", "remove_holiday", "Remove holiday"),
    ]

    def __init__(self, data: AdminData) -> None:
        super().__init__(id="admin")
        self.data = data

    @property
    def control(self) -> Control:
        return self.riskman.control

    @property
    def session(self) -> Session:
        return self.data.session

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        app = self.riskman
        yield StatusStrip("", id="status")
        yield Static(
            f"ADMIN · {_saved_to(app.config_path, app.settings.admin_overlay)} · changes are "
            "validated, saved with comments kept, "
            f"applied live and audited · locks after {countdown(app.settings.admin.idle_lock)} "
            "idle",
            id="admin-header",
        )
        with TabbedContent(initial="admin-rules", id="admin-tabs"):
            yield RulesTab(self.data.rules)
            yield AccountsTab(guard_all=not self.data.rules.accounts)
            yield ScheduleTab(self.data.schedule)
            yield LocksTab()
            yield PasswordTab()
            yield AuditTab()
        yield Footer()

    async def on_mount(self) -> None:
        no_blink(self)
        self.set_interval(1.0, self.check_idle)
        self.ready = True
        if self.riskman.snapshot is not None:
            self.show_snapshot(self.riskman.snapshot)
        await self.query_one(
            RulesTab
        ).refresh_scopes()  # the account names, now a snapshot is there
        self.query_one(AccountsTab).load()
        await self.load_audit()

    # --- gating ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.riskman.admin_unlocked and action != "leave":
            return False
        if action in TAB_ACTIONS:
            try:
                return self.active_tab == TAB_ACTIONS[action]
            except NoMatches:  # asked while composing
                return False
        return True

    async def action_clear_account(self) -> None:
        await self.query_one(LocksTab).clear(every=True)

    def action_add_holiday(self) -> None:
        self.query_one(ScheduleTab).add_holiday()

    def action_remove_holiday(self) -> None:
        self.query_one(ScheduleTab).remove_holiday()

    def check_idle(self) -> None:
        app = self.riskman
        idle = (app.clock.now() - app.last_input).total_seconds()
        if idle >= app.settings.admin.idle_lock:
            app.lock_admin(f"Admin locked after {countdown(idle)} without a key.")

    def action_leave(self) -> None:
        self.riskman.lock_admin("Admin locked.")

    def action_tab(self, tab: str) -> None:
        self.query_one("#admin-tabs", TabbedContent).active = tab

    @property
    def active_tab(self) -> str:
        return str(self.query_one("#admin-tabs", TabbedContent).active)

    async def action_save(self) -> None:
        pane = self.query_one("#admin-tabs", TabbedContent).active_pane
        if isinstance(pane, AdminTab):
            await pane.save()

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()  # the footer shows the new tab's own actions
        if event.pane.id == "admin-audit":
            await self.load_audit()

    # --- live data -------------------------------------------------------------------------

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        app = self.riskman
        self.query_one(StatusStrip).show(
            snapshot,
            app.settings.zone,
            app.clock.now(),
            mode=app.mode_line(),
            lost=app.control.lost,
        )
        self.query_one(LocksTab).show_snapshot(snapshot)
        self.query_one(RulesTab).show_snapshot(snapshot)

    async def load_audit(self) -> None:
        await self.query_one(AuditTab).load()

    # --- saving ----------------------------------------------------------------------------

    async def saved(self, result: SaveResult, *, unchanged: str = "") -> None:
        """After a save through the interface: say what changed (or `unchanged`), show the
        engine's new configuration everywhere, and the new audit lines."""
        changes = result.changes
        if changes:
            listed = ", ".join(f"{c.key}: {c.old} → {c.new}" for c in changes[:3])
            more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
            title = "Saved" if result.pending else "Saved and applied"
            # The guard keeps admin changes in its admin overlay, not in the config file.
            overlay = Path(result.saved_to).name == OVERLAY_NAME
            where = f" (in the admin overlay {result.saved_to})" if overlay else ""
            self.notify(f"{listed}{more}{where}", title=title)
        if result.pending:
            # Looser values wait for the daily reset (issue 13): say so, with when.
            waits = ", ".join(f"{p['key']} → {p['to']}" for p in result.pending[:3])
            more = f" (+{len(result.pending) - 3} more)" if len(result.pending) > 3 else ""
            self.notify(
                f"{waits}{more}: looser, so it takes effect at the daily reset",
                title="Pending until the reset",
                severity="warning",
                timeout=12,
            )
        if result.holidays_added or result.holidays_removed:
            self.notify(
                f"{len(result.holidays_added)} added, {len(result.holidays_removed)} removed",
                title="Holidays saved",
            )
        elif not changes and unchanged:
            self.notify(unchanged)
        await self.riskman.settings_saved()
        try:
            rules = await self.control.get_rules(self.session)
        except ControlError as exc:
            self.notify(str(exc), title="Admin", severity="error")
        else:
            await self.query_one(RulesTab).set_state(rules)
        await self.load_audit()

    def refused(self, exc: ControlError, problems: Static) -> None:
        """A command the engine refused: the problems under the tab's fields."""
        problems.update(exc.text() if isinstance(exc, Invalid) else f"Not saved: {exc}")


def _saved_to(config: Path, overlay: Path) -> str:
    """Where an admin change will be written, for the header: the config file, or the admin
    overlay when the guard may not write the file (`admin_target`)."""
    try:
        target = admin_target(config, overlay)
    except OSError:
        return str(config)
    return str(config) if target == config else f"{config} + admin overlay {target}"
