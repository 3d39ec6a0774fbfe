"""Delayed unlocks (issue 13): lockouts end on schedule.

An admin does not clear a lock: he asks for it to end, with a reason, and the lock ends
`admin.unlock_delay` later (30 minutes by default, at least 5). Until then the request can be
withdrawn, and the trader sees it with its countdown. Requests are stored, so a restart keeps
the countdown (and one that fell due while riskman was stopped takes effect at start).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from riskman.core.clock import Clock, TimerHandle
from riskman.storage.db import Database, from_db_time, to_db_time

log = logging.getLogger(__name__)

MIN_REASON = 10
"""Characters a reason for an unlock needs at least (not "x")."""


@dataclass(frozen=True, slots=True)
class UnlockRequest:
    id: int
    account_id: int
    lock_id: int | None
    """None: every lock of the account."""
    reason: str
    asked: datetime
    due: datetime
    actor: str


class UnlockRequests:
    def __init__(
        self, db: Database, clock: Clock, on_due: Callable[[UnlockRequest], Awaitable[None]]
    ) -> None:
        self._db = db
        self._clock = clock
        self._on_due = on_due
        self._open: dict[int, UnlockRequest] = {}
        self._timers: dict[int, TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def restore(self) -> None:
        rows = await self._db.fetchall(
            "SELECT id, account_id, lock_id, reason, asked, due, actor FROM unlock_requests "
            "WHERE done IS NULL ORDER BY id"
        )
        for row in rows:
            now = self._clock.now()
            request = UnlockRequest(
                row["id"],
                row["account_id"],
                row["lock_id"],
                row["reason"],
                from_db_time(row["asked"]) or now,
                from_db_time(row["due"]) or now,
                row["actor"],
            )
            self._open[request.id] = request
            if request.due <= now:
                await self._fire(request)
            else:
                self._arm(request)

    def open(self, account_id: int | None = None) -> list[UnlockRequest]:
        return [r for r in self._open.values() if account_id in (None, r.account_id)]

    def get(self, request_id: int) -> UnlockRequest | None:
        return self._open.get(request_id)

    async def ask(
        self, account_id: int, lock_id: int | None, reason: str, delay: float, actor: str
    ) -> UnlockRequest:
        now = self._clock.now()
        due = now + timedelta(seconds=delay)
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO unlock_requests (account_id, lock_id, reason, asked, due, actor) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (account_id, lock_id, reason, to_db_time(now), to_db_time(due), actor),
            )
            row = await tx.fetchone("SELECT last_insert_rowid()")
        assert row is not None
        request = UnlockRequest(int(row[0]), account_id, lock_id, reason, now, due, actor)
        self._open[request.id] = request
        self._arm(request)
        return request

    async def withdraw(self, request_id: int) -> UnlockRequest:
        request = self._open.pop(request_id, None)
        if request is None:
            raise ValueError(f"no open unlock request {request_id}")
        timer = self._timers.pop(request_id, None)
        if timer is not None:
            timer.cancel()
        await self._finish(request, "withdrawn")
        return request

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def settled(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _arm(self, request: UnlockRequest) -> None:
        def due() -> None:
            self._timers.pop(request.id, None)
            task = asyncio.get_running_loop().create_task(self._fire(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[request.id] = self._clock.call_at(request.due, due)

    async def _fire(self, request: UnlockRequest) -> None:
        if self._open.pop(request.id, None) is None:
            return  # withdrawn meanwhile
        try:
            await self._on_due(request)
        except Exception:
            log.exception("unlock request %s failed", request.id)
        await self._finish(request, "done")

    async def _finish(self, request: UnlockRequest, outcome: str) -> None:
        await self._db.execute(
            "UPDATE unlock_requests SET done = ?, outcome = ? WHERE id = ?",
            (to_db_time(self._clock.now()), outcome, request.id),
        )
