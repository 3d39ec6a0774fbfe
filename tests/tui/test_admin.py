"""The admin screens: the password gate and its throttle, editing rules (validated, written with
comments kept, applied live, audited), clearing a lockout, idle re-lock, first run."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Input, OptionList, Select, Switch

from riskman.admin import PasswordStore
from riskman.config import Settings, load_config
from riskman.tui.admin import AdminScreen
from riskman.tui.admin.rules_tab import RulesTab
from riskman.tui.app import RiskmanApp
from riskman.tui.modals import PasswordModal
from riskman.tui.trader import TraderScreen
from tests.tui.conftest import (
    ACC_A,
    ACC_B,
    CONFIG,
    PASSWORD,
    SIZE,
    engine_of,
    make_app,
    running,
    text_of,
    until,
    write_config,
)
from widgets.live_table import LiveTable
from widgets.tables import KeyedTable


async def audit_rows(app: RiskmanApp, action: str) -> list[Any]:
    return await engine_of(app).db.fetchall(
        "SELECT target, old_value, new_value, reason FROM admin_audit WHERE action = ? ORDER BY id",
        (action,),
    )


async def type_password(pilot: Any, password: str) -> None:
    app = pilot.app
    await until(pilot, lambda: not app.screen.query_one("#password", Input).disabled)
    app.screen.query_one("#password", Input).value = password
    await pilot.press("enter")


async def unlock(pilot: Any) -> AdminScreen:
    app = pilot.app
    await pilot.press("a")
    await until(pilot, lambda: isinstance(app.screen, PasswordModal))
    await type_password(pilot, PASSWORD)
    await until(pilot, lambda: isinstance(app.screen, AdminScreen))
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, AdminScreen)
    return screen


async def trader_rule_limit_reads(pilot: Any, row: str, limit: str) -> None:
    """Lock admin, open the trader's Rules tab, and wait for `row`'s limit to read `limit`."""
    app = pilot.app
    await pilot.press("escape")
    await until(pilot, lambda: isinstance(app.screen, TraderScreen))
    await pilot.press("r")
    table = app.screen.query_one("#rules-table", LiveTable)
    await until(pilot, lambda: str(table.cells(row)[4]) == limit)


async def until_notified(pilot: Any, app: RiskmanApp, title: str) -> None:
    """Until the screen said `title` (a save says so once it was applied and audited)."""
    await until(pilot, lambda: any(n.title == title for n in app._notifications))


def feedback(app: RiskmanApp) -> str:
    screen = app.screen
    assert isinstance(screen, PasswordModal)
    return screen.feedback


async def test_three_wrong_passwords_lock_the_admin_screens_for_a_delay(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PasswordModal))
        await type_password(pilot, "nope-nope-1")
        await until(pilot, lambda: "2 more wrong passwords" in feedback(app))
        await type_password(pilot, "nope-nope-2")
        await until(pilot, lambda: "1 more wrong password " in feedback(app))
        await type_password(pilot, "nope-nope-3")
        await until(pilot, lambda: "locked" in feedback(app))
        assert "Try again in 0:30" in feedback(app)
        field = app.screen.query_one("#password", Input)
        assert field.disabled
        # Even the right password is refused while locked: the input does not take it.
        assert not isinstance(app.screen, AdminScreen)
        assert [row["reason"] for row in await audit_rows(app, "admin_locked")] == [
            "3 wrong passwords in a row"
        ]
        await app.clock.advance(20)  # type: ignore[attr-defined]
        await until(pilot, lambda: "Try again in 0:10" in feedback(app))
        await app.clock.advance(11)  # type: ignore[attr-defined]
        await until(pilot, lambda: not field.disabled)
        await type_password(pilot, PASSWORD)
        await until(pilot, lambda: isinstance(app.screen, AdminScreen))


async def test_the_throttle_survives_closing_the_password_dialog(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("a")
        for attempt in range(3):
            await type_password(pilot, f"wrong-{attempt}-password")
            await until(
                pilot, lambda a=attempt: "wrong" in feedback(app) or "locked" in feedback(app)
            )
        await until(pilot, lambda: "locked" in feedback(app))
        await pilot.press("escape")
        await pilot.press("a")
        await until(
            pilot, lambda: isinstance(app.screen, PasswordModal) and "locked" in feedback(app)
        )
        assert app.screen.query_one("#password", Input).disabled


async def test_edit_a_limit_saves_the_file_with_its_comments_and_the_engine_uses_it(
    app: RiskmanApp, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        rules = screen.query_one("#rule-list", OptionList)
        rules.focus()
        rules.highlighted = rules.get_option_index("daily_realized_loss")
        await pilot.pause()
        field = screen.query_one("#f-daily_realized_loss--limit", Input)
        assert field.value == "300"
        field.value = "250"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: engine_of(app).settings.rules.daily_realized_loss.limit == 250)
        await until_notified(pilot, app, "Saved and applied")  # applied, then audited
        await until(pilot, lambda: app.settings.rules.daily_realized_loss.limit == 250)
        text = text_of(config_path)
        assert "    limit: 250   # keep this comment\n" in text
        assert text.startswith("# riskman test configuration: these comments must survive")
        assert "# RULE-001: at most this many contracts open." in text
        assert app.settings.rules.daily_realized_loss.limit == Decimal(250)
        rows = await audit_rows(app, "config")
        assert [(r["target"], r["old_value"], r["new_value"]) for r in rows] == [
            ("rules.daily_realized_loss.limit", "300", "250")
        ]
        # The engine enforces the new limit: account B's rule now reads against -$250.
        await trader_rule_limit_reads(pilot, f"{ACC_B}|RULE-003", "-$250.00")


async def test_an_invalid_value_is_refused_with_the_reason_and_the_file_is_untouched(
    app: RiskmanApp, config_path: Path
) -> None:
    before = text_of(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        screen.query_one("#f-max_contracts--limit", Input).value = "-2"
        await screen.query_one(RulesTab).show_rule("daily_realized_loss")
        screen.query_one("#f-daily_realized_loss--limit", Input).value = "lots"
        await pilot.press("ctrl+s")
        await pilot.pause()
        problems = str(screen.query_one("#rules-problems").render())
        assert "Not saved" in problems and "max_contracts" in problems
        error = str(screen.query_one("#f-max_contracts--limit--error").render())
        assert "greater than 0" in error
        assert screen.query_one("#f-max_contracts--limit", Input).has_class("-invalid")
        assert "daily_realized_loss" in problems
        assert text_of(config_path) == before
        assert await audit_rows(app, "config") == []


async def test_every_rule_key_of_the_config_has_an_editor(app: RiskmanApp) -> None:
    from riskman.config import RULE_KEYS, Rules
    from riskman.tui.rule_form import rule_fields, widget_id

    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        for key in RULE_KEYS:
            await screen.query_one(RulesTab).show_rule(key)
            for spec in rule_fields(type(getattr(Rules(), key))):
                assert screen.query(f"#{widget_id(key, spec.path)}"), f"{key}.{spec.key}"


async def test_an_unlock_needs_a_real_reason_and_takes_effect_after_the_delay(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        await pilot.press("f5")
        table = screen.query_one("#admin-locks-table", KeyedTable)
        await until(pilot, lambda: table.row_count == 2)
        table.focus()
        row = next(i for i, key in enumerate(table.keys) if key.startswith(f"{ACC_B}|"))
        table.move_cursor(row=row)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "reason is required" in str(screen.query_one("#locks-problems").render())
        engine = engine_of(app)
        screen.query_one("#clear-reason", Input).value = "x"
        await pilot.press("ctrl+s")
        await until(
            pilot, lambda: "at least 10" in str(screen.query_one("#locks-problems").render())
        )
        assert engine.lockouts.is_locked_out(ACC_B)
        screen.query_one("#clear-reason", Input).value = "coach approved: data error"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(engine.unlocks.open(ACC_B)) == 1)
        assert engine.lockouts.is_locked_out(ACC_B), "an unlock waits for admin.unlock_delay"
        view = engine.snapshot().account(ACC_B)
        assert view is not None and len(view.unlocks) == 1
        assert view.unlocks[0].describe(engine.clock.now()).startswith("unlock in 30:00")
        await app.clock.advance(engine.settings.admin.unlock_delay)  # type: ignore[attr-defined]
        await until(pilot, lambda: not engine.lockouts.is_locked_out(ACC_B))
        rows = await audit_rows(app, "clear_lockout")
        assert len(rows) == 1 and rows[0]["reason"] == "coach approved: data error"
        assert rows[0]["target"].startswith(f"account {ACC_B} RULE-003")
        assert len(await audit_rows(app, "unlock_requested")) == 1


async def test_the_admin_screens_lock_again_after_the_idle_time(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await unlock(pilot)
        await app.clock.advance(299)  # type: ignore[attr-defined]
        await pilot.press("f3")  # a key: the idle time starts again
        await app.clock.advance(200)  # type: ignore[attr-defined]
        screen = app.screen
        assert isinstance(screen, AdminScreen)
        screen.check_idle()
        assert isinstance(app.screen, AdminScreen)
        await app.clock.advance(101)  # type: ignore[attr-defined]
        await until(pilot, lambda: isinstance(app.screen, TraderScreen))
        assert not app.admin_unlocked


async def test_escape_locks_the_admin_screens(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await unlock(pilot)
        await pilot.press("escape")
        assert isinstance(app.screen, TraderScreen) and not app.admin_unlocked
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PasswordModal))


async def test_first_run_asks_to_create_a_password_twice_and_stores_only_a_hash(
    settings: Settings, config_path: Path
) -> None:
    settings.password_file.unlink()
    app = make_app(settings, config_path)
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PasswordModal))
        modal = app.screen
        assert isinstance(modal, PasswordModal) and modal.first_run
        modal.query_one("#new", Input).value = "short"
        modal.query_one("#repeat", Input).value = "short"
        modal.query_one("#repeat", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: "at least 8" in modal.feedback)
        modal.query_one("#new", Input).value = "a-good-password"
        modal.query_one("#repeat", Input).value = "a-good-passwort"
        modal.query_one("#repeat", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: "differ" in modal.feedback)
        modal.query_one("#repeat", Input).value = "a-good-password"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AdminScreen))
        stored = settings.password_file.read_text()
        assert "a-good-password" not in stored and "scrypt" in stored
        assert stat.S_IMODE(settings.password_file.stat().st_mode) == 0o600
        assert PasswordStore(settings.password_file).verify("a-good-password")


async def test_change_the_password(app: RiskmanApp, settings: Settings) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        await pilot.press("f6")
        screen.query_one("#new-password", Input).value = "another-password"
        screen.query_one("#repeat-password", Input).value = "another-password"
        await pilot.press("ctrl+s")
        store = PasswordStore(settings.password_file)
        await until(pilot, lambda: store.verify("another-password"))
        assert [row["new_value"] for row in await audit_rows(app, "password")] == ["changed"]


async def test_guarded_accounts_are_saved_and_wait_for_the_reset(
    app: RiskmanApp, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        await pilot.press("f3")
        screen.query_one("#guard-all", Switch).value = False
        accounts = screen.query_one("#account-list")
        await until(pilot, lambda: accounts.option_count == 2)
        accounts.select(ACC_B)
        await pilot.press("ctrl+s")
        # Guarding fewer accounts is looser: every account stays guarded until the reset.
        await until(pilot, lambda: [p.key for p in engine_of(app).pending] == ["accounts"])
        assert engine_of(app).guarded is None
        assert "accounts: [1002]" in text_of(config_path)


async def test_reset_time_and_a_holiday_are_saved_and_applied(
    app: RiskmanApp, config_path: Path, settings: Settings
) -> None:
    from datetime import date

    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        await pilot.press("f4")
        screen.query_one("#daily-reset", Input).value = "16:00"
        screen.query_one("#holiday-date", Input).value = "2026-12-31"
        screen.query_one("#holiday-time", Input).value = "12:15"
        screen.query_one("#holiday-name", Input).value = "New Year's Eve"
        await pilot.press("f8")  # with a closing time: an early close
        await pilot.press("ctrl+s")
        engine = engine_of(app)
        assert engine is not None
        await until(pilot, lambda: engine.calendar.early_close(date(2026, 12, 31)) is not None)
        await until_notified(pilot, app, "Holidays saved")
        assert 'daily_reset: "16:00"' in text_of(config_path)
        # Moving the reset waits for the reset in force (17:00 CST): today stays today.
        assert engine.snapshot().next_reset.hour == 23
        assert [(p.key, p.new) for p in engine.pending] == [("daily_reset", "16:00")]
        assert "New Year's Eve" in text_of(settings.holidays_file)
        actions = {row["target"] for row in await audit_rows(app, "config")}
        assert actions == {"daily_reset"}
        assert len(await audit_rows(app, "holidays")) == 1


async def test_clearing_an_optional_limit_writes_null_so_the_default_does_not_come_back(
    app: RiskmanApp, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        await screen.query_one(RulesTab).show_rule("trade_frequency_limit")
        screen.query_one("#f-trade_frequency_limit--per_hour", Input).value = ""
        await pilot.press("ctrl+s")
        engine = engine_of(app)
        # No limit is looser than 10 a hour: it waits for the daily reset.
        await until(
            pilot,
            lambda: (
                [(p.key, p.new) for p in engine.pending]
                == [("rules.trade_frequency_limit.per_hour", None)]
            ),
        )
        await until_notified(pilot, app, "Pending until the reset")
        assert engine.desired.rules.trade_frequency_limit.per_hour is None
        assert engine.settings.rules.trade_frequency_limit.per_hour == 10
        assert "    per_hour: null\n" in text_of(config_path)
        rows = await audit_rows(app, "config")
        assert [(r["old_value"], r["new_value"]) for r in rows] == [("10", "null")]


async def test_function_keys_switch_the_admin_tabs(app: RiskmanApp) -> None:
    from textual.widgets import TabbedContent

    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        tabs = screen.query_one("#admin-tabs", TabbedContent)
        for key, tab in (
            ("f3", "admin-accounts"),
            ("f4", "admin-schedule"),
            ("f5", "admin-locks"),
            ("f6", "admin-password"),
            ("f7", "admin-audit"),
            ("f2", "admin-rules"),
        ):
            await pilot.press(key)
            assert tabs.active == tab
            f8 = screen.active_bindings.get("f8")
            expected = {"admin-locks": "clear_account", "admin-schedule": "add_holiday"}
            assert (f8.binding.action if f8 else None) == expected.get(tab)


@pytest.fixture
def listed_app(tmp_path: Path) -> tuple[RiskmanApp, Path]:
    """Both accounts listed in the file, as bare ids: one of them gets its own rules."""
    text = CONFIG.replace(
        "accounts: []", f"accounts:\n  - {ACC_A}   # the main account\n  - {ACC_B}"
    )
    path = write_config(tmp_path / "listed", text)
    settings = load_config(path)
    PasswordStore(settings.password_file).set(PASSWORD)
    return make_app(settings, path), path


async def choose_scope(pilot: Any, screen: AdminScreen, scope: str) -> None:
    screen.query_one("#rules-scope", Select).value = scope
    await until(pilot, lambda: screen.query_one("#rules-scope", Select).value == scope)
    await pilot.pause()


async def test_one_account_gets_its_own_limit_written_under_its_entry_and_enforced(
    listed_app: tuple[RiskmanApp, Path],
) -> None:
    app, config_path = listed_app
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        await choose_scope(pilot, screen, str(ACC_B))
        await screen.query_one(RulesTab).show_rule("daily_realized_loss")
        field = screen.query_one("#f-daily_realized_loss--limit", Input)
        assert field.value == "300"  # what account B runs now: the global limit
        assert "account 1002" in str(screen.query_one("#form-daily_realized_loss").title)
        field.value = "200"
        await pilot.press("ctrl+s")
        engine = engine_of(app)
        assert engine is not None
        await until(
            pilot, lambda: engine.settings.rules_for(ACC_B).daily_realized_loss.limit == 200
        )
        assert engine.settings.rules_for(ACC_A).daily_realized_loss.limit == 300
        assert engine.settings.rules.daily_realized_loss.limit == 300
        text = text_of(config_path)
        assert f"  - {ACC_A}   # the main account\n" in text
        assert f"  - {{id: {ACC_B}, rules: {{daily_realized_loss: {{limit: 200}}}}}}\n" in text
        assert "    limit: 300   # keep this comment\n" in text  # the global rule untouched
        rows = await audit_rows(app, "config")
        assert [(r["target"], r["new_value"]) for r in rows] == [
            ("accounts.1.rules.daily_realized_loss.limit", "200")
        ]
        hint = str(screen.query_one("#rules-scope-hint").render())
        assert "own daily_realized_loss" in hint
        # The global scope still shows (and edits) the global value.
        await choose_scope(pilot, screen, "global")
        await screen.query_one(RulesTab).show_rule("daily_realized_loss")
        assert screen.query_one("#f-daily_realized_loss--limit", Input).value == "300"
        # The trader's rules table reads B against its own limit.
        await trader_rule_limit_reads(pilot, f"{ACC_B}|RULE-003", "-$200.00")


async def test_an_account_goes_back_to_the_global_rules(
    listed_app: tuple[RiskmanApp, Path],
) -> None:
    app, config_path = listed_app
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        drop = screen.query_one("#drop-overrides", Button)
        await choose_scope(pilot, screen, str(ACC_A))
        assert drop.disabled  # nothing of its own yet
        screen.query_one("#f-max_contracts--limit", Input).value = "2"
        await pilot.press("ctrl+s")
        engine = engine_of(app)
        assert engine is not None
        await until(pilot, lambda: engine.settings.rules_for(ACC_A).max_contracts.limit == 2)
        # The screen follows once the engine's new rules are read back (after the audit).
        await until(pilot, lambda: not drop.disabled, 15)
        await pilot.click("#drop-overrides")
        # Back to the global 5 is looser than 2: it waits for the reset.
        await until(
            pilot,
            lambda: (
                [(p.account, p.key, p.new) for p in engine.pending]
                == [(ACC_A, "rules.max_contracts.limit", 5)]
            ),
        )
        assert engine.settings.rules_for(ACC_A).max_contracts.limit == 2
        # The form shows what was saved (the file), reloaded once the save is done.
        limit = screen.query_one("#f-max_contracts--limit", Input)
        await until(pilot, lambda: limit.value == "5" and drop.disabled, 15)
        assert f"{{id: {ACC_A}}}" in text_of(config_path)
        targets = [r["target"] for r in await audit_rows(app, "config")]
        assert targets == ["accounts.0.rules.max_contracts.limit", "accounts.0.rules"]


async def test_switching_whose_rules_keeps_unsaved_edits(
    listed_app: tuple[RiskmanApp, Path],
) -> None:
    app, config_path = listed_app
    before = text_of(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        screen.query_one("#f-max_contracts--limit", Input).value = "4"
        screen.query_one("#rules-scope", Select).value = str(ACC_B)
        await pilot.pause()
        await pilot.pause()
        assert screen.query_one("#rules-scope", Select).value == "global"
        assert screen.query_one("#f-max_contracts--limit", Input).value == "4"
        assert text_of(config_path) == before


async def test_with_every_account_guarded_only_the_global_rules_are_offered(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        screen = await unlock(pilot)
        select = screen.query_one("#rules-scope", Select)
        assert [value for _, value in select._options] == ["global"]
        assert "Accounts tab" in str(screen.query_one("#rules-scope-hint").render())
