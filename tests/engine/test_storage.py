from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from riskman.storage.db import Database, DatabaseError
from riskman.storage.schema import SCHEMA_VERSION


async def test_open_creates_schema_in_wal_mode(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    try:
        row = await db.fetchone("PRAGMA journal_mode")
        assert row is not None and row[0] == "wal"
        version = await db.fetchone("SELECT MAX(version) FROM schema_version")
        assert version is not None and version[0] == SCHEMA_VERSION
        tables = {
            r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        }
        for name in (
            "trades",
            "daily_pnl",
            "lockouts",
            "trade_counter",
            "contracts",
            "positions",
            "orders",
            "enforcement_log",
            "reset_log",
            "admin_audit",
        ):
            assert name in tables
    finally:
        await db.close()


async def test_reopening_does_not_migrate_twice(tmp_path: Path) -> None:
    for _ in range(2):
        db = await Database.open(tmp_path / "a.db")
        rows = await db.fetchall("SELECT version FROM schema_version")
        assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
        await db.close()


async def test_deferred_writes_are_flushed_on_close(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    db.defer("INSERT INTO orders (order_id, account_id, payload) VALUES (1, 7, '{}')")
    await db.close()
    db = await Database.open(tmp_path / "a.db")
    try:
        row = await db.fetchone("SELECT account_id FROM orders WHERE order_id = 1")
        assert row is not None and row[0] == 7
    finally:
        await db.close()


async def test_a_failed_transaction_keeps_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO reset_log VALUES ('2026-11-18', 'x', 'test')")
                raise RuntimeError("boom")
        assert await db.fetchone("SELECT * FROM reset_log") is None
    finally:
        await db.close()


async def test_close_twice_is_harmless(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    await db.close()
    await db.close()


async def test_corrupt_file_is_refused_with_a_preserved_copy(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(DatabaseError) as info:
        await Database.open(path)
    assert "corrupt" in str(info.value)
    copies = list(tmp_path.glob("bad.db.corrupt-*"))  # noqa: ASYNC240
    assert copies and copies[0].read_bytes() == path.read_bytes()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    await db.execute("INSERT INTO schema_version (version) VALUES (999)")
    await db.close()
    with pytest.raises(DatabaseError, match="newer"):
        await Database.open(tmp_path / "a.db")


def test_process_exits_without_hanging_after_close(tmp_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from riskman.storage.db import Database\n"
        "async def main():\n"
        f"    db = await Database.open({str(tmp_path / 'x.db')!r})\n"
        "    db.defer(\"INSERT INTO reset_log VALUES ('d', 'f', 'h')\")\n"
        "    await db.close()\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=30, capture_output=True)
    assert result.returncode == 0, result.stderr
