from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from riskman.core.clock import FakeClock
from riskman.core.locks import LockKind, Unlock
from riskman.core.views import LockoutChange
from riskman.engine.lockouts import LockoutManager
from riskman.engine.timers import TimerManager
from riskman.storage.db import Database
from tests.fakes import T0


async def test_fake_clock_fires_timers_in_deadline_order() -> None:
    clock = FakeClock(T0)
    fired: list[str] = []
    clock.call_at(T0 + timedelta(seconds=20), lambda: fired.append("b"))
    clock.call_at(T0 + timedelta(seconds=10), lambda: fired.append("a"))
    await clock.advance(15)
    assert fired == ["a"]
    assert clock.now() == T0 + timedelta(seconds=15)
    await clock.advance(5)
    assert fired == ["a", "b"]


async def test_timer_manager_restart_replaces_the_old_deadline() -> None:
    clock = FakeClock(T0)
    timers = TimerManager(clock)
    fired: list[int] = []
    timers.start_timer("x", 10, lambda: fired.append(1))
    timers.start_timer("x", 30, lambda: fired.append(2))
    assert timers.get_remaining_time("x") == 30
    await clock.advance(10)
    assert fired == []
    await clock.advance(20)
    assert fired == [2]
    assert timers.get_remaining_time("x") is None


async def test_cancelled_timer_never_fires() -> None:
    clock = FakeClock(T0)
    timers = TimerManager(clock)
    fired: list[int] = []
    timers.start_timer("x", 5, lambda: fired.append(1))
    assert timers.cancel_timer("x")
    await clock.advance(10)
    assert fired == []


async def _manager(
    path: Path, clock: FakeClock
) -> tuple[Database, LockoutManager, list[LockoutChange]]:
    db = await Database.open(path)
    changes: list[LockoutChange] = []
    manager = LockoutManager(db, clock, TimerManager(clock), changes.append)
    clock.add_settler(manager.settled)
    await manager.restore()
    return db, manager, changes


