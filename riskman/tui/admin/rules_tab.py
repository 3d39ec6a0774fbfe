"""Admin · Rules: every rule's fields, for every account (`rules:`) or for one listed
account's own rules (`accounts: [{id, rules}]`)."""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, ContentSwitcher, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from riskman.config import RULE_KEYS, Rules
from riskman.config_writer import NULL
from riskman.control.interface import (
    AccountRules,
    CancelPending,
    ControlError,
    RulesPut,
    RulesState,
)
from riskman.core.views import EngineSnapshot
from riskman.tui.admin.base import AdminTab
from riskman.tui.modals import no_blink
from riskman.tui.rule_form import RuleForm, validate, with_edits
from widgets.formatting import clock_time, countdown
from widgets.tables import KeyedTable

GLOBAL = "global"  # the rules-scope choice for the global `rules:`

PENDING_COLUMNS = (
    ("scope", "Of"),
    ("key", "Key"),
    ("old", "In force"),
    ("new", "Pending"),
    ("effective", "Takes effect"),
)


def _cell(value: Any) -> str:
    """A rule value (plain JSON data) as a table cell."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


class RulesTab(AdminTab):
    def __init__(self, state: RulesState) -> None:
        super().__init__("Rules", id="admin-rules")
        self.state = state
        self._names = {name.key: (name.id, name.title) for name in state.names}
        self._scope: int | None = None  # whose rules the forms edit: None = the global `rules:`

    def compose(self) -> ComposeResult:
        names = self._names
        with Horizontal(id="rules-scope-row"):
            yield Label("Rules of", id="rules-scope-label")
            yield Select(self._scope_options(), value=GLOBAL, allow_blank=False, id="rules-scope")
            yield Button("Use the global rules", id="drop-overrides", disabled=True)
        yield Static(self._scope_hint(), id="rules-scope-hint", classes="hint")
        with Vertical(id="pending-box"):
            yield Static(
                "Looser changes wait for the daily reset. Cancel one and the value in force "
                "stays (nobody can hurry one).",
                classes="hint",
            )
            yield KeyedTable(PENDING_COLUMNS, id="pending-table")
            yield Static("", id="pending-problems", classes="problems")
            with Horizontal(classes="buttons"):
                yield Button("Cancel selected pending change", id="cancel-pending")
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

    def on_mount(self) -> None:
        self.query_one("#rule-list", OptionList).highlighted = 0
        self.query_one("#pending-box").display = False

    # --- pending loosenings (issue 13) --------------------------------------------------------

    def show_snapshot(self, snapshot: EngineSnapshot) -> None:
        zone = self.riskman.settings.zone
        now = self.riskman.clock.now()
        rows = []
        for change in snapshot.pending:
            when = "at the daily reset"
            if change.effective is not None:
                left = countdown(max(0.0, (change.effective - now).total_seconds()))
                when = f"{clock_time(change.effective, zone)} (in {left})"
            scope = "every account" if change.account is None else f"account {change.account}"
            rows.append(
                (
                    f"{'' if change.account is None else change.account}|{change.key}",
                    (scope, change.key, _cell(change.old), _cell(change.new), when),
                )
            )
        self.query_one("#pending-table", KeyedTable).sync(rows)
        self.query_one("#pending-box").display = bool(rows)

    async def cancel_pending(self) -> None:
        """Give up the selected pending loosening: the value in force goes back to the file."""
        problems = self.query_one("#pending-problems", Static)
        table = self.query_one("#pending-table", KeyedTable)
        if table.row_count == 0:
            problems.update("Nothing is pending.")
            return
        row = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        account, key = row.split("|", 1)
        request = CancelPending(account=int(account) if account else None, key=key)
        try:
            result = await self.control.cancel_pending(self.session, request)
        except ControlError as exc:
            self.admin.refused(exc, problems)
            return
        problems.update("")
        self.notify(f"{key}: the value in force stays.", title="Pending change cancelled")
        await self.admin.saved(result)
        self._reload_forms()

    def _rule_form(self, key: str) -> VerticalScroll:
        rule_id, title = self._names.get(key, ("", "(no rule runs this key)"))
        where = f"rules.{key}" if self._scope is None else f"account {self._scope}: {key}"
        model = Rules.model_fields[key].annotation
        assert isinstance(model, type)
        form = RuleForm(key, f"{where}  —  {rule_id} {title}", model, self._scope_rules()[key])
        return VerticalScroll(form, id=f"scroll-{key}", can_focus=False)

    # --- whose rules: every account, or one account's own -------------------------------------

    def _entry(self) -> AccountRules | None:
        for entry in self.state.accounts:
            if entry.id == self._scope:
                return entry
        return None

    def _scope_options(self) -> list[tuple[str, str]]:
        names = {}
        snapshot = self.riskman.snapshot
        if snapshot is not None:
            names = {view.account_id: view.name for view in snapshot.accounts}
        options = [("every account (rules:)", GLOBAL)]
        for entry in self.state.accounts:
            own = "own rules" if entry.own is not None else "global rules"
            name = f" {names[entry.id]}" if entry.id in names else ""
            options.append((f"account {entry.id}{name} ({own})", str(entry.id)))
        return options

    def _scope_rules(self) -> dict[str, Any]:
        entry = self._entry()
        return self.state.rules if entry is None else entry.effective

    def _scope_hint(self) -> str:
        if self._scope is None:
            if not self.state.accounts:
                return (
                    "These rules apply to every account. riskman guards every active account "
                    "now; to give one account its own rules, list the accounts on the "
                    "Accounts tab first."
                )
            return "These rules apply to every account, except the values an account sets itself."
        entry = self._entry()
        own = entry.own if entry is not None else None
        keys = ", ".join(sorted(own)) if own else ""
        sets = f"It sets its own {keys}." if keys else "It has no values of its own yet."
        return (
            f"Account {self._scope}: the fields show the rules it runs. A saved change is written "
            f"under accounts → {self._scope} → rules and applies to this account only. {sets}"
        )

    async def set_state(self, state: RulesState) -> None:
        """The engine's rules after a save (here or on another tab)."""
        self.state = state
        await self.refresh_scopes()

    async def refresh_scopes(self) -> None:
        """The accounts listed, whether each has its own rules, the hint."""
        options = self._scope_options()
        if self._scope is not None and str(self._scope) not in {value for _, value in options}:
            await self._show_scope(None)  # that account is no longer listed
        select = self.query_one("#rules-scope", Select)
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = GLOBAL if self._scope is None else str(self._scope)
        drop = self.query_one("#drop-overrides", Button)
        drop.display = self._scope is not None
        entry = self._entry()
        drop.disabled = entry is None or entry.own is None
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
        if self._scope is None:
            return
        if any(form.dirty for form in self.query(RuleForm)):
            self.notify("Save or undo the rule changes first.", severity="warning")
            return
        if await self._put(RulesPut(account=self._scope, drop_own=True)):
            self._reload_forms()

    async def show_rule(self, key: str) -> None:
        switcher = self.query_one("#rule-forms", ContentSwitcher)
        if not switcher.query(f"#scroll-{key}"):
            await switcher.mount(self._rule_form(key))
            no_blink(self.screen)
        switcher.current = f"scroll-{key}"

    # --- events -----------------------------------------------------------------------------

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save-rules":
            event.stop()
            await self.save()
        elif event.button.id == "drop-overrides":
            event.stop()
            await self.drop_overrides()
        elif event.button.id == "cancel-pending":
            event.stop()
            await self.cancel_pending()

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

    # --- saving -----------------------------------------------------------------------------

    async def save(self) -> None:
        rules = self._scope_rules()
        partial: dict[str, Any] = {}
        bad: list[str] = []
        notes: list[str] = []
        for form in self.query(RuleForm):
            edits, errors = form.edits()
            if edits and not errors:
                errors = validate(form.model, with_edits(rules[form.rule], edits))
            notes += [f"{form.rule}: {text}" for text in form.show_errors(errors)]
            if errors:
                bad.append(form.rule)
            for path, value in edits.items():
                node = partial.setdefault(form.rule, {})
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = None if value is NULL else value  # JSON null: cleared
        problems = self.query_one("#rules-problems", Static)
        if bad:
            problems.update(
                "Not saved: fix the fields marked in red in "
                + ", ".join(bad)
                + "."
                + "".join(f"\n{note}" for note in notes)
            )
            return
        if not partial:
            problems.update("")
            self.notify("No rule was changed.")
            return
        if await self._put(RulesPut(rules=partial, account=self._scope)):
            self._reload_forms()

    async def _put(self, request: RulesPut) -> bool:
        problems = self.query_one("#rules-problems", Static)
        try:
            result = await self.control.put_rules(self.session, request)
        except ControlError as exc:
            self.admin.refused(exc, problems)
            return False
        problems.update("")
        await self.admin.saved(result, unchanged="Nothing changed in the file.")
        return True

    def _reload_forms(self) -> None:
        rules = self._scope_rules()
        for form in self.query(RuleForm):
            form.reload(rules[form.rule])
