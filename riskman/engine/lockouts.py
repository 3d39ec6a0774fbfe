"""MOD-002 Lockout manager: lockouts and cooldowns per account, and per symbol.

A lock takes effect in memory at once (so the lockout gate sees it on the very next event),
is committed to the database, and only then reported to subscribers. Locks are restored on
start; their expiry timers are rebuilt from the stored deadlines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from riskman.core.clock import Clock
from riskman.core.locks import LockKind, Lockout, Unlock
from riskman.core.views import LockoutChange
from riskman.engine.timers import TimerManager
from riskman.storage.db import Database, Transaction, from_db_time, to_db_time

log = logging.getLogger(__name__)


class LockoutManager:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        timers: TimerManager,
        on_change: Callable[[LockoutChange], None] = lambda change: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._timers = timers
        self._on_change = on_change
        self._active: dict[tuple[int, str, str], Lockout] = {}
        self._by_account: dict[int, set[tuple[int, str, str]]] = {}
        self._unsaved: dict[tuple[int, str, str], Lockout] = {}
        self._next_temp_id = -1
        self._background: set[asyncio.Task[None]] = set()
        self._writing = asyncio.Lock()
        """Commits and clears take turns: a lock cleared while its commit is on the way must
        be cleared in its row, not lost between the two."""
        self._stored_as: dict[int, int] = {}
        """Temporary id -> row id, for a lock whose commit finished after it was cleared or
        replaced in memory (the only holders of a temporary id after its commit)."""

    # --- start-up ------------------------------------------------------------------------

    async def restore(self) -> list[Lockout]:
        """Load active locks; clear the ones that ended while riskman was down."""
        rows = await self._db.fetchall(
            "SELECT id, account_id, symbol, rule, kind, reason, unlock, until, created "
            "FROM lockouts WHERE cleared IS NULL"
        )
        now = self._clock.now()
        restored = []
        for row in rows:
            lock = Lockout(
                id=row["id"],
                account_id=row["account_id"],
                symbol=row["symbol"] or None,
                rule=row["rule"],
                kind=LockKind(row["kind"]),
                reason=row["reason"],
                unlock=Unlock(row["unlock"]),
                until=from_db_time(row["until"]),
                created=from_db_time(row["created"]) or now,
            )
            if lock.until is not None and lock.until <= now:
                await self._write_clear(lock, "expired", "ended while riskman was stopped")
                continue
            self._remember(lock)
            restored.append(lock)
        return restored

    # --- setting -------------------------------------------------------------------------

    def activate(
        self,
        account_id: int,
        reason: str,
        until: datetime | None,
        *,
        rule: str,
        kind: LockKind = LockKind.LOCKOUT,
        unlock: Unlock = Unlock.TIME,
        symbol: str | None = None,
    ) -> Lockout | None:
        """Put a lock in force now, in memory; `commit()` persists and reports it.

        Returns the lock, or None when an equal-or-longer lock of the same rule already holds
        (the longest wins).
        """
        now = self._clock.now()
        if until is not None and until <= now:
            return None
        lock = Lockout(
            id=self._next_temp_id,
            account_id=account_id,
            symbol=symbol or None,
            rule=rule,
            kind=kind,
            reason=reason,
            unlock=unlock,
            until=until,
            created=now,
        )
        existing = self._active.get(lock.key)
        if existing is not None:
            if not lock.outlasts(existing):
                return None
            lock = replace(lock, id=existing.id, created=existing.created)
        else:
            self._next_temp_id -= 1
        self._remember(lock)
        self._unsaved[lock.key] = lock
        return lock

    async def commit(self) -> list[Lockout]:
        """Persist every lock activated since the last commit, then report them."""
        if not self._unsaved:
            return []
        async with self._writing:
            pending, self._unsaved = list(self._unsaved.values()), {}
            saved = []
            async with self._db.transaction() as tx:
                for lock in pending:
                    held_as, lock = lock.id, self._with_row_id(lock)
                    if lock.id > 0:
                        await tx.execute(
                            "UPDATE lockouts SET until = ?, reason = ?, unlock = ? WHERE id = ?",
                            (to_db_time(lock.until), lock.reason, lock.unlock.value, lock.id),
                        )
                    else:
                        lock = replace(lock, id=await self._insert(tx, lock))
                    saved.append((held_as, lock))
            for held_as, lock in saved:
                current = self._active.get(lock.key)
                if current is not None and current.id == held_as and current.until == lock.until:
                    self._remember(lock)
                    self._stored_as.pop(held_as, None)
                elif held_as != lock.id:
                    self._stored_as[held_as] = lock.id
                self._on_change(LockoutChange(lock))
        return [lock for _, lock in saved]

    @staticmethod
    async def _insert(tx: Transaction, lock: Lockout) -> int:
        await tx.execute(
            "INSERT INTO lockouts (account_id, symbol, rule, kind, reason, unlock, until,"
            " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                lock.account_id,
                lock.symbol or "",
                lock.rule,
                lock.kind.value,
                lock.reason,
                lock.unlock.value,
                to_db_time(lock.until),
                to_db_time(lock.created),
            ),
        )
        row = await tx.fetchone("SELECT last_insert_rowid()")
        assert row is not None
        return int(row[0])

    def _with_row_id(self, lock: Lockout) -> Lockout:
        row_id = self._stored_as.get(lock.id) if lock.id <= 0 else None
        return lock if row_id is None else replace(lock, id=row_id)

    async def set_lockout(
        self,
        account_id: int,
        reason: str,
        until: datetime | None,
        *,
        rule: str,
        unlock: Unlock = Unlock.TIME,
        symbol: str | None = None,
    ) -> Lockout | None:
        lock = self.activate(account_id, reason, until, rule=rule, unlock=unlock, symbol=symbol)
        await self.commit()
        return None if lock is None else self._active.get(lock.key, lock)

    async def set_cooldown(
        self, account_id: int, reason: str, seconds: float, *, rule: str
    ) -> Lockout | None:
        until = self._clock.now() + timedelta(seconds=seconds)
        lock = self.activate(
            account_id, reason, until, rule=rule, kind=LockKind.COOLDOWN, unlock=Unlock.TIME
        )
        await self.commit()
        return None if lock is None else self._active.get(lock.key, lock)

    # --- queries -------------------------------------------------------------------------

    def is_locked_out(self, account_id: int, symbol: str | None = None) -> bool:
        """True if the account is locked or cooling down (or `symbol` is locked for it)."""
        for key in self._by_account.get(account_id, ()):
            lock_symbol = key[1]
            if not lock_symbol or (symbol is not None and lock_symbol == symbol):
                return True
        return False

    def is_hard_locked(self, account_id: int, symbol: str | None = None) -> bool:
        """Locked by a lockout (not merely a cooldown)."""
        return any(
            lock.kind is LockKind.LOCKOUT and (lock.symbol is None or lock.symbol == symbol)
            for lock in self.get_lockout_info(account_id)
        )

    def blocking(self, account_id: int, symbol: str | None) -> Lockout | None:
        """The strongest lock that applies to a position in `symbol`, if any."""
        candidates = [
            lock
            for lock in self.get_lockout_info(account_id)
            if lock.symbol is None or lock.symbol == symbol
        ]
        if not candidates:
            return None
        return max(candidates, key=_strength)

    def get_lockout_info(self, account_id: int) -> list[Lockout]:
        """Active locks of an account, longest first."""
        locks = [self._active[key] for key in self._by_account.get(account_id, ())]
        return sorted(locks, key=_strength, reverse=True)

    def all_active(self) -> list[Lockout]:
        return sorted(self._active.values(), key=lambda lock: (lock.account_id, lock.id))

    # --- clearing ------------------------------------------------------------------------

    async def clear_lockout(
        self,
        account_id: int,
        *,
        by: str = "admin",
        reason: str = "",
        lock_id: int | None = None,
    ) -> list[Lockout]:
        """Clear one lock (`lock_id`) or every lock of the account."""
        return await self.clear_where(
            lambda lock: lock.account_id == account_id and (lock_id is None or lock.id == lock_id),
            by=by,
            reason=reason,
        )

    async def clear_where(
        self, predicate: Callable[[Lockout], bool], *, by: str, reason: str = ""
    ) -> list[Lockout]:
        cleared = [lock for lock in list(self._active.values()) if predicate(lock)]
        for lock in cleared:
            self._forget(lock)
        if cleared:
            await self._write_clears(cleared, by, reason)
            for lock in cleared:
                self._on_change(LockoutChange(lock, cleared_by=by, reason=reason))
        return cleared

    # --- internals -----------------------------------------------------------------------

    def _remember(self, lock: Lockout) -> None:
        self._active[lock.key] = lock
        self._by_account.setdefault(lock.account_id, set()).add(lock.key)
        name = _timer_name(lock)
        if lock.until is None:
            self._timers.cancel_timer(name)
        else:
            self._timers.start_timer_at(name, lock.until, lambda: self._expire(lock.key))

    def _forget(self, lock: Lockout) -> None:
        self._active.pop(lock.key, None)
        self._unsaved.pop(lock.key, None)
        keys = self._by_account.get(lock.account_id)
        if keys is not None:
            keys.discard(lock.key)
            if not keys:
                del self._by_account[lock.account_id]
        self._timers.cancel_timer(_timer_name(lock))

    def _expire(self, key: tuple[int, str, str]) -> None:
        lock = self._active.get(key)
        if lock is None or lock.until is None or lock.until > self._clock.now():
            return
        self._forget(lock)
        task = asyncio.get_running_loop().create_task(self._expired(lock))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settled(self) -> None:
        """Wait for expiry records still being written (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _expired(self, lock: Lockout) -> None:
        try:
            await self._write_clears([lock], "expired", "")
        except Exception:
            log.exception("could not record the end of lock %s", lock.id)
        self._on_change(LockoutChange(lock, cleared_by="expired"))

    async def _write_clear(self, lock: Lockout, by: str, reason: str) -> None:
        await self._write_clears([lock], by, reason)

    async def _write_clears(self, locks: Iterable[Lockout], by: str, reason: str) -> None:
        """Store the clears. A lock cleared before its commit began never reached a row (nor
        a subscriber as set): it is stored now, set and cleared, since it was in force."""
        now = to_db_time(self._clock.now())
        async with self._writing, self._db.transaction() as tx:
            for lock in locks:
                stored = self._with_row_id(lock)
                self._stored_as.pop(lock.id, None)
                row_id = stored.id if stored.id > 0 else await self._insert(tx, stored)
                await tx.execute(
                    "UPDATE lockouts SET cleared = ?, cleared_by = ?, clear_reason = ? "
                    "WHERE id = ? AND cleared IS NULL",
                    (now, by, reason, row_id),
                )


def _timer_name(lock: Lockout) -> str:
    return f"lock:{lock.account_id}:{lock.symbol or ''}:{lock.rule}"


def _strength(lock: Lockout) -> tuple[int, float]:
    # Lockouts before cooldowns; then the one that lasts longest (no end = longest).
    kind_rank = 1 if lock.kind is LockKind.LOCKOUT else 0
    ends = float("inf") if lock.until is None else lock.until.timestamp()
    return (kind_rank, ends)
