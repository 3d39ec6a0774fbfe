"""The admin screens (behind the password): rules, guarded accounts, reset time and holidays,
lockouts, the password, and the audit trail.

Every change is validated as the config file is, written atomically with its comments kept,
applied to the running engine at once, and recorded (old and new values) in the audit table.
The screen locks itself after `admin.idle_lock` without a key press.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import (
    Button,
    ContentSwitcher,
    Footer,
    Input,
    Label,
    OptionList,
    Select,
    SelectionList,
    Static,
    Switch,
    TabbedContent,
    TabPane,
)
from textual.widgets.option_list import Option

from riskman.admin import PasswordError, PasswordStore
from riskman.calendar import HolidayCalendar
from riskman.config import RULE_KEYS, ConfigError, Rules, read_yaml
from riskman.config_writer import KeyPath, update_config, update_holidays
from riskman.engine.snapshot import EngineSnapshot
from riskman.tui.modals import no_blink
from riskman.tui.rule_form import RuleForm, to_text, validate, with_edits
from riskman.tui.trader import LiveScreen
from widgets.countdowns import lock_label
from widgets.formatting import clock_time, countdown
from widgets.health import StatusStrip
from widgets.tables import KeyedTable, Stamp

TABS = {
    "admin-rules": "Rules",
    "admin-accounts": "Accounts",
    "admin-schedule": "Schedule",
    "admin-locks": "Lockouts",
    "admin-password": "Password",
    "admin-audit": "Audit",
}
LOCK_COLUMNS = (
    ("account", "Account"),
    ("kind", "Lock"),
    ("rule", "Rule"),
    ("reason", "Reason"),
    ("ends", "Ends"),
)
HOLIDAY_COLUMNS = (("date", "Date"), ("kind", "Kind"), ("time", "Closes at"), ("name", "Name"))
AUDIT_COLUMNS = (
    ("time", "Time"),
    ("action", "Action"),
    ("target", "What"),
    ("old", "Old"),
    ("new", "New"),
    ("reason", "Reason"),
)
AUDIT_ROWS = 200
GLOBAL = "global"  # the rules-scope choice for the global `rules:`
TAB_ACTIONS = {
    "clear_account": "admin-locks",
    "add_holiday": "admin-schedule",
    "remove_holiday": "admin-schedule",
}


def plain(value: Any) -> Any:
    """A value read from the YAML file as plain data (ruamel's types -> dict, list, scalars)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float | Decimal):
        return float(value)
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def audit_text(value: Any) -> str:
    return "(not set)" if value is None else to_text(plain(value))


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

    def __init__(self) -> None:
        super().__init__(id="admin")
        self._holidays: list[tuple[date, str, time | None]] = []
        self._names: dict[str, tuple[str, str]] = {}
        self._scope: int | None = None  # whose rules the forms edit: None = the global `rules:`

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        app = self.riskman
        settings = app.settings
        yield StatusStrip("", id="status")
        yield Static(
            f"ADMIN · {app.config_path} · changes are validated, saved with comments kept, "
            f"applied live and audited · locks after {countdown(settings.admin.idle_lock)} idle",
            id="admin-header",
        )
        with TabbedContent(initial="admin-rules", id="admin-tabs"):
            with TabPane(TABS["admin-rules"], id="admin-rules"):
                yield from self._compose_rules()
            with (
                TabPane(TABS["admin-accounts"], id="admin-accounts"),
                VerticalScroll(classes="admin-pane", can_focus=False),
            ):
                yield from self._compose_accounts()
            with (
                TabPane(TABS["admin-schedule"], id="admin-schedule"),
                VerticalScroll(classes="admin-pane", can_focus=False),
            ):
                yield from self._compose_schedule()
            with (
                TabPane(TABS["admin-locks"], id="admin-locks"),
                VerticalScroll(classes="admin-pane", can_focus=False),
            ):
                yield from self._compose_locks()
            with (
                TabPane(TABS["admin-password"], id="admin-password"),
                VerticalScroll(classes="admin-pane", can_focus=False),
            ):
                yield from self._compose_password()
            with TabPane(TABS["admin-audit"], id="admin-audit"):
                yield KeyedTable(AUDIT_COLUMNS, id="audit-table")
        yield Footer()

    def _rule_names(self) -> dict[str, tuple[str, str]]:
        """Rule key -> (id, title) for the rules the engine runs."""
        engine = self.riskman.engine
        names = {"contract_weights": ("RULE-015", "Contract weights (option of 001/002)")}
        if engine is not None:
            names.update({rule.key: (rule.id, rule.title) for rule in engine.rules})
        return names

    def _compose_rules(self) -> ComposeResult:
        names = self._names = self._rule_names()
        with Horizontal(id="rules-scope-row"):
            yield Label("Rules of", id="rules-scope-label")
            yield Select(self._scope_options(), value=GLOBAL, allow_blank=False, id="rules-scope")
            yield Button("Use the global rules", id="drop-overrides", disabled=True)
        yield Static(self._scope_hint(), id="rules-scope-hint", classes="hint")
        with Horizontal(id="rules-editor"):
            yield OptionList(
                *[Option(f"{names.get(key, ('', ''))[0]:<9} {key}", id=key) for key in RULE_KEYS],
                id="rule-list",
            )
            # One form is built at first; the others when first shown (mounting ~70 fields
            # at once would hold the event loop, and the engine with it, for a second).
            with ContentSwitcher(initial=f"scroll-{RULE_KEYS[0]}", id="rule-forms"):
                yield self._rule_form(RULE_KEYS[0])
        yield Static("", id="rules-problems", classes="problems")
        with Horizontal(classes="buttons"):
            yield Button("Save rules (ctrl+s)", id="save-rules", variant="primary")

    def _rule_form(self, key: str) -> VerticalScroll:
        rules = self._scope_rules()
        rule_id, title = self._names.get(key, ("", "(no rule runs this key)"))
        where = f"rules.{key}" if self._scope is None else f"account {self._scope}: {key}"
        form = RuleForm(
            key,
            f"{where}  —  {rule_id} {title}",
            type(getattr(rules, key)),
            getattr(rules, key).model_dump(mode="json"),
        )
        return VerticalScroll(form, id=f"scroll-{key}", can_focus=False)

    # --- whose rules: every account, or one account's own (`accounts: [{id, rules}]`) -------

    def _scope_options(self) -> list[tuple[str, str]]:
        settings = self.riskman.settings
        names = {}
        if self.riskman.snapshot is not None:
            names = {view.account_id: view.name for view in self.riskman.snapshot.accounts}
        options = [("every account (rules:)", GLOBAL)]
        for entry in settings.accounts:
            own = "own rules" if entry.rules is not None else "global rules"
            name = f" {names[entry.id]}" if entry.id in names else ""
            options.append((f"account {entry.id}{name} ({own})", str(entry.id)))
        return options

    def _scope_rules(self) -> Rules:
        settings = self.riskman.settings
        return settings.rules if self._scope is None else settings.rules_for(self._scope)

    def _scope_entry(self) -> tuple[int, Any] | None:
        """The index and raw YAML entry of the scoped account in the file's `accounts:`."""
        if self._scope is None:
            return None
        return file_accounts(self.riskman.config_path).get(self._scope)

    def _scope_hint(self) -> str:
        settings = self.riskman.settings
        if self._scope is None:
            if not settings.accounts:
                return (
                    "These rules apply to every account. riskman guards every active account "
                    "now; to give one account its own rules, list the accounts on the "
                    "Accounts tab first."
                )
            return "These rules apply to every account, except the values an account sets itself."
        found = self._scope_entry()
        own = found[1].get("rules") if found and isinstance(found[1], Mapping) else None
        keys = ", ".join(sorted(own)) if isinstance(own, Mapping) and own else ""
        sets = f"It sets its own {keys}." if keys else "It has no values of its own yet."
        return (
            f"Account {self._scope}: the fields show the rules it runs. A saved change is written "
            f"under accounts → {self._scope} → rules and applies to this account only. {sets}"
        )

    def _own_rules(self) -> bool:
        return any(
            entry.id == self._scope and entry.rules is not None
            for entry in self.riskman.settings.accounts
        )

    async def refresh_scopes(self) -> None:
        """After a save: the accounts listed, whether each has its own rules, the hint."""
        options = self._scope_options()
        if self._scope is not None and str(self._scope) not in {value for _, value in options}:
            await self._show_scope(None)  # that account is no longer listed
        select = self.query_one("#rules-scope", Select)
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = GLOBAL if self._scope is None else str(self._scope)
        drop = self.query_one("#drop-overrides", Button)
        drop.display = self._scope is not None
        drop.disabled = not self._own_rules()
        self.query_one("#rules-scope-hint", Static).update(self._scope_hint())

    async def change_scope(self, scope: int | None) -> None:
        if scope == self._scope:
            return
        dirty = [form.rule for form in self.query(RuleForm) if form.dirty]
        if dirty:
            with self.prevent(Select.Changed):
                self.query_one("#rules-scope", Select).value = (
                    GLOBAL if self._scope is None else str(self._scope)
                )
            self.notify(
                f"Save or undo the changes in {', '.join(dirty)} first.",
                title="Unsaved rule changes",
                severity="warning",
            )
            return
        await self._show_scope(scope)
        await self.refresh_scopes()

    async def _show_scope(self, scope: int | None) -> None:
        """Rebuild the forms (built lazily, as at first) with `scope`'s rules."""
        self._scope = scope
        switcher = self.query_one("#rule-forms", ContentSwitcher)
        current = (switcher.current or f"scroll-{RULE_KEYS[0]}").removeprefix("scroll-")
        switcher.current = None
        await switcher.remove_children()
        await self.show_rule(current)
        self.query_one("#rules-problems", Static).update("")

    async def drop_overrides(self) -> None:
        """The scoped account goes back to the global rules (its `rules:` removed)."""
        found = self._scope_entry()
        if self._scope is None or found is None:
            return
        if any(form.dirty for form in self.query(RuleForm)):
            self.notify("Save or undo the rule changes first.", severity="warning")
            return
        if await self.write_config({("accounts", found[0], "rules"): None}, "rules-problems"):
            self._reload_forms()

    async def show_rule(self, key: str) -> None:
        switcher = self.query_one("#rule-forms", ContentSwitcher)
        if not switcher.query(f"#scroll-{key}"):
            await switcher.mount(self._rule_form(key))
            no_blink(self)
        switcher.current = f"scroll-{key}"

    def _compose_accounts(self) -> ComposeResult:
        settings = self.riskman.settings
        yield Static(
            "Which accounts riskman guards. With “every active account” on, riskman guards "
            "each account the gateway lists as active (accounts: [] in the file).",
            classes="hint",
        )
        with Horizontal(classes="field-row"):
            yield Label("Guard every active account", classes="field-name")
            yield Switch(not settings.account_ids, id="guard-all")
        yield SelectionList[int](id="account-list")
        yield Static("", id="accounts-problems", classes="problems")
        with Horizontal(classes="buttons"):
            yield Button("Save accounts (ctrl+s)", id="save-accounts", variant="primary")

    def _compose_schedule(self) -> ComposeResult:
        settings = self.riskman.settings
        with Horizontal(classes="field-row"):
            yield Label('daily_reset  (time of day "HH:MM")', classes="field-name")
            yield Input(settings.daily_reset.strftime("%H:%M"), id="daily-reset")
        with Horizontal(classes="field-row"):
            yield Label("timezone  (IANA, e.g. America/Chicago)", classes="field-name")
            yield Input(settings.timezone, id="timezone")
        yield Label(f"Holidays ({settings.holidays_file.name})", classes="section")
        yield KeyedTable(HOLIDAY_COLUMNS, id="holiday-table")
        with Horizontal(classes="field-row"):
            yield Input(placeholder="YYYY-MM-DD", id="holiday-date")
            yield Input(placeholder="HH:MM (early close)", id="holiday-time")
            yield Input(placeholder="name", id="holiday-name")
        with Horizontal(classes="buttons"):
            yield Button("Add closed day (f8)", id="add-closed")
            yield Button("Add early close (f8 with a time)", id="add-early")
            yield Button("Remove selected (f9)", id="remove-holiday")
        yield Static("", id="schedule-problems", classes="problems")
        with Horizontal(classes="buttons"):
            yield Button(
                "Save schedule and holidays (ctrl+s)", id="save-schedule", variant="primary"
            )

    def _compose_locks(self) -> ComposeResult:
        yield Static(
            "Active lockouts and cooldowns. Clearing one lets the trader trade again at once: "
            "a reason is required and is kept in the audit log.",
            classes="hint",
        )
        yield KeyedTable(LOCK_COLUMNS, id="admin-locks-table")
        yield Input(placeholder="Reason (required)", id="clear-reason")
        yield Static("", id="locks-problems", classes="problems")
        with Horizontal(classes="buttons"):
            yield Button("Clear selected lock (ctrl+s)", id="clear-one", variant="warning")
            yield Button("Clear every lock of that account (f8)", id="clear-all", variant="error")

    def _compose_password(self) -> ComposeResult:
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

    async def on_mount(self) -> None:
        no_blink(self)
        self.set_interval(1.0, self.check_idle)
        self.query_one("#rule-list", OptionList).highlighted = 0
        self.query_one("#account-list", SelectionList).disabled = self.query_one(
            "#guard-all", Switch
        ).value
        self._load_holidays()
        self.ready = True
        if self.riskman.snapshot is not None:
            self.show_snapshot(self.riskman.snapshot)
        await self.refresh_scopes()  # the account names, now that a snapshot is there
        self.load_accounts()
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
        await self.clear_locks(every=True)

    def action_add_holiday(self) -> None:
        # An early close when a closing time is given, else a full closure.
        self._add_holiday(early=bool(self.query_one("#holiday-time", Input).value.strip()))

    def action_remove_holiday(self) -> None:
        self._remove_holiday()

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
        tab = self.active_tab
        if tab == "admin-rules":
            await self.save_rules()
        elif tab == "admin-accounts":
            await self.save_accounts()
        elif tab == "admin-schedule":
            await self.save_schedule()
        elif tab == "admin-locks":
            await self.clear_locks(every=False)
        elif tab == "admin-password":
            await self.change_password()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "save-rules": self.save_rules,
            "save-accounts": self.save_accounts,
            "save-schedule": self.save_schedule,
            "change-password": self.change_password,
        }
        button = event.button.id or ""
        if button in actions:
            await actions[button]()
        elif button in ("clear-one", "clear-all"):
            await self.clear_locks(every=button == "clear-all")
        elif button in ("add-closed", "add-early"):
            self._add_holiday(early=button == "add-early")
        elif button == "remove-holiday":
            self._remove_holiday()
        elif button == "drop-overrides":
            await self.drop_overrides()

    async def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "rule-list" and event.option.id:
            await self.show_rule(event.option.id)

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        # Enter on a rule: go to its first field.
        if event.option_list.id == "rule-list" and event.option.id:
            await self.show_rule(event.option.id)
            self.query_one(f"#scroll-{event.option.id}").query(
                "Switch, Input, Select"
            ).first().focus()

    async def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "rules-scope":
            value = str(event.value)
            await self.change_scope(None if value == GLOBAL else int(value))

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "guard-all":
            self.query_one("#account-list", SelectionList).disabled = event.value

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()  # the footer shows the new tab's own actions
        if event.pane.id == "admin-audit":
            await self.load_audit()

    # --- live data -------------------------------------------------------------------------

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        app = self.riskman
        zone = app.settings.zone
        now = app.clock.now()
        self.query_one(StatusStrip).show(snapshot, zone, now)
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

    async def load_audit(self) -> None:
        engine = self.riskman.engine
        if engine is None:
            return
        records = await engine.db.fetchall(
            "SELECT id, ts, action, target, old_value, new_value, reason FROM admin_audit "
            "ORDER BY id DESC LIMIT ?",
            (AUDIT_ROWS,),
        )
        zone = self.riskman.settings.zone
        from riskman.storage.db import from_db_time

        rows = []
        for record in records:
            at = from_db_time(record["ts"])
            stamp = (
                Stamp(at, at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"))
                if at is not None
                else ""
            )
            rows.append(
                (
                    str(record["id"]),
                    (
                        stamp,
                        record["action"],
                        record["target"],
                        record["old_value"] or "",
                        record["new_value"] or "",
                        record["reason"] or "",
                    ),
                )
            )
        self.query_one("#audit-table", KeyedTable).sync(rows, sort_by="time")

    def load_accounts(self) -> None:
        self.run_worker(self._load_accounts(), group="accounts", exclusive=True)

    async def _load_accounts(self) -> None:
        engine = self.riskman.engine
        configured = set(self.riskman.settings.account_ids)
        names: dict[int, str] = {}
        if engine is not None:
            try:
                for account in await engine.gateway.search_accounts(only_active=False):
                    names[account.id] = account.name
            except Exception as exc:  # the gateway may be down: the configured ids still show
                self.query_one("#accounts-problems", Static).update(
                    f"Could not list the profile's accounts from the gateway: {exc}"
                )
            if self.riskman.snapshot is not None:
                for view in self.riskman.snapshot.accounts:
                    names.setdefault(view.account_id, view.name)
        for account_id in configured:
            names.setdefault(account_id, "(not listed by the gateway)")
        selection = self.query_one("#account-list", SelectionList)
        selection.clear_options()
        selection.add_options(
            [
                (f"{account_id}  {name}", account_id, account_id in configured)
                for account_id, name in sorted(names.items())
            ]
        )

    # --- saving ----------------------------------------------------------------------------

    async def write_config(self, changes: Mapping[KeyPath, Any], problems_id: str) -> bool:
        """Write, apply and audit `changes`; show the loader's problems when it refuses them."""
        app = self.riskman
        engine = app.engine
        problems = self.query_one(f"#{problems_id}", Static)
        if engine is None:
            return False
        try:
            settings, applied = await asyncio.to_thread(update_config, app.config_path, changes)
        except ConfigError as exc:
            problems.update("Not saved (the file is unchanged):\n" + "\n".join(exc.problems))
            return False
        except OSError as exc:
            problems.update(f"Not saved: cannot write {app.config_path}: {exc.strerror}")
            return False
        problems.update("")
        await app.apply_settings(settings)
        await self.refresh_scopes()
        for change in applied:
            await engine.audit(
                "config", change.key, old=audit_text(change.old), new=audit_text(change.new)
            )
        if applied:
            listed = ", ".join(
                f"{c.key}: {audit_text(c.old)} → {audit_text(c.new)}" for c in applied[:3]
            )
            more = f" (+{len(applied) - 3} more)" if len(applied) > 3 else ""
            self.notify(f"{listed}{more}", title="Saved and applied")
        else:
            self.notify("Nothing changed in the file.", title="Saved")
        await self.load_audit()
        return True

    async def save_rules(self) -> None:
        rules = self._scope_rules()
        prefix: KeyPath = ("rules",)
        if self._scope is not None:
            found = self._scope_entry()
            if found is None:
                self.query_one("#rules-problems", Static).update(
                    f"Not saved: account {self._scope} is no longer listed in "
                    f"{self.riskman.config_path}."
                )
                return
            prefix = ("accounts", found[0], "rules")
        changes: dict[KeyPath, Any] = {}
        bad: list[str] = []
        notes: list[str] = []
        for form in self.query(RuleForm):
            edits, errors = form.edits()
            if edits and not errors:
                base = getattr(rules, form.rule).model_dump(mode="json")
                errors = validate(form.model, with_edits(base, edits))
            notes += [f"{form.rule}: {text}" for text in form.show_errors(errors)]
            if errors:
                bad.append(form.rule)
            for path, value in edits.items():
                changes[(*prefix, form.rule, *path)] = value
        problems = self.query_one("#rules-problems", Static)
        if bad:
            problems.update(
                "Not saved: fix the fields marked in red in "
                + ", ".join(bad)
                + "."
                + "".join(f"\n{note}" for note in notes)
            )
            return
        if not changes:
            problems.update("")
            self.notify("No rule was changed.")
            return
        if await self.write_config(changes, "rules-problems"):
            self._reload_forms()

    def _reload_forms(self) -> None:
        rules = self._scope_rules()
        for form in self.query(RuleForm):
            form.reload(getattr(rules, form.rule).model_dump(mode="json"))

    async def save_accounts(self) -> None:
        app = self.riskman
        problems = self.query_one("#accounts-problems", Static)
        if self.query_one("#guard-all", Switch).value:
            wanted: list[Any] = []
        else:
            chosen = sorted(self.query_one("#account-list", SelectionList).selected)
            if not chosen:
                problems.update(
                    "Select at least one account, or switch on “Guard every active account”."
                )
                return
            # Keep each kept account's own entry (it may carry per-account rules).
            entries = file_accounts(app.config_path)
            wanted = [entries.get(account_id, (0, account_id))[1] for account_id in chosen]
        await self.write_config({("accounts",): wanted}, "accounts-problems")

    async def save_schedule(self) -> None:
        app = self.riskman
        engine = app.engine
        problems = self.query_one("#schedule-problems", Static)
        changes: dict[KeyPath, Any] = {}
        reset = self.query_one("#daily-reset", Input).value.strip()
        zone = self.query_one("#timezone", Input).value.strip()
        if reset != app.settings.daily_reset.strftime("%H:%M"):
            changes[("daily_reset",)] = reset
        if zone != app.settings.timezone:
            changes[("timezone",)] = zone
        if changes and not await self.write_config(changes, "schedule-problems"):
            return
        before = HolidayCalendar.load(app.settings.holidays_file)
        old = [(h.day, h.name, h.early_close) for h in before]
        if sorted(old) == sorted(self._holidays) or engine is None:
            if not changes:
                self.notify("Nothing to save.")
            return
        closed = [{"date": d, "name": n} for d, n, t in self._holidays if t is None]
        early = [{"date": d, "time": t, "name": n} for d, n, t in self._holidays if t is not None]
        try:
            await asyncio.to_thread(update_holidays, app.settings.holidays_file, closed, early)
        except ConfigError as exc:
            problems.update("Holidays not saved (file unchanged):\n" + "\n".join(exc.problems))
            return
        engine.reload_calendar()
        added = sorted(set(self._holidays) - set(old))
        removed = sorted(set(old) - set(self._holidays))
        await engine.audit(
            "holidays",
            str(app.settings.holidays_file.name),
            old="; ".join(_holiday_text(h) for h in removed) or "-",
            new="; ".join(_holiday_text(h) for h in added) or "-",
        )
        problems.update("")
        self.notify(f"{len(added)} added, {len(removed)} removed", title="Holidays saved")
        await self.load_audit()

    def _load_holidays(self) -> None:
        calendar = HolidayCalendar.load(self.riskman.settings.holidays_file)
        self._holidays = [(h.day, h.name, h.early_close) for h in calendar]
        self._show_holidays()

    def _show_holidays(self) -> None:
        rows = [
            (
                day.isoformat(),
                (
                    day.isoformat(),
                    "closed" if close is None else "early close",
                    "" if close is None else close.strftime("%H:%M"),
                    name,
                ),
            )
            for day, name, close in sorted(self._holidays)
        ]
        self.query_one("#holiday-table", KeyedTable).sync(rows)

    def _add_holiday(self, *, early: bool) -> None:
        problems = self.query_one("#schedule-problems", Static)
        text = self.query_one("#holiday-date", Input).value.strip()
        name = self.query_one("#holiday-name", Input).value.strip() or "holiday"
        try:
            day = date.fromisoformat(text)
        except ValueError:
            problems.update(f"{text!r} is not a date YYYY-MM-DD.")
            return
        close = None
        if early:
            raw = self.query_one("#holiday-time", Input).value.strip()
            try:
                close = time.fromisoformat(raw)
            except ValueError:
                problems.update(f"{raw!r} is not a time HH:MM (the early close).")
                return
        self._holidays = [h for h in self._holidays if h[0] != day] + [(day, name, close)]
        problems.update(f"{day} added: save to write it.")
        self._show_holidays()

    def _remove_holiday(self) -> None:
        table = self.query_one("#holiday-table", KeyedTable)
        if table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self._holidays = [h for h in self._holidays if h[0].isoformat() != key]
        self.query_one("#schedule-problems", Static).update(f"{key} removed: save to write it.")
        self._show_holidays()

    async def clear_locks(self, *, every: bool) -> None:
        app = self.riskman
        engine = app.engine
        problems = self.query_one("#locks-problems", Static)
        table = self.query_one("#admin-locks-table", KeyedTable)
        if engine is None or table.row_count == 0:
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
        cleared = await engine.clear_lockout(account, reason, lock_id=None if every else lock_id)
        reason_field.value = ""
        problems.update("")
        app.mark_dirty()
        self.notify(
            f"{len(cleared)} lock(s) of account {account} cleared: {reason}", title="Cleared"
        )
        await self.load_audit()

    async def change_password(self) -> None:
        app = self.riskman
        problems = self.query_one("#password-problems", Static)
        first = self.query_one("#new-password", Input)
        second = self.query_one("#repeat-password", Input)
        if first.value != second.value:
            second.value = ""
            problems.update("The two passwords differ.")
            return
        store = PasswordStore(app.settings.password_file)
        try:
            await asyncio.to_thread(store.set, first.value)
        except PasswordError as exc:
            problems.update(f"Not changed: {exc}.")
            return
        first.value = second.value = ""
        problems.update("")
        if app.engine is not None:
            await app.engine.audit("password", "admin password", old=None, new="changed")
        self.notify("The admin password was changed.", title="Password")
        await self.load_audit()


def file_accounts(path: Path) -> dict[int, tuple[int, Any]]:
    """The file's `accounts:` as written: id -> (index in the list, raw entry), a bare id or
    a mapping with its own `rules`. Empty when the file no longer reads (a save says why)."""
    try:
        raw = read_yaml(path).get("accounts") or []
    except Exception:
        return {}
    entries: dict[int, tuple[int, Any]] = {}
    for index, entry in enumerate(raw):
        entry_id: Any = entry.get("id") if isinstance(entry, Mapping) else entry
        try:
            entries[int(entry_id)] = (index, entry)
        except (TypeError, ValueError):
            continue
    return entries


def _holiday_text(holiday: tuple[date, str, time | None]) -> str:
    day, name, close = holiday
    return f"{day} {name}" + (f" (closes {close.strftime('%H:%M')})" if close else " (closed)")
