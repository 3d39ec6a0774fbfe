"""The SQLite store: one file, one writer connection, versioned schema, explicit transactions.

Lockouts, trades and P&L are committed before they are reported (`transaction()`); positions,
orders and the enforcement log go through `defer()`, a small batch flushed every
`FLUSH_INTERVAL` seconds, so the hot path never waits for the disk. All times are ISO-8601 UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from riskman.storage.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.25
Params = Sequence[Any] | dict[str, Any]


class DatabaseError(Exception):
    """The database cannot be used (corrupt, newer schema, unreadable)."""


def to_db_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime cannot be stored")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_db_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class Database:
    """Async access to the riskman SQLite file. Use `await Database.open(path)` and `close()`."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn = conn
        self._write_lock = asyncio.Lock()
        self._deferred: list[tuple[str, Params | Callable[[], Params]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_wakeup = asyncio.Event()
        self._closed = False

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Open (creating if needed), check integrity, migrate. Raises DatabaseError."""
        db_path = Path(path)
        if str(db_path) != ":memory:":
            db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = await _connect(db_path)
        try:
            await _configure(conn)
            await _check_integrity(conn, db_path)
            await _migrate(conn, db_path)
        except sqlite3.DatabaseError as exc:
            await conn.close()
            if str(db_path) != ":memory:" and _looks_corrupt(exc):
                backup = _preserve_corrupt(db_path)
                raise DatabaseError(
                    f"database {db_path} is corrupt ({exc}); a copy was kept at {backup}. "
                    f"Move it away to start with an empty database."
                ) from None
            raise DatabaseError(f"database {db_path}: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        db = cls(db_path, conn)
        db._flush_task = asyncio.create_task(db._flush_loop(), name="riskman-db-flush")
        return db

    async def close(self) -> None:
        """Flush deferred writes and close. Safe to call twice; always closes the connection."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._flush_task is not None:
                self._flush_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flush_task
            await self.flush()
        finally:
            await self._conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- reads ---------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
            return row

    # --- writes --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One committed unit of work. Deferred writes queued so far go first, in order."""
        async with self._write_lock:
            pending, self._deferred = self._deferred, []
            await self._conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._conn)
            try:
                for sql, params in pending:
                    await self._conn.execute(sql, params() if callable(params) else params)
                yield tx
            except BaseException:
                await self._conn.rollback()
                # Keep the deferred rows: they were not the failing part.
                self._deferred[:0] = pending
                raise
            else:
                await self._conn.commit()

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own committed transaction; return rows changed."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    def defer(self, sql: str, params: Params | Callable[[], Params] = ()) -> None:
        """Queue a non-critical write; it is committed within FLUSH_INTERVAL. `params` may be
        a function giving them at that time (of immutable values): the serialising is then
        off the path of the event that made the write."""
        if self._closed:
            return
        self._deferred.append((sql, params))
        self._flush_wakeup.set()

    async def flush(self) -> None:
        if not self._deferred:
            return
        async with self.transaction():
            pass

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except sqlite3.Error:
                log.exception("could not write deferred rows; will retry")

    async def integrity_ok(self) -> bool:
        row = await self.fetchone("PRAGMA quick_check")
        return row is not None and row[0] == "ok"


class Transaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


async def _connect(path: Path) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(str(path), isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    return conn


async def _configure(conn: aiosqlite.Connection) -> None:
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA busy_timeout=5000")
    await conn.execute("PRAGMA foreign_keys=ON")


async def _check_integrity(conn: aiosqlite.Connection, path: Path) -> None:
    async with conn.execute("PRAGMA quick_check") as cursor:
        rows = list(await cursor.fetchall())
    if not rows or rows[0][0] != "ok":
        # SQLite's report spans lines ("*** in database main ***\nPage 4: ..."): keep the
        # start of it on one line, so the error stays one clear line for the operator.
        detail = " ".join(" ".join(str(row[0]) for row in rows[:3]).split())[:200] or "no answer"
        raise sqlite3.DatabaseError(f"integrity check failed: {detail}")


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with conn.execute("SELECT MAX(version) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    current = row[0] if row and row[0] is not None else 0
    if current > SCHEMA_VERSION:
        raise DatabaseError(
            f"database {path} has schema version {current}, newer than this riskman "
            f"({SCHEMA_VERSION}): upgrade riskman"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


def _statements(script: str) -> list[str]:
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def _looks_corrupt(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return any(
        word in text
        for word in ("malformed", "not a database", "integrity check failed", "corrupt")
    )


def _preserve_corrupt(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(path) + suffix)
        if source.exists():
            shutil.copy2(source, Path(str(backup) + suffix))
    return backup
