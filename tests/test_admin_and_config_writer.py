from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from riskman.admin import AdminGuard, PasswordError, PasswordStore
from riskman.config import ConfigError
from riskman.config_writer import update_config
from riskman.core.clock import FakeClock
from riskman.storage.db import Database
from tests.conftest import REPO
from tests.fakes import T0


def test_password_file_is_created_private_and_holds_no_password(tmp_path: Path) -> None:
    store = PasswordStore(tmp_path / "admin.hash")
    store.set("correct horse")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert "correct horse" not in store.path.read_text()
    assert store.verify("correct horse") and not store.verify("Correct horse")


def test_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    store = PasswordStore(tmp_path / "admin.hash")
    store.set("correct horse")
    os.chmod(store.path, 0o644)
    with pytest.raises(PasswordError, match="chmod 600"):
        store.verify("correct horse")


def test_short_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PasswordError):
        PasswordStore(tmp_path / "admin.hash").set("short")


async def test_three_wrong_passwords_lock_for_a_growing_delay_that_survives_a_restart(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    store = PasswordStore(tmp_path / "admin.hash")
    store.set("correct horse")
    db = await Database.open(tmp_path / "db.sqlite")
    guard = AdminGuard(store, db, clock)
    assert (await guard.try_password("nope1")).locked_until is None
    assert (await guard.try_password("nope2")).locked_until is None
    third = await guard.try_password("nope3")
    assert third.locked_until == T0 + timedelta(seconds=30)
    # Even the right password is refused while locked.
    assert not (await guard.try_password("correct horse")).ok
    await db.close()

    db = await Database.open(tmp_path / "db.sqlite")  # restart
    guard = AdminGuard(store, db, clock)
    assert await guard.locked_until() == T0 + timedelta(seconds=30)
    await clock.advance(30)
    fourth = await guard.try_password("nope4")
    assert fourth.locked_until == clock.now() + timedelta(seconds=60)  # doubled
    await clock.advance(60)
    assert (await guard.try_password("correct horse")).ok
    assert (await guard.try_password("nope5")).locked_until is None  # counter reset by success
    await db.close()


def test_set_admin_password_from_stdin(tmp_path: Path) -> None:
    config = tmp_path / "riskman.yaml"
    (tmp_path / "holidays.yaml").write_text((REPO / "config" / "holidays.yaml").read_text())
    config.write_text("database: state/riskman.db\n")
    result = subprocess.run(
        [sys.executable, "-m", "riskman.cli", "set-admin-password", "--config", str(config)],
        input="a-long-password\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    store = PasswordStore(tmp_path / "state" / "admin.hash")
    assert store.verify("a-long-password")
    assert "a-long-password" not in result.stdout + result.stderr


def _copy_config(tmp_path: Path) -> Path:
    for name in ("riskman.yaml", "holidays.yaml"):
        (tmp_path / name).write_text((REPO / "config" / name).read_text())
    return tmp_path / "riskman.yaml"


def test_update_config_keeps_comments_and_changes_only_the_key(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    before = path.read_text()
    settings, changes = update_config(
        path, {("rules", "daily_realized_loss", "limit"): Decimal(400)}
    )
    after = path.read_text()
    assert settings.rules.daily_realized_loss.limit == 400
    assert [(c.key, c.old, c.new) for c in changes] == [
        ("rules.daily_realized_loss.limit", 500, 400)
    ]
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert diff == [("    limit: 500", "    limit: 400")]


def test_a_rule_set_for_an_account_listed_as_a_bare_id_turns_it_into_an_entry(
    tmp_path: Path,
) -> None:
    path = _copy_config(tmp_path)
    text = path.read_text().replace("accounts: []", "accounts:\n  - 1001   # main\n  - 1002", 1)
    path.write_text(text)
    settings, changes = update_config(path, {("accounts", 1, "rules", "max_contracts", "limit"): 2})
    assert settings.rules_for(1002).max_contracts.limit == 2
    assert settings.rules_for(1001).max_contracts.limit == settings.rules.max_contracts.limit
    assert [(c.key, c.old, c.new) for c in changes] == [
        ("accounts.1.rules.max_contracts.limit", None, 2)
    ]
    after = path.read_text()
    assert "  - 1001   # main\n  - {id: 1002, rules: {max_contracts: {limit: 2}}}\n" in after
    # Removing its rules leaves the account listed, with the global rules.
    settings, _ = update_config(path, {("accounts", 1, "rules"): None})
    assert settings.account_ids == [1001, 1002]
    assert settings.rules_for(1002) == settings.rules


def test_invalid_update_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = _copy_config(tmp_path)
    before = path.read_text()
    with pytest.raises(ConfigError) as info:
        update_config(path, {("rules", "max_contracts", "limit"): -2})
    assert info.value.problems[0].startswith(f"{path}: rules.max_contracts.limit")
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holidays.yaml", "riskman.yaml"]
