"""Crash safety: SIGKILL at random instants of a burst of fills and breaches that crosses the
daily reset, then a restart on the same database against the same broker truth.

Each run proves, at the instant of the kill:
- the database opens and passes SQLite's integrity check (WAL: a torn write is rolled back);
- each day's stored total is exactly the sum of the stored fills (one transaction);
- every lock the engine reported as set (or cleared) is in the database that way, and a reset
  it reported is in `reset_log` (state committed before it is reported);
and after the restart and a reconcile with the broker's fills:
- fills, daily totals, trade counts, active locks and the reset log are exactly those of a run
  that was never killed (nothing lost, nothing counted twice, the reset neither skipped nor
  repeated), and every lock that was in force at the kill still is (no lost lockout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.ports import AccountSnapshot
from riskman.core.views import ResetDone
from riskman.engine.engine import Engine
from riskman.rules import ALL_RULES
from riskman.runtime import Runtime
from riskman.sim import SimRejected, Simulator
from riskman.storage.db import Database, from_db_time, to_db_time
from tests.e2e.conftest import MNQ, buy, engine_of, eventually, sim_positions, sim_settings
from tests.fakes import account
from tests.reliability import crash_worker as worker

RUNS = 50
KILL_WINDOW_MS = (20.0, 420.0)
"""The kill comes this long after the child's engine started (the script lasts ~440 ms)."""


@dataclass(frozen=True)
class FinalState:
    trades: list[tuple[Any, ...]]
    days: list[tuple[Any, ...]]
    resets: list[str]
    locks: list[tuple[Any, ...]]
    counts: tuple[int, int, int]
    session_start: str | None
    realized_today: Decimal


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database whose last reset is the one before the script's (as in real life:
    only the script's own reset is at stake, not a first-run catch-up)."""
    path = tmp_path_factory.mktemp("crash-template") / "riskman.db"

    async def make() -> None:
        db = await Database.open(path)
        await db.execute(
            "INSERT INTO reset_log (trading_day, fired, how) VALUES (?, ?, ?)",
            (
                (worker.OLD_DAY - timedelta(days=1)).isoformat(),
                to_db_time(worker.START - timedelta(days=1)),
                "scheduled",
            ),
        )
        await db.close()

    asyncio.run(make())
    return path


