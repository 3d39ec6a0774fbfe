"""Durable writes in order, off the router's path.

The router must not wait for the disk before it handles the next event (a position event
right after a fill would wait for the fill's commit). Lock commits and fills are therefore
handed to one writer that runs them one after another, in the order they were asked for: a
lock is always on disk before the fill that caused it, and what a job reports (the lock set,
the account changed) it reports only after its own commit. If riskman dies with jobs still
queued, the start-up reconciliation replays the fills from the gateway and the rules derive
their locks from them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class DurableWriter:
    """`wait_turn`, when given, is awaited before each batch (the jobs queued when the writer
    wakes): the engine passes "no enforcement action in flight, or a short while", so a fill's
    write never runs between a breach and its close call. Jobs keep their order either way."""

    def __init__(self, wait_turn: Callable[[], Awaitable[object]] | None = None) -> None:
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._wait_turn = wait_turn

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="riskman-durable-writer"
            )

    def submit(self, job: Job) -> None:
        """Queue `job`; it runs after every job submitted before it."""
        self._queue.put_nowait(job)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def idle(self) -> None:
        """Wait until every job submitted so far has run."""
        if self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        """Run what is queued, then stop."""
        await self.idle()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            if self._wait_turn is not None:
                try:
                    await self._wait_turn()
                except Exception:
                    log.exception("durable writer: waiting for its turn failed")
            while True:
                try:
                    await job()
                except Exception:
                    log.exception("a durable write failed; it is redone from the gateway at start")
                finally:
                    self._queue.task_done()
                if self._queue.empty():
                    break
                job = self._queue.get_nowait()
