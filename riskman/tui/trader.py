"""The trader's screens: dashboard, positions, rules, enforcement log (tabs of one screen).

Nothing here loosens a rule or clears a lock: that is only possible in the admin screens.
The one thing the trader can do here is stricter: lock himself out (`x`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label, Static, TabbedContent, TabPane

from riskman.core.views import AccountView, EnforcementRecord, EngineSnapshot
from riskman.tui.history import HistoryView
from widgets.account_card import AccountList
from widgets.formatting import clock_time
from widgets.health import Banner, StatusStrip, banner_lines, lost_lines
from widgets.live_table import LiveTable, Row
from widgets.tables import (
    LOG_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    RULE_COLUMNS,
    Palette,
    log_cells,
    order_rows,
    position_rows,
    rule_rows,
)

if TYPE_CHECKING:
    from riskman.tui.app import RiskmanApp

LOG_SLICE = 100
"""Enforcement-log rows built per frame when the whole log is (re)built: ~2 ms of the loop."""
LOG_FILL_EVERY = 0.02
"""Seconds between two slices, so events are handled in between."""


class LiveScreen(Screen[Any]):
    """A screen the app feeds with each new engine snapshot (once its on_mount has run)."""

    ready = False

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        raise NotImplementedError

    @property
    def riskman(self) -> RiskmanApp:
        return cast("RiskmanApp", self.app)


class TraderScreen(LiveScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "show_tab('dashboard')", "Dashboard", tooltip="Accounts, P&L, locks"),
        Binding("p", "show_tab('positions')", "Positions", tooltip="Positions and orders"),
        Binding("r", "show_tab('rules')", "Rules", tooltip="Each rule, its limit, % used"),
        Binding("l", "show_tab('log')", "Log", tooltip="Every enforcement action"),
        Binding("h", "show_tab('history')", "History", tooltip="The last 30 trading days"),
        Binding("enter", "open_report", "Breach report", show=False),
        Binding("x", "lock_me_out", "Lock me out", tooltip="Flatten and lock yourself out now"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """Everything but the footer (a screen built on this one adds its own below)."""
        yield StatusStrip("", id="status")
        yield Banner(id="banner")
        yield Static("", id="commitment")
        with TabbedContent(initial="dashboard", id="tabs"):
            with (
                TabPane("Dashboard", id="dashboard"),
                AccountList(self.riskman.clock.now, id="accounts"),
            ):
                yield Label("Waiting for the first account data…", id="no-accounts")
            with TabPane("Positions", id="positions"):
                yield Label("Open positions", classes="section")
                yield LiveTable(POSITION_COLUMNS, id="positions-table")
                yield Label("Working orders", classes="section")
                yield LiveTable(ORDER_COLUMNS, id="orders-table")
            with TabPane("Rules", id="rules"):
                yield Static(
                    "Your rules as riskman enforces them. Only the admin screens (a) change them.",
                    classes="hint",
                )
                yield LiveTable(RULE_COLUMNS, id="rules-table")
            with TabPane("Enforcement log", id="log"):
                yield LiveTable(LOG_COLUMNS, id="log-table", wrap=True)
            with TabPane("History", id="history"):
                yield HistoryView(id="history-view")

    def on_mount(self) -> None:
        self._rows: dict[tuple[str, int], tuple[AccountView, Palette, list[Row]]] = {}
        """The rows each account's view gave, per table: an unchanged view (the engine hands
        out the same object) gives the same rows, which the table does not even compare."""
        self._log_top: EnforcementRecord | None = None
        """The newest record in the log table."""
        self._log_as: tuple[tzinfo, Palette, dict[int, str]] | None = None
        """The zone, palette and account names the log rows were made with."""
        self._log_left: list[EnforcementRecord] = []
        """Older records still to add at the bottom of the log table (a slice per frame)."""
        self._log_fill: Timer | None = None
        self._log_keep = 0
        """How many records the engine's log holds (the table holds as many)."""
        self._log_keys = 0
        self._log_records: dict[str, EnforcementRecord] = {}
        """The record of each log-table row (for its breach report)."""
        self.ready = True
        app = self.riskman
        if app.snapshot is not None:
            self.show_snapshot(app.snapshot)
        else:
            self.show_phase()

    def action_show_tab(self, tab: str) -> None:
        # Focus moves into the new tab (arrows then scroll it). It must: a focused widget left
        # in the hidden tab would hand focus to its neighbour there, and TabbedContent
        # switches back to the tab that holds the focus.
        self.query_one(TabbedContent).active = tab
        self.query_one(f"#{tab}").query("LiveTable, #accounts, HistoryView").first().focus()

    @property
    def active_tab(self) -> str:
        return str(self.query_one(TabbedContent).active)

    def show_phase(self) -> None:
        """Before the engine runs: connecting, or why it cannot."""
        app = self.riskman
        strip = self.query_one(StatusStrip)
        banner = self.query_one(Banner)
        if app.phase == "failed":
            details = f" Details in {app.log_file}." if app.log_file else ""
            if app.control.mode == "attached":
                # This terminal only watches: closing it stops nothing. Whether the guard
                # enforces now is not known from here, so it is not promised either.
                strip.show_text("NOT ATTACHED: this terminal cannot show what riskman enforces.")
                quit_line = (
                    "Press q to close this terminal only: the guard enforces on its own while "
                    f"it runs (riskman status says whether it does).{details}"
                )
            else:
                strip.show_text("riskman is NOT running: nothing enforces your rules.")
                quit_line = f"Press q to quit.{details}"
            banner.say([f"CANNOT CONNECT: {app.start_error}", quit_line], "error")
        elif app.phase == "stopping":
            if app.control.mode == "attached":
                banner.say(["Detaching: riskman goes on enforcing."], "warning")
            else:
                banner.say(["Stopping riskman: flushing state…"], "warning")
        else:
            strip.show_text(f"Connecting to {app.control.where}…")
            banner.say([f"CONNECTING to {app.control.where}… nothing is enforced yet."], "warning")

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        app = self.riskman
        zone = app.zone
        lost = app.control.lost
        strip = self.query_one(StatusStrip)
        strip.show(snapshot, zone, app.clock.now(), mode=app.mode_line(), lost=lost)
        if app.phase == "stopping":
            self.show_phase()
        elif lost is not None:
            self.query_one(Banner).say(lost_lines(lost), "error")
        else:
            self.query_one(Banner).say(banner_lines(snapshot), "error")
        self._show_commitment(snapshot, zone)
        self._show_tab(snapshot, self.active_tab)

    def _show_commitment(self, snapshot: EngineSnapshot, zone: tzinfo) -> None:
        """What waits: an admin's unlock (with its countdown), looser rules pending until the
        reset, accounts riskman does not guard (issue 13). Hidden when there is nothing."""
        now = self.riskman.clock.now()
        lines = []
        for view in snapshot.accounts:
            if not view.guarded:
                lines.append(f"NOT GUARDED: {view.name} — riskman does not watch this account")
            for unlock in view.unlocks:
                lines.append(f"{view.name}: {unlock.describe(now)}")
        for change in snapshot.pending:
            who = "" if change.account is None else f"account {change.account}: "
            when = "" if change.effective is None else f" at {clock_time(change.effective, zone)}"
            lines.append(
                f"PENDING {who}{change.key} {change.old} → {change.new} takes effect at the "
                f"daily reset{when}"
            )
        widget = self.query_one("#commitment", Static)
        text = "\n".join(lines)
        if str(widget.content) != text:
            widget.update(text)
        widget.set_class(bool(lines), "-shown")

    def action_lock_me_out(self) -> None:
        from riskman.tui.modals import LockMeOut

        if self.riskman.phase != "running":
            self.notify("riskman is not running yet.", severity="warning")
            return
        self.app.push_screen(LockMeOut(), self._lock_answer)

    def _lock_answer(self, spec: str | None) -> None:
        if spec:
            self.run_worker(self._lock(spec), exclusive=True, group="lock-me-out")

    async def _lock(self, spec: str) -> None:
        from riskman.control.interface import ControlError, Invalid, LockRequest

        try:
            locks = await self.riskman.control.lock_me_out(
                LockRequest.model_validate({"for": spec})
            )
        except ControlError as exc:
            text = exc.text() if isinstance(exc, Invalid) else str(exc)
            self.notify(text, title="Not locked", severity="error", timeout=12)
            return
        except Exception as exc:  # the screen stays up whatever the engine side does
            self.notify(f"Not locked: {exc}", title="Not locked", severity="error", timeout=12)
            return
        ends = {lock.reason for lock in locks}
        self.notify("; ".join(sorted(ends)) or "nothing to lock", title="Locked out")

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # The tab coming into view was not kept up to date while hidden: bring it up to date
        # before it is drawn.
        snapshot = self.riskman.snapshot
        self.query_one(AccountList).set_shown(event.pane.id == "dashboard")
        if event.pane.id == "history":
            app = self.riskman
            share = app.settings.consistency.max_day_share
            self.run_worker(self.query_one(HistoryView).load(app.control, share))
        if snapshot is not None and event.pane.id:
            self._show_tab(snapshot, event.pane.id)

    def _show_tab(self, snapshot: EngineSnapshot, tab: str) -> None:
        """Update what the tab shows. Only the tab in view is updated on a redraw: work on
        hidden widgets is wasted, and worse, a repaint of a widget that is not on screen makes
        Textual rebuild its map of the whole screen (every widget, every tab) at the next
        paint."""
        app = self.riskman
        zone = app.zone
        if tab == "dashboard":
            self._show_accounts(snapshot, zone)
            return
        palette = Palette.of(app)
        if tab == "positions":
            now = app.clock.now()
            self.query_one("#positions-table", LiveTable).sync(
                [row for view in snapshot.accounts for row in position_rows(view, now, palette)]
            )
            self.query_one("#orders-table", LiveTable).sync(
                self._rows_of("orders", snapshot, palette, order_rows)
            )
        elif tab == "rules":
            self.query_one("#rules-table", LiveTable).sync(
                self._rows_of("rules", snapshot, palette, rule_rows)
            )
        elif tab == "log":
            self._show_log(snapshot, zone, palette)

    def _rows_of(
        self,
        table: str,
        snapshot: EngineSnapshot,
        palette: Palette,
        make: Callable[[AccountView, Palette], list[Row]],
    ) -> list[Row]:
        """Every account's rows of a table, made again only for the accounts that changed."""
        rows: list[Row] = []
        for view in snapshot.accounts:
            key = (table, view.account_id)
            made = self._rows.get(key)
            if made is None or made[0] is not view or made[1] != palette:
                made = (view, palette, make(view, palette))
                self._rows[key] = made
            rows += made[2]
        return rows

    def _show_accounts(self, snapshot: EngineSnapshot, zone: tzinfo) -> None:
        placeholder = self.query_one("#no-accounts", Label)
        if placeholder.display != (not snapshot.accounts):
            placeholder.display = not snapshot.accounts
        self.query_one(AccountList).show(snapshot, zone)

    def _show_log(self, snapshot: EngineSnapshot, zone: tzinfo, palette: Palette) -> None:
        """Add the records that are new since the last redraw at the top of the log table
        (the engine's log is newest first, and a record is the same object from one snapshot
        to the next); build the whole table again only for a new theme, zone or account name,
        then a slice per frame, newest first."""
        log = snapshot.log
        table = self.query_one("#log-table", LiveTable)
        names = {view.account_id: view.name for view in snapshot.accounts}
        made_as = (zone, palette, names)
        new = 0
        for record in log:
            if record is self._log_top:
                break
            new += 1
        self._log_keep = len(log)
        if made_as != self._log_as or (new == len(log) and self._log_top is not None):
            self._log_as = made_as
            self._log_top = log[0] if log else None
            self._log_left = list(log[LOG_SLICE:])
            table.sync(self._log_rows(log[:LOG_SLICE]))
            if self._log_left and self._log_fill is None:
                self._log_fill = self.set_timer(LOG_FILL_EVERY, self._fill_log)
            return
        if new:
            self._log_top = log[0]
            table.add_newest(self._log_rows(log[:new]), keep=len(log))

    def _fill_log(self) -> None:
        self._log_fill = None
        table = self.query_one("#log-table", LiveTable)
        # Records that came in since the rebuild pushed as many of the oldest out of the log.
        room = max(0, self._log_keep - table.row_count)
        left = self._log_left[:room]
        part, self._log_left = left[:LOG_SLICE], left[LOG_SLICE:]
        table.add_oldest(self._log_rows(part))
        if self._log_left:
            self._log_fill = self.set_timer(LOG_FILL_EVERY, self._fill_log)

    def _log_rows(self, records: Sequence[EnforcementRecord]) -> list[Row]:
        assert self._log_as is not None
        zone, palette, names = self._log_as
        rows = []
        if len(self._log_records) > 2 * max(self._log_keep, 1) + len(records):
            table = self.query_one("#log-table", LiveTable)
            self._log_records = {key: self._log_records[key] for key in table.keys}
        for record in records:
            self._log_keys += 1
            self._log_records[str(self._log_keys)] = record
            rows.append((str(self._log_keys), log_cells(record, zone, palette, names)))
        return rows

    def action_open_report(self) -> None:
        """Enter on an enforcement-log entry: its breach report."""
        if self.query_one("#tabs", TabbedContent).active != "log":
            return
        table = self.query_one("#log-table", LiveTable)
        keys = table.keys
        if not keys or not 0 <= table.cursor_row < len(keys):
            return
        record = self._log_records.get(keys[table.cursor_row])
        app = self.riskman
        if record is None:
            return
        from riskman.tui.breach_report import BreachReportModal

        app.push_screen(BreachReportModal(record, app.control, app.zone))
