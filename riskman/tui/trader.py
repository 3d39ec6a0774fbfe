"""The trader's screens: dashboard, positions, rules, enforcement log (tabs of one screen).

Nothing here changes a rule or clears a lock: that is only possible in the admin screens.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Static, TabbedContent, TabPane

from riskman.engine.snapshot import EngineSnapshot
from widgets.account_card import AccountCard
from widgets.health import Banner, StatusStrip, banner_lines
from widgets.tables import (
    LOG_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    RULE_COLUMNS,
    KeyedTable,
    Palette,
    log_rows,
    order_rows,
    position_rows,
    rule_rows,
)

if TYPE_CHECKING:
    from riskman.tui.app import RiskmanApp

NARROW = 120
"""Below this many columns the dashboard stacks each account's panels."""


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
        Binding("b", "demo_order('buy')", "Buy 1", tooltip="Demo: buy 1 contract at the broker"),
        Binding("s", "demo_order('sell')", "Sell 1", tooltip="Demo: sell 1 contract"),
        Binding("i", "demo_instrument", "Instrument", tooltip="Demo: trade the next instrument"),
        Binding("f", "demo_flatten", "Flatten", tooltip="Demo: close everything at the broker"),
        Binding("t", "demo_script", "Scripted trader", tooltip="Demo: a trader on tilt"),
    ]

    def compose(self) -> ComposeResult:
        yield StatusStrip("", id="status")
        yield Banner(id="banner")
        with TabbedContent(initial="dashboard", id="tabs"):
            with TabPane("Dashboard", id="dashboard"), VerticalScroll(id="accounts"):
                yield Label("Waiting for the first account data…", id="no-accounts")
            with TabPane("Positions", id="positions"):
                yield Label("Open positions", classes="section")
                yield KeyedTable(POSITION_COLUMNS, id="positions-table")
                yield Label("Working orders", classes="section")
                yield KeyedTable(ORDER_COLUMNS, id="orders-table")
            with TabPane("Rules", id="rules"):
                yield Static(
                    "Your rules as riskman enforces them. Only the admin screens (a) change them.",
                    classes="hint",
                )
                yield KeyedTable(RULE_COLUMNS, id="rules-table")
            with TabPane("Enforcement log", id="log"):
                yield KeyedTable(LOG_COLUMNS, id="log-table", wrap=True)
        demo = self.riskman.demo
        if demo is not None:
            from riskman.tui.demo_panel import DemoPanel

            yield DemoPanel(demo, id="demo")
        yield Footer()

    def on_mount(self) -> None:
        self._log_head: object = None
        self.ready = True
        app = self.riskman
        if app.snapshot is not None:
            self.show_snapshot(app.snapshot)
        else:
            self.show_phase()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("demo_"):
            return self.riskman.demo is not None
        return True

    async def action_demo_order(self, side: str) -> None:
        from riskman.gateway.models import OrderSide

        desk = self.riskman.demo
        if desk is not None:
            self.run_worker(desk.order(OrderSide.BID if side == "buy" else OrderSide.ASK))

    def action_demo_instrument(self) -> None:
        if self.riskman.demo is not None:
            self.riskman.demo.next_instrument()

    def action_demo_flatten(self) -> None:
        if self.riskman.demo is not None:
            self.run_worker(self.riskman.demo.flatten())

    def action_demo_script(self) -> None:
        if self.riskman.demo is not None:
            self.riskman.demo.toggle_script()

    def on_resize(self, event: events.Resize) -> None:
        # No media queries in Textual CSS: a class lets narrow terminals stack the cards.
        self.set_class(event.size.width < NARROW, "-narrow")

    def action_show_tab(self, tab: str) -> None:
        # Focus moves into the new tab (arrows then scroll it). It must: a focused widget left
        # in the hidden tab would hand focus to its neighbour there, and TabbedContent
        # switches back to the tab that holds the focus.
        self.query_one(TabbedContent).active = tab
        self.query_one(f"#{tab}").query("KeyedTable, #accounts").first().focus()

    @property
    def active_tab(self) -> str:
        return str(self.query_one(TabbedContent).active)

    def show_phase(self) -> None:
        """Before the engine runs: connecting, or why it cannot."""
        app = self.riskman
        strip = self.query_one(StatusStrip)
        banner = self.query_one(Banner)
        if app.phase == "failed":
            strip.show_text("riskman is NOT running: nothing enforces your rules.")
            details = f" Details in {app.log_file}." if app.log_file else ""
            lines = [f"CANNOT CONNECT: {app.start_error}", f"Press q to quit.{details}"]
            banner.say(lines, "error")
        elif app.phase == "stopping":
            banner.say(["Stopping riskman: flushing state…"], "warning")
        else:
            strip.show_text(f"Connecting to {app.source.where}…")
            banner.say([f"CONNECTING to {app.source.where}… nothing is enforced yet."], "warning")

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        app = self.riskman
        zone = app.settings.zone
        now = app.clock.now()
        self.query_one(StatusStrip).show(snapshot, zone, now)
        if app.phase == "stopping":
            self.show_phase()
        else:
            self.query_one(Banner).say(banner_lines(snapshot), "error")
        self._show_accounts(snapshot, zone)
        palette = Palette.of(app)
        self.query_one("#positions-table", KeyedTable).sync(position_rows(snapshot, now, palette))
        self.query_one("#orders-table", KeyedTable).sync(order_rows(snapshot, palette))
        self.query_one("#rules-table", KeyedTable).sync(rule_rows(snapshot, palette))
        self._show_log(snapshot, zone, palette)

    def _show_accounts(self, snapshot: EngineSnapshot, zone: tzinfo) -> None:
        box = self.query_one("#accounts", VerticalScroll)
        cards = {card.account_id: card for card in box.query(AccountCard)}
        for account_id, card in cards.items():
            if snapshot.account(account_id) is None:
                card.remove()
        placeholder = self.query_one("#no-accounts", Label)
        placeholder.display = not snapshot.accounts
        for view in snapshot.accounts:
            shown = cards.get(view.account_id)
            if shown is None:
                box.mount(AccountCard(view, self.riskman.clock.now, zone))
            else:
                shown.show(view, zone)

    def _show_log(self, snapshot: EngineSnapshot, zone: tzinfo, palette: Palette) -> None:
        # The log is newest first; when its newest record is the one shown last time (and the
        # theme is the same), nothing changed.
        head = (snapshot.log[0] if snapshot.log else None, palette, len(snapshot.log))
        if head == self._log_head:
            return
        self._log_head = head
        self.query_one("#log-table", KeyedTable).sync(
            log_rows(
                snapshot.log, zone, palette, {v.account_id: v.name for v in snapshot.accounts}
            ),
            sort_by="time",
        )