def _fresh_db(template: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "riskman.db"
    shutil.copyfile(template, target)
    return target


def _start_child(forkserver: Any, db_path: Path) -> tuple[Any, Path, Any]:
    report = db_path.with_name("reported.jsonl")
    ready = forkserver.Event()
    process = forkserver.Process(
        target=worker.run_engine_child, args=(str(db_path), str(report), ready), daemon=True
    )
    process.start()
    assert ready.wait(30), "the crash worker did not start its engine"
    return process, report, ready


def _reported(report: Path) -> list[dict[str, Any]]:
    if not report.exists():
        return []
    lines = report.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# --- checks on the database exactly as the kill left it -----------------------------------


def _check_as_killed(db_path: Path, reported: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Integrity, totals = fills, reported = committed. Returns the locks in force then."""
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        fills: dict[str, tuple[Decimal, int]] = {}
        for day, pnl, fees in conn.execute(
            "SELECT trading_day, pnl, fees FROM trades WHERE voided = 0"
        ):
            total, count = fills.get(day, (Decimal(0), 0))
            fills[day] = (total + Decimal(pnl or 0) - Decimal(fees), count + 1)
        days = {
            day: (Decimal(realized), count)
            for day, realized, count in conn.execute(
                "SELECT trading_day, realized, fills FROM daily_pnl WHERE account_id = ?",
                (worker.ACC,),
            )
        }
        assert days == fills, "a day's stored total differs from its stored fills"

        rows = conn.execute(
            "SELECT account_id, rule, symbol, until, cleared FROM lockouts"
        ).fetchall()
        for line in reported:
            if line["kind"] == "lock":
                assert _committed(rows, line), f"reported lock change not committed: {line}"
        logged = {day for (day,) in conn.execute("SELECT trading_day FROM reset_log")}
        for line in reported:
            if line["kind"] == "reset":
                assert line["ended"] in logged, f"reported reset not committed: {line}"
        in_force = {
            (account_id, rule, symbol)
            for account_id, rule, symbol, until, cleared in rows
            if cleared is None and (until is None or from_db_time(until) > worker.END)  # type: ignore[operator]
        }
    finally:
        conn.close()
    return in_force


def _committed(rows: list[tuple[Any, ...]], line: dict[str, Any]) -> bool:
    """Is the lock change of a report line in the database? A lock set may have been extended
    (a longer cooldown of the same rule) or cleared since; a clear must be stored as one."""
    reported_until = None if line["until"] is None else datetime.fromisoformat(line["until"])
    for account_id, rule, symbol, until, cleared in rows:
        if (account_id, rule, symbol) != (line["account"], line["rule"], line["symbol"]):
            continue
        stored_until = from_db_time(until)
        if line["cleared"]:
            if cleared is not None and stored_until == reported_until:
                return True
        elif stored_until is None or (
            reported_until is not None and stored_until >= reported_until
        ):
            return True
    return False


# --- the restart ------------------------------------------------------------------------------


async def _restart(db_path: Path) -> FinalState:
    """riskman comes back at END, reconciles with the broker's fills, and settles."""
    clock = FakeClock(worker.END)
    gateway = worker.preloaded_gateway()
    engine = await Engine.open(
        worker.settings(db_path), gateway, clock=clock, rule_classes=ALL_RULES
    )
    try:
        worker.warm_contracts(engine)
        gateway.sink = engine.submit
        await engine.start()
        since = engine.fills_since()
        trades = [t for t in worker.broker_trades() if t.creation_timestamp >= since]
        await engine.reconcile(
            AccountSnapshot(
                account=account(worker.ACC),
                positions=[],
                orders=[],
                trades=trades,
                requested=clock.monotonic(),
            )
        )
        await engine.drain()
        await engine.actions.wait_idle(5)
        await clock.settle()
        await engine.db.flush()
        db = engine.db
        trade_rows = await db.fetchall(
            "SELECT trade_id, trading_day, pnl, fees, voided FROM trades ORDER BY trade_id"
        )
        day_rows = await db.fetchall(
            "SELECT trading_day, realized, gross, fees, fills FROM daily_pnl ORDER BY trading_day"
        )
        reset_rows = await db.fetchall("SELECT trading_day FROM reset_log ORDER BY trading_day")
        active_rows = await db.fetchall(
            "SELECT account_id, symbol, rule, kind, unlock, until FROM lockouts "
            "WHERE cleared IS NULL ORDER BY rule"
        )
        in_memory = sorted(
            (
                lock.account_id,
                lock.symbol or "",
                lock.rule,
                lock.kind.value,
                lock.unlock.value,
                lock.until,
            )
            for lock in engine.lockouts.all_active()
        )
        stored = sorted(
            (
                r["account_id"],
                r["symbol"],
                r["rule"],
                r["kind"],
                r["unlock"],
                from_db_time(r["until"]),
            )
            for r in active_rows
        )
        assert in_memory == stored, "the restarted engine does not hold the stored locks"
        counts = engine.counter.get_trade_counts(worker.ACC, worker.END)
        session = engine.counter.get_session_start(worker.ACC)
        return FinalState(
            trades=[tuple(r) for r in trade_rows],
            days=[tuple(r) for r in day_rows],
            resets=[r[0] for r in reset_rows],
            locks=in_memory,
            counts=(counts.minute, counts.hour, counts.session),
            session_start=None if session is None else session.isoformat(),
            realized_today=engine.pnl.get_daily_realized_pnl(worker.ACC),
        )
    finally:
        await engine.close()


@pytest.fixture(scope="module")
def reference(
    forkserver: Any, template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> FinalState:
    """The same burst, never killed, then the same restart."""
    db_path = _fresh_db(template_db, tmp_path_factory.mktemp("crash-reference"))
    process, report, _ = _start_child(forkserver, db_path)
    process.join(30)
    assert process.exitcode == 0, "the reference run failed"
    lines = _reported(report)
    assert lines[-1]["kind"] == "done"
    assert [line["ended"] for line in lines if line["kind"] == "reset"] == [
        worker.OLD_DAY.isoformat()
    ]
    state = asyncio.run(_restart(db_path))
    # The scenario is what it claims to be: every fill once, both days' totals, the reset once,
    # and after it the new day's loss lock, the cooldown from the -150 fill before the reset
    # and the new session's trade-frequency cooldown.
    assert len(state.trades) == 2 * (worker.ROUND_TRIPS_OLD + worker.ROUND_TRIPS_NEW)
    assert [d[0] for d in state.days] == [worker.OLD_DAY.isoformat(), worker.NEW_DAY.isoformat()]
    assert state.resets == [
        (worker.OLD_DAY - timedelta(days=1)).isoformat(),
        worker.OLD_DAY.isoformat(),
    ]
    assert {lock[2] for lock in state.locks} == {"RULE-003", "RULE-006", "RULE-007"}
    assert state.counts[2] == 2 * worker.ROUND_TRIPS_NEW
    assert state.session_start == worker.RESET_AT.isoformat()
    assert state.realized_today == Decimal("-308.32")
    return state


def test_sigkill_at_random_instants_loses_and_repeats_nothing(
    forkserver: Any, template_db: Path, reference: FinalState, tmp_path: Path
) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    low, high = KILL_WINDOW_MS
    span = (high - low) / RUNS
    killed_before_reset = killed_after_reset = 0
    for run in range(RUNS):
        # Stratified: every part of the window gets kills, each at a random instant within it.
        delay_ms = low + (run + rng.random()) * span
        db_path = _fresh_db(template_db, tmp_path / f"run{run}")
        process, report, _ = _start_child(forkserver, db_path)
        time.sleep(delay_ms / 1000)
        process.kill()
        process.join(10)
        reported = _reported(report)
        where = f"run {run} (seed {seed}, kill after {delay_ms:.0f} ms)"
        try:
            in_force = _check_as_killed(db_path, reported)
            state = asyncio.run(_restart(db_path))
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc
        assert state == reference, f"{where}: the restart differs from an uninterrupted run"
        final = {(lock[0], lock[2], lock[1]) for lock in state.locks}
        assert {(a, r, s) for a, r, s in in_force} <= final, f"{where}: a lock was lost"
        if any(line["kind"] == "reset" for line in reported):
            killed_after_reset += 1
        else:
            killed_before_reset += 1
    # The kills really landed on both sides of the reset.
    assert killed_before_reset >= 5 and killed_after_reset >= 5, (
        killed_before_reset,
        killed_after_reset,
    )


# --- the whole riskman process, live against the simulator ---------------------------------


LIVE_RUNS = 8
LIVE_LIMIT = 60
LIVE_RULES: dict[str, Any] = {
    "daily_realized_loss": {"limit": LIVE_LIMIT, "include_unrealized": False},
    "max_contracts": {"limit": 1},
}


async def _trader_burst(sim: Simulator, account_id: int) -> None:
    """Losing round trips of 2 MNQ, fast: riskman reduces each to 1, then locks and flattens
    after the second; the trader keeps trading at the broker regardless."""
    price = Decimal(24500)
    for _ in range(6):
        sim.set_price(MNQ, price)
        buy(sim, account_id, MNQ, 2)
        await asyncio.sleep(0.02)
        price -= 8
        sim.set_price(MNQ, price)
        if MNQ in sim_positions(sim, account_id):
            with contextlib.suppress(SimRejected):  # riskman may have closed it meanwhile
                sim.close_position(account_id, MNQ)
        await asyncio.sleep(0.02)


async def test_sigkill_of_live_riskman_then_restart_matches_the_gateway(
    sim: Simulator, forkserver: Any, tmp_path: Path
) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    for run in range(LIVE_RUNS):
        account_id = sim.add_account(f"CRASH-{run}")
        folder = tmp_path / f"live{run}"
        folder.mkdir()
        settings = sim_settings(sim, folder, LIVE_RULES, accounts=[account_id])
        data = settings.model_dump(mode="json", exclude={"gateway": {"api_key"}})
        ready = forkserver.Event()
        process = forkserver.Process(
            target=worker.run_runtime_child,
            args=(data, sim.api_key, str(folder / "riskman.log"), ready),
            daemon=True,
        )
        process.start()
        assert await asyncio.to_thread(ready.wait, 30), f"run {run}: riskman did not arm"
        delay = rng.uniform(0.02, 0.3)
        asyncio.get_running_loop().call_later(delay, process.kill)
        await _trader_burst(sim, account_id)
        await asyncio.to_thread(process.join, 10)
        assert process.exitcode is not None, "the killed process did not end"
        where = f"live run {run} (seed {seed}, kill after {delay * 1000:.0f} ms)"

        runtime = Runtime(settings, api_key=sim.api_key, start_wait=10)
        try:
            await runtime.start()
            assert await runtime.wait_armed(10), f"{where}: the restart did not arm"
            engine = engine_of(runtime)
            await engine.drain()
            await engine.actions.wait_idle(15)
            await engine.drain()
            await engine.db.flush()
            truth = {t.id: t for t in sim.trades(account_id)}
            rows = await engine.db.fetchall(
                "SELECT trade_id, pnl, fees, trading_day FROM trades WHERE account_id = ?",
                (account_id,),
            )
            stored = {
                r["trade_id"]: (None if r["pnl"] is None else Decimal(r["pnl"]), Decimal(r["fees"]))
                for r in rows
            }
            expected = {tid: (t.profit_and_loss, t.fees) for tid, t in truth.items()}
            assert stored == expected, f"{where}: stored fills differ from the gateway's"
            today = engine.pnl.trading_day()
            net_today = sum(
                (
                    t.net_pnl
                    for t in truth.values()
                    if engine.resets.schedule.trading_day(t.creation_timestamp) == today
                ),
                Decimal(0),
            )
            assert engine.pnl.get_daily_realized_pnl(account_id) == net_today, where
            day_row = await engine.db.fetchone(
                "SELECT realized FROM daily_pnl WHERE account_id = ? AND trading_day = ?",
                (account_id, today.isoformat()),
            )
            assert day_row is not None and Decimal(day_row["realized"]) == net_today, where
            locked = any(
                lock.rule == "RULE-003" for lock in engine.lockouts.get_lockout_info(account_id)
            )
            assert locked == (net_today <= -LIVE_LIMIT), f"{where}: lock {locked}, P&L {net_today}"
            if locked:
                await eventually(
                    lambda held=account_id: not sim.positions(held),  # type: ignore[misc]
                    what=f"{where}: the account flat",
                )
        finally:
            await runtime.stop()


# --- torn writes and corrupt files ---------------------------------------------------------


def test_a_torn_wal_tail_is_rolled_back_to_a_consistent_state(
    forkserver: Any, template_db: Path, tmp_path: Path
) -> None:
    """Kill mid-burst, then cut the write-ahead log at random byte offsets (a write the disk
    never finished): the database still opens, checks clean, and holds a consistent prefix
    of what was committed (every day's total still equals its fills)."""
    db_path = _fresh_db(template_db, tmp_path / "killed")
    process, _, _ = _start_child(forkserver, db_path)
    time.sleep(0.25)
    process.kill()
    process.join(10)
    wal = Path(str(db_path) + "-wal")
    assert wal.exists() and wal.stat().st_size > 32, "the kill left no write-ahead log"
    size = wal.stat().st_size
    rng = random.Random()
    for cut in sorted({32, size - 1, *(rng.randrange(33, size) for _ in range(8))}):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        shutil.copyfile(db_path, folder / "riskman.db")
        (folder / "riskman.db-wal").write_bytes(wal.read_bytes()[:cut])
        _check_as_killed(folder / "riskman.db", [])

        async def reopen(path: Path = folder / "riskman.db") -> None:
            db = await Database.open(path)  # runs quick_check; raises if it fails
            await db.close()

        asyncio.run(reopen())


def _corrupt_database(path: Path) -> None:
    async def make() -> None:
        db = await Database.open(path)
        for n in range(200):  # several pages of rows, so a page in the middle holds data
            await db.execute(
                "INSERT INTO enforcement_log (ts, account_id, rule, action, target, reason, "
                "result) VALUES (?, 1, 'RULE-001', 'close', 'x', ?, 'ok')",
                (to_db_time(worker.START), "r" * 200 + str(n)),
            )
        await db.close()

    asyncio.run(make())
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page : 4 * page] = random.Random(3).randbytes(page)
    path.write_bytes(bytes(data))


def test_corrupt_database_stops_the_daemon_with_one_clear_line_and_a_kept_copy(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "riskman.db"
    _corrupt_database(db_path)
    original = db_path.read_bytes()
    config = tmp_path / "riskman.yaml"
    config.write_text(
        "gateway:\n"
        "  api_url: http://127.0.0.1:9\n"  # nothing listens: the database must be checked first
        "  user_hub_url: http://127.0.0.1:9/hubs/user\n"
        "  market_hub_url: http://127.0.0.1:9/hubs/market\n"
        "  username: someone\n"
        f"holidays_file: {worker.HOLIDAYS}\n"
        "database: riskman.db\n"
    )
    env = {**os.environ, "RISKMAN_GATEWAY__API_KEY": "key-for-the-corrupt-db-test"}
    done = subprocess.run(
        [sys.executable, "-m", "riskman.cli", "--no-ui", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 4, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("riskman:")]
    assert len(lines) == 1, done.stderr
    assert "corrupt" in lines[0] and str(db_path) in lines[0] and "copy" in lines[0]
    assert "Traceback" not in done.stderr
    copies = list(tmp_path.glob("riskman.db.corrupt-*"))
    assert [c.name for c in copies if not c.name.endswith(("-wal", "-shm"))], "no copy kept"
    kept = next(c for c in copies if not c.name.endswith(("-wal", "-shm")))
    assert kept.read_bytes() == original
    assert db_path.read_bytes() == original, "the corrupt file was changed"


async def test_a_reset_is_reported_only_once_it_is_logged(tmp_path: Path) -> None:
    """A crash between the reset's work and its log entry repeats the (idempotent) work at
    the next start; it must never make riskman *report* the reset twice."""
    settings = worker.settings(tmp_path / "riskman.db")
    clock = FakeClock(worker.RESET_AT - timedelta(seconds=1))

    def resets(changes: list[Any]) -> list[tuple[Any, str]]:
        return [(c.ended, c.how) for c in changes if isinstance(c, ResetDone)]

    reported: list[Any] = []
    engine = await Engine.open(
        settings, worker.preloaded_gateway(), clock=clock, rule_classes=ALL_RULES
    )
    try:
        engine.subscribe(reported.append)
        await engine.start()
        reported.clear()  # (a first start catches up the reset before)
        execute = engine.db.execute

        async def dying_execute(sql: str, params: Any = ()) -> int:
            if sql.startswith("INSERT OR IGNORE INTO reset_log"):
                raise sqlite3.OperationalError("disk I/O error")  # the process dies here
            return await execute(sql, params)

        engine.db.execute = dying_execute  # type: ignore[method-assign]
        await clock.advance(2)
        assert resets(reported) == []
        engine.db.execute = execute  # type: ignore[method-assign]
    finally:
        await engine.close()

    again: list[Any] = []
    engine = await Engine.open(
        settings, worker.preloaded_gateway(), clock=clock, rule_classes=ALL_RULES
    )
    try:
        engine.subscribe(again.append)
        await engine.start()
    finally:
        await engine.close()
    assert resets(again) == [(worker.OLD_DAY, "catch_up")]