async def test_lockout_is_committed_before_it_is_reported(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    db, manager, changes = await _manager(tmp_path / "l.db", clock)
    try:
        seen_in_db: list[int] = []

        async def check() -> None:
            row = await db.fetchone("SELECT COUNT(*) FROM lockouts")
            seen_in_db.append(row[0] if row else -1)

        manager.activate(7, "loss", T0 + timedelta(hours=1), rule="RULE-003")
        assert manager.is_locked_out(7)  # in force at once
        assert changes == []  # not reported before the commit
        await manager.commit()
        await check()
        assert seen_in_db == [1]
        assert len(changes) == 1 and changes[0].cleared_by is None
    finally:
        await db.close()


async def _rows(db: Database) -> list[tuple[str, str | None]]:
    rows = await db.fetchall("SELECT rule, cleared_by FROM lockouts ORDER BY id")
    return [(row[0], row[1]) for row in rows]


async def test_a_lock_cleared_while_its_commit_is_on_the_way_is_stored_cleared(
    tmp_path: Path,
) -> None:
    """The crash test's race: the reset clears a lock whose commit has begun but not ended."""
    clock = FakeClock(T0)
    db, manager, changes = await _manager(tmp_path / "l.db", clock)
    try:
        manager.activate(7, "loss", T0 + timedelta(hours=1), rule="RULE-003")
        committing = asyncio.create_task(manager.commit())
        await asyncio.sleep(0)  # the commit has taken the lock and is writing it
        await manager.clear_lockout(7, by="reset", reason="daily reset")
        await committing
        assert await _rows(db) == [("RULE-003", "reset")]
        assert [c.cleared_by for c in changes] == [None, "reset"]
        assert not manager.is_locked_out(7)
    finally:
        await db.close()


async def test_a_lock_cleared_before_its_commit_is_stored_set_and_cleared(
    tmp_path: Path,
) -> None:
    """It was in force, so it is on record, and every reported clear has its row."""
    clock = FakeClock(T0)
    db, manager, changes = await _manager(tmp_path / "l.db", clock)
    try:
        manager.activate(7, "loss", T0 + timedelta(hours=1), rule="RULE-003")
        await manager.clear_lockout(7, by="reset", reason="daily reset")
        await manager.commit()
        assert await _rows(db) == [("RULE-003", "reset")]
        assert [c.cleared_by for c in changes] == ["reset"]
    finally:
        await db.close()


async def test_a_lock_extended_while_its_commit_is_on_the_way_keeps_one_row(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    db, manager, _ = await _manager(tmp_path / "l.db", clock)
    try:
        manager.activate(7, "3 trades", T0 + timedelta(minutes=1), rule="RULE-006")
        committing = asyncio.create_task(manager.commit())
        await asyncio.sleep(0)
        manager.activate(7, "10 trades", T0 + timedelta(minutes=30), rule="RULE-006")
        await committing
        await manager.commit()
        rows = await db.fetchall("SELECT until FROM lockouts")
        assert len(rows) == 1
        assert manager.get_lockout_info(7)[0].id > 0
    finally:
        await db.close()


async def test_cooldown_longest_wins(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    db, manager, _ = await _manager(tmp_path / "l.db", clock)
    try:
        await manager.set_cooldown(7, "3 trades in a minute", 60, rule="RULE-006")
        assert await manager.set_cooldown(7, "shorter", 30, rule="RULE-006") is None
        longer = await manager.set_cooldown(7, "10 in an hour", 1800, rule="RULE-006")
        assert longer is not None and longer.until == T0 + timedelta(seconds=1800)
        assert len(manager.get_lockout_info(7)) == 1
    finally:
        await db.close()


async def test_cooldown_expires_by_itself_and_is_recorded(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    db, manager, changes = await _manager(tmp_path / "l.db", clock)
    try:
        await manager.set_cooldown(7, "loss", 300, rule="RULE-007")
        await clock.advance(299)
        assert manager.is_locked_out(7)
        await clock.advance(1)
        assert not manager.is_locked_out(7)
        assert changes[-1].cleared_by == "expired"
        row = await db.fetchone("SELECT cleared_by FROM lockouts")
        assert row is not None and row[0] == "expired"
    finally:
        await db.close()


async def test_lockouts_survive_a_restart_and_expired_ones_do_not(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    db, manager, _ = await _manager(tmp_path / "l.db", clock)
    await manager.set_lockout(
        7, "daily loss", T0 + timedelta(hours=2), rule="RULE-003", unlock=Unlock.RESET
    )
    await manager.set_cooldown(8, "loss", 60, rule="RULE-007")
    await manager.set_lockout(9, "MLL", None, rule="RULE-014", unlock=Unlock.ADMIN)
    await manager.set_lockout(
        7, "blocked", None, rule="RULE-011", unlock=Unlock.CONFIG, symbol="RTY"
    )
    await db.close()

    clock2 = FakeClock(T0 + timedelta(minutes=5))
    db2, restored, _ = await _manager(tmp_path / "l.db", clock2)
    try:
        assert restored.is_locked_out(7)
        assert not restored.is_locked_out(8)  # the 60 s cooldown ended while we were down
        assert restored.is_hard_locked(9)
        assert restored.blocking(7, "RTY") is not None
        info = restored.get_lockout_info(7)
        assert {lock.rule for lock in info} == {"RULE-003", "RULE-011"}
        await clock2.advance(2 * 3600)
        assert restored.blocking(7, None) is None
        assert restored.is_locked_out(9)
    finally:
        await db2.close()


async def test_symbol_lock_only_blocks_that_symbol(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    db, manager, _ = await _manager(tmp_path / "l.db", clock)
    try:
        await manager.set_lockout(
            7, "blocked", None, rule="RULE-011", unlock=Unlock.CONFIG, symbol="RTY"
        )
        assert manager.blocking(7, "RTY") is not None
        assert manager.blocking(7, "MNQ") is None
        assert not manager.is_locked_out(7)
        assert manager.is_locked_out(7, "RTY")
    finally:
        await db.close()


async def test_admin_clear_records_who_and_why(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    db, manager, changes = await _manager(tmp_path / "l.db", clock)
    try:
        await manager.set_lockout(9, "MLL", None, rule="RULE-014", unlock=Unlock.ADMIN)
        cleared = await manager.clear_lockout(9, by="admin", reason="new combine")
        assert len(cleared) == 1 and not manager.is_locked_out(9)
        row = await db.fetchone("SELECT cleared_by, clear_reason FROM lockouts")
        assert row is not None and tuple(row) == ("admin", "new combine")
        assert changes[-1].cleared_by == "admin"
        assert cleared[0].kind is LockKind.LOCKOUT
    finally:
        await db.close()


def test_every_unlock_says_in_words_when_the_lock_ends() -> None:
    phrases = {unlock: unlock.describe(T0) for unlock in Unlock}
    assert len(set(phrases.values())) == len(Unlock)  # no two read alike
    stamp = T0.isoformat(timespec="seconds")
    assert phrases[Unlock.TIME] == f"until {stamp}"
    assert phrases[Unlock.RESET] == f"until the daily reset at {stamp}"
    assert stamp in phrases[Unlock.SESSION]
    assert "admin" in phrases[Unlock.ADMIN]
    assert all("(" not in phrase for phrase in phrases.values())  # no enum value in parentheses
