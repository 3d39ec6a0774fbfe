"""Admin edits in guard mode (issue 12): the engine may not write its config file (root's
/etc/riskman), so what an admin changes through riskman goes into the admin overlay
`riskman.admin.yaml` beside the database, which wins over the file for the keys it sets.

Real files and the real control socket. "readonly" is the guard's case: the config folder is
0555 and the file 0444 (root ignores modes, so those run only as another user); "overlay"
starts from an existing (empty) overlay, which is written to whoever runs the tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from riskman import cli
from riskman.admin import PasswordStore
from riskman.config import OVERLAY_NAME, ConfigError, Settings, load_config, merge_overlay
from riskman.control.client import ApiError, ControlClient
from riskman.control.interface import Holiday, SchedulePut
from riskman.control.paths import socket_path
from riskman.control.server import ControlServer
from riskman.core.clock import FakeClock
from riskman.engine.engine import Engine
from riskman.rules import ALL_RULES
from tests.conftest import HOLIDAYS
from tests.control.conftest import PASSWORD
from tests.fakes import CONTRACTS, FakeGateway, contract, settle

ROOT = os.geteuid() == 0


def _loss(limit: int) -> dict[str, Any]:
    return {"daily_realized_loss": {"enabled": True, "limit": limit}}


class Guard:
    """A config in its own folder (`etc`), the database in another (`state`), an engine on
    the FakeGateway serving its control API; `restart()` stops and starts it again."""

    def __init__(self, tmp: Path, clock: FakeClock, gateway: FakeGateway, readonly: bool) -> None:
        self.etc = tmp / "etc"
        self.state = tmp / "state"
        self.clock = clock
        self.gateway = gateway
        self.readonly = readonly
        self.config = self.etc / "riskman.yaml"
        self.overlay = self.state / OVERLAY_NAME
        self.running: tuple[Engine, ControlServer, ControlClient] | None = None

    def write(self, data: dict[str, Any]) -> None:
        self.etc.mkdir()
        self.state.mkdir()
        shutil.copy(HOLIDAYS, self.etc / "holidays.yaml")
        body = {"holidays_file": "holidays.yaml", "database": str(self.state / "riskman.db")}
        yaml = YAML()
        yaml.default_flow_style = False
        with self.config.open("w") as handle:
            yaml.dump({**body, **data}, handle)
        if self.readonly:
            for path in (self.config, self.etc / "holidays.yaml"):
                path.chmod(0o444)
            self.etc.chmod(0o555)
        else:
            self.overlay.write_text("")
        self.before = self.config.read_text()

    async def start(self) -> tuple[Engine, ControlClient]:
        settings: Settings = load_config(self.config)
        store = PasswordStore(settings.password_file)
        if not store.exists():
            store.set(PASSWORD)
        engine = await Engine.open(settings, self.gateway, clock=self.clock, rule_classes=ALL_RULES)
        for contract_id in CONTRACTS:
            engine.contracts.cache_contract(contract(contract_id))
        self.gateway.sink = engine.submit
        await engine.start()
        server = ControlServer(settings, engine, socket_path(settings))
        await server.start()
        client = ControlClient(server.path)
        self.running = (engine, server, client)
        await client.login(PASSWORD)
        return engine, client

    async def stop(self) -> None:
        if self.running is not None:
            engine, server, client = self.running
            self.running = None
            await client.aclose()
            await server.stop()
            await engine.close()

    async def restart(self) -> tuple[Engine, ControlClient]:
        await self.stop()
        return await self.start()

    def overlay_data(self) -> dict[str, Any]:
        data = YAML(typ="safe").load(self.overlay.read_text()) or {}
        assert isinstance(data, dict)
        return data

    def unlock(self) -> None:
        if self.etc.exists():
            self.etc.chmod(0o755)


GuardFactory = Callable[..., Any]


@pytest.fixture(
    params=[
        pytest.param(
            True,
            id="readonly",
            marks=pytest.mark.skipif(ROOT, reason="root ignores file modes"),
        ),
        pytest.param(False, id="overlay"),
    ]
)
async def guard(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, gateway: FakeGateway
) -> AsyncIterator[GuardFactory]:
    made: list[Guard] = []

    async def factory(data: dict[str, Any]) -> tuple[Guard, Engine, ControlClient]:
        setup = Guard(tmp_path, clock, gateway, readonly=request.param)
        made.append(setup)
        setup.write(data)
        engine, client = await setup.start()
        return setup, engine, client

    try:
        yield factory
    finally:
        for setup in made:
            await setup.stop()
            setup.unlock()


async def _audit(engine: Engine, action: str) -> list[tuple[str, str, str]]:
    rows = await engine.db.fetchall(
        "SELECT target, old_value, new_value FROM admin_audit WHERE action = ? ORDER BY id",
        (action,),
    )
    return [(r["target"], r["old_value"], r["new_value"]) for r in rows]


# --- rules ------------------------------------------------------------------------------------


async def test_a_tightening_applies_at_once_lands_in_the_overlay_and_survives_a_restart(
    guard: GuardFactory,
) -> None:
    setup, engine, client = await guard({"rules": _loss(500), "accounts": [1001]})
    saved = await client.set_rules({"daily_realized_loss": {"limit": 300}})
    assert saved.pending == []
    assert saved.saved_to == str(setup.overlay)
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(300)
    assert setup.overlay_data() == {"rules": {"daily_realized_loss": {"limit": 300}}}
    assert setup.config.read_text() == setup.before, "the config file is never written"
    assert await _audit(engine, "config") == [("rules.daily_realized_loss.limit", "500", "300")]
    audit = await client.audit()
    assert audit[0]["uid"] == os.getuid()

    engine, client = await setup.restart()
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(300)
    assert engine.pending == ()
    # At start the overlay's values are compared as the file's are: nothing changed outside.
    assert await _audit(engine, "changed outside riskman") == []


async def test_a_loosening_waits_for_the_reset_and_a_restart_keeps_it(
    guard: GuardFactory, clock: FakeClock
) -> None:
    setup, engine, client = await guard({"rules": _loss(500)})
    saved = await client.set_rules({"daily_realized_loss": {"limit": 900}})
    assert [p["key"] for p in saved.pending] == ["rules.daily_realized_loss.limit"]
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(500)
    assert setup.overlay_data()["rules"]["daily_realized_loss"]["limit"] == 900

    engine, client = await setup.restart()
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(500)
    assert [p.key for p in engine.pending] == ["rules.daily_realized_loss.limit"]

    await clock.set(engine.resets.next_reset())
    await settle(engine)
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(900)
    engine, client = await setup.restart()
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(900)
    assert engine.pending == ()


async def test_cancelling_a_pending_loosening_writes_the_overlay(guard: GuardFactory) -> None:
    setup, engine, client = await guard({"rules": _loss(500)})
    await client.set_rules({"daily_realized_loss": {"limit": 900}})
    await client.cancel_pending("rules.daily_realized_loss.limit")
    assert engine.pending == ()
    assert setup.overlay_data()["rules"]["daily_realized_loss"]["limit"] == 500
    assert load_config(setup.config).rules.daily_realized_loss.limit == Decimal(500)
    assert setup.config.read_text() == setup.before


async def test_removing_a_key_the_file_sets_writes_an_explicit_null(guard: GuardFactory) -> None:
    weekly = {"weekly_limits": {"enabled": True, "loss": 800, "profit": 2000}}
    setup, engine, client = await guard({"rules": weekly})
    saved = await client.set_rules({"weekly_limits": {"profit": None}})
    assert [c.key for c in saved.changes] == ["rules.weekly_limits.profit"]
    # Without the null the file's 2000 would show through and nothing would change.
    assert setup.overlay_data()["rules"]["weekly_limits"] == {"profit": None}
    assert engine.desired.rules.weekly_limits.profit is None
    assert [p["key"] for p in saved.pending] == ["rules.weekly_limits.profit"]
    assert engine.settings.rules.weekly_limits.profit == Decimal(2000), "looser: it waits"


async def test_one_accounts_own_rules_are_edited_in_the_overlays_copy_of_the_list(
    guard: GuardFactory,
) -> None:
    accounts = [1001, {"id": 1002, "rules": {"max_contracts": {"enabled": True, "limit": 3}}}]
    setup, engine, client = await guard({"accounts": accounts})
    await client.set_rules({"max_contracts": {"limit": 2}}, account=1002)
    assert engine.settings.rules_for(1002).max_contracts.limit == 2
    await client.set_rules({"max_contracts": {"enabled": True, "limit": 1}}, account=1001)
    assert engine.settings.rules_for(1001).max_contracts.limit == 1
    assert setup.overlay_data()["accounts"] == [
        {"id": 1001, "rules": {"max_contracts": {"enabled": True, "limit": 1}}},
        {"id": 1002, "rules": {"max_contracts": {"enabled": True, "limit": 2}}},
    ]
    state = await client.rules()
    own = {entry.id: entry.own for entry in state.accounts}
    assert own[1002] == {"max_contracts": {"enabled": True, "limit": 2}}
    assert setup.config.read_text() == setup.before


async def test_the_accounts_list_is_edited_in_the_overlay(guard: GuardFactory) -> None:
    setup, engine, client = await guard({"accounts": [1001]})
    saved = await client.set_accounts([1001, 1002])
    assert [c.key for c in saved.changes] == ["accounts"]
    assert engine.desired.account_ids == [1001, 1002]
    assert setup.overlay_data()["accounts"] == [1001, 1002]
    engine, client = await setup.restart()
    assert engine.settings.account_ids == [1001, 1002]


async def test_holidays_are_edited_in_a_copy_beside_the_database(guard: GuardFactory) -> None:
    setup, engine, client = await guard({})
    schedule = await client.schedule()
    extra = Holiday(day=date(2026, 3, 4), name="Desk closed")
    saved = await client.set_schedule(SchedulePut(holidays=[*schedule.holidays, extra]))
    assert saved.holidays_added == ["2026-03-04 Desk closed (closed)"]
    copy = setup.state / "holidays.yaml"
    if setup.readonly:  # root's holidays file stays as it was
        assert setup.overlay_data()["holidays_file"] == str(copy)
        assert engine.settings.holidays_file == copy
        assert "Desk closed" in copy.read_text()
        assert "Desk closed" not in (setup.etc / "holidays.yaml").read_text()
    assert date(2026, 3, 4) in {h.day for h in engine.calendar}
    engine, client = await setup.restart()
    assert date(2026, 3, 4) in {h.day for h in engine.calendar}


async def test_an_invalid_edit_leaves_the_overlay_untouched_and_says_why(
    guard: GuardFactory,
) -> None:
    setup, engine, client = await guard({"rules": _loss(500)})
    await client.set_rules({"daily_realized_loss": {"limit": 400}})
    before = setup.overlay.read_text()
    with pytest.raises(ApiError) as bad:
        await client.set_rules({"daily_realized_loss": {"limit": "lots"}})
    assert bad.value.status == 422
    problems = " ".join(bad.value.data["problems"])
    assert "rules.daily_realized_loss.limit" in problems
    assert str(setup.overlay) in problems and ".check-" not in problems
    assert setup.overlay.read_text() == before
    assert engine.settings.rules.daily_realized_loss.limit == Decimal(400)
    assert [p.name for p in setup.state.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(ROOT, reason="root ignores file modes")
async def test_without_an_overlay_an_invalid_edit_creates_none(
    tmp_path: Path, clock: FakeClock, gateway: FakeGateway
) -> None:
    setup = Guard(tmp_path, clock, gateway, readonly=True)
    setup.write({"rules": _loss(500)})
    try:
        _engine, client = await setup.start()
        with pytest.raises(ApiError) as bad:
            await client.set_rules({"daily_realized_loss": {"limit": -5}})
        assert bad.value.status == 422
        assert not setup.overlay.exists()
    finally:
        await setup.stop()
        setup.unlock()


# --- loading ----------------------------------------------------------------------------------


def test_the_merge_mappings_key_by_key_lists_whole_nulls_explicit() -> None:
    base = {
        "rules": {"a": {"x": 1, "y": 2}, "b": {"z": 3}},
        "accounts": [1, {"id": 2, "rules": {"a": {"x": 9}}}],
        "database": "riskman.db",
    }
    over = {"rules": {"a": {"y": None, "w": 4}}, "accounts": [3]}
    assert merge_overlay(base, over) == {
        "rules": {"a": {"x": 1, "y": None, "w": 4}, "b": {"z": 3}},
        "accounts": [3],
        "database": "riskman.db",
    }
    assert base["rules"] == {"a": {"x": 1, "y": 2}, "b": {"z": 3}}, "the file's data is kept"


def _files(tmp_path: Path, overlay: str, config: dict[str, Any] | None = None) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "riskman.yaml"
    yaml = YAML()
    body = {"holidays_file": str(HOLIDAYS), "database": str(state / "riskman.db")}
    with path.open("w") as handle:
        yaml.dump({**body, **(config or {})}, handle)
    (state / OVERLAY_NAME).write_text(overlay)
    return path


def test_an_overlay_with_a_key_it_must_not_hold_is_refused_naming_it(tmp_path: Path) -> None:
    config = _files(tmp_path, "database: /tmp/elsewhere.db\nadmin:\n  password_file: x\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    overlay = tmp_path / "state" / OVERLAY_NAME
    assert refused.value.problems == [
        f"{overlay}: database: not allowed in the admin overlay (it holds only rules, "
        "accounts, daily_reset, timezone, admin.unlock_delay and holidays_file)",
        f"{overlay}: admin.password_file: not allowed in the admin overlay (only "
        "admin.unlock_delay)",
    ]


def test_a_problem_only_the_overlay_brings_names_both_files(tmp_path: Path) -> None:
    config = _files(tmp_path, "rules:\n  daily_realized_loss:\n    limit: lots\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    overlay = tmp_path / "state" / OVERLAY_NAME
    [problem] = refused.value.problems
    assert problem.startswith(f"{config} (with the admin overlay {overlay}): ")
    assert "rules.daily_realized_loss.limit" in problem


def test_environment_wins_over_the_overlay_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _files(
        tmp_path,
        "rules:\n  daily_realized_loss:\n    limit: 400\nadmin:\n  unlock_delay: 3600\n",
        {"rules": _loss(500)},
    )
    settings = load_config(config)
    assert settings.rules.daily_realized_loss.limit == Decimal(400)
    assert settings.rules.daily_realized_loss.enabled, "merged key by key with the file"
    assert settings.admin.unlock_delay == 3600
    assert type(settings).overlay_path == tmp_path / "state" / OVERLAY_NAME
    monkeypatch.setenv("RISKMAN_RULES__DAILY_REALIZED_LOSS__LIMIT", "250")
    assert load_config(config).rules.daily_realized_loss.limit == Decimal(250)


def test_check_config_says_which_keys_the_overlay_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _files(tmp_path, "rules:\n  daily_realized_loss:\n    limit: 400\naccounts: [7]\n")
    assert cli.main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    overlay = tmp_path / "state" / OVERLAY_NAME
    assert f"# the admin overlay {overlay} is in effect" in out
    assert "it sets rules.daily_realized_loss.limit, accounts" in out


@pytest.mark.skipif(ROOT, reason="root reads every file")
def test_an_overlay_this_user_cannot_read_is_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _files(tmp_path, "rules:\n  daily_realized_loss:\n    limit: 400\n", {})
    state = tmp_path / "state"
    state.chmod(0o000)  # the guard's state folder (0700, riskman's), seen by the trader
    try:
        settings = load_config(config)
        assert type(settings).overlay_path is None
        assert cli.main(["check-config", "--config", str(config)]) == 0
    finally:
        state.chmod(0o755)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "admin overlay" in line]
    assert len(lines) == 1
    assert "could not be read" in lines[0] and "may differ from those in force" in lines[0]
