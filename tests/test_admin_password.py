"""The admin password cannot be replaced from the trader's chair (issue 13, deliverable 4)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from riskman import admin, cli
from riskman.admin import AdminGuard, PasswordError, PasswordStore
from riskman.config import ConfigError, load_config
from riskman.core.clock import FakeClock
from riskman.storage.db import Database
from tests.conftest import HOLIDAYS
from tests.fakes import T0

OLD = "the-old-password"
NEW = "a-brand-new-one"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copyfile(HOLIDAYS, tmp_path / "holidays.yaml")
    path = tmp_path / "riskman.yaml"
    path.write_text("database: riskman.db\nholidays_file: holidays.yaml\n", encoding="utf-8")
    return path


def _run(config: Path, stdin: str, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(["set-admin-password", "--config", str(config), *extra])


def _hash(config: Path) -> str:
    return (config.parent / "admin.hash").read_text(encoding="utf-8")


def test_first_password_needs_no_current_one(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(config, OLD + "\n", monkeypatch=monkeypatch) == 0
    assert PasswordStore.of(load_config(config)).verify(OLD)


def test_without_the_current_password_nothing_changes(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, OLD + "\n", monkeypatch=monkeypatch) == 0
    before = _hash(config)
    assert _run(config, "\n" + NEW + "\n", monkeypatch=monkeypatch) == 2
    assert "current admin password is needed" in capsys.readouterr().err
    assert _run(config, "wrong-guess-1\n" + NEW + "\n", monkeypatch=monkeypatch) == 2
    assert "is wrong" in capsys.readouterr().err
    assert _hash(config) == before


def test_with_the_current_password_it_changes(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(config, OLD + "\n", monkeypatch=monkeypatch) == 0
    assert _run(config, f"{OLD}\n{NEW}\n", monkeypatch=monkeypatch) == 0
    store = PasswordStore.of(load_config(config))
    assert store.verify(NEW) and not store.verify(OLD)


def test_a_deleted_hash_file_cannot_be_recreated_without_reset(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, OLD + "\n", monkeypatch=monkeypatch) == 0
    (config.parent / "admin.hash").unlink()
    store = PasswordStore.of(load_config(config))
    with pytest.raises(PasswordError, match="missing: the admin screens stay locked"):
        store.load()
    assert _run(config, f"anything\n{NEW}\n", monkeypatch=monkeypatch) == 2
    assert "is missing" in capsys.readouterr().err
    assert not (config.parent / "admin.hash").exists()


def test_reset_is_refused_to_another_user_and_audited_for_the_owner(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, OLD + "\n", monkeypatch=monkeypatch) == 0
    before = _hash(config)
    owner = (config.parent / "riskman.db").stat().st_uid
    monkeypatch.setattr("os.geteuid", lambda: owner + 4242)
    assert _run(config, NEW + "\n", "--reset", monkeypatch=monkeypatch) == 2
    assert "only to root or to riskman's own user" in capsys.readouterr().err
    assert _hash(config) == before

    monkeypatch.setattr("os.geteuid", lambda: owner)
    assert _run(config, NEW + "\n", "--reset", monkeypatch=monkeypatch) == 0
    assert PasswordStore.of(load_config(config)).verify(NEW)
    import sqlite3

    conn = sqlite3.connect(config.parent / "riskman.db")
    try:
        rows = conn.execute(
            "SELECT new_value FROM admin_audit WHERE action = 'password'"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("set (command line)",), ("reset (command line)",)]


def test_the_hash_file_path_cannot_come_from_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RISKMAN_ADMIN__PASSWORD_FILE", str(tmp_path / "elsewhere.hash"))
    with pytest.raises(ConfigError, match="cannot be set from the environment"):
        load_config(config)


async def test_failed_tries_survive_a_new_database(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = PasswordStore(tmp_path / "admin.hash", tmp_path / "anchor.json")
    store.set(OLD)
    async with await Database.open(tmp_path / "one.db") as db:
        guard = AdminGuard(store, db, clock)
        for _ in range(admin.FREE_TRIES):
            attempt = await guard.try_password("not-it-at-all")
        assert attempt.locked_until is not None
    async with await Database.open(tmp_path / "two.db") as db:
        guard = AdminGuard(PasswordStore(tmp_path / "admin.hash"), db, clock)
        assert await guard.locked_until() == attempt.locked_until
        refused = await guard.try_password(OLD)
        assert not refused.ok, "even the right password waits for the delay"


def test_each_check_costs_a_real_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # 64 MiB of scrypt memory per check: >= 100 ms on a fast machine (issue 13).
    monkeypatch.setattr(admin, "_N", admin.SCRYPT_N)
    stored = json.loads(admin.hash_password(OLD))
    assert stored["algorithm"] == "scrypt"
    assert stored["n"] * stored["r"] >= 2**16 * 8
    assert admin.verify_password(OLD, json.dumps(stored))
