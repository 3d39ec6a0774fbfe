"""The one source of time for the engine.

Everything that needs "now" or wants to run something later asks a :class:`Clock`. The real
clock schedules on the running event loop; :class:`FakeClock` lets tests move time (resets,
cooldowns, DST, sessions) without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# The real clock re-checks wall time at least this often, so a timer stays right when the
# machine sleeps or NTP steps the clock (loop timers run on the monotonic clock).
_MAX_WAIT = 30.0


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for latencies and ages)."""
        ...

    def call_at(self, when: datetime, callback: Callable[[], object]) -> TimerHandle:
        """Run `callback` on the event loop once `now() >= when`."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class _RealHandle:
    __slots__ = ("_cancelled", "_handle")

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        if self._handle is not None:
            self._handle.cancel()


class SystemClock:
    """Wall-clock time on the running asyncio loop."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_at(self, when: datetime, callback: Callable[[], object]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        handle = _RealHandle()

        def check() -> None:
            if handle._cancelled:
                return
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                callback()
            else:
                handle._handle = loop.call_later(min(remaining, _MAX_WAIT), check)

        remaining = (when - self.now()).total_seconds()
        handle._handle = loop.call_later(max(0.0, min(remaining, _MAX_WAIT)), check)
        return handle

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _FakeHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to. Timers fire inside :meth:`advance`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = self._now.astimezone(UTC)
        self._mono = 1000.0
        self._timers: list[tuple[datetime, int, _FakeHandle, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._settlers: list[Callable[[], Awaitable[object]]] = []

    def add_settler(self, settler: Callable[[], Awaitable[object]]) -> None:
        """Work a timer callback may start (a task writing to the database...) is awaited by
        `settler` before time moves on, so tests see each step's effects complete."""
        self._settlers.append(settler)

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def call_at(self, when: datetime, callback: Callable[[], object]) -> TimerHandle:
        handle = _FakeHandle()
        heapq.heappush(self._timers, (when, next(self._seq), handle, callback))
        return handle

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._sleepers, (self._now + timedelta(seconds=seconds), next(self._seq), future)
        )
        await future

    @property
    def pending(self) -> int:
        """How many live timers and sleepers are waiting."""
        return sum(1 for t in self._timers if not t[2].cancelled) + sum(
            1 for s in self._sleepers if not s[2].done()
        )

    async def settle(self, rounds: int = 20) -> None:
        """Let the event loop run what is ready (callbacks, tasks they started)."""
        for _ in range(2):
            for _ in range(rounds):
                await asyncio.sleep(0)
            for settler in list(self._settlers):
                await settler()

    async def advance(self, seconds: float = 0.0) -> None:
        """Move time forward, firing every timer and sleeper that comes due, in order."""
        target = self._now + timedelta(seconds=seconds)
        await self.set(target)

    async def set(self, target: datetime) -> None:
        """Move time to `target` (never backwards), firing what comes due on the way."""
        target = target.astimezone(UTC)
        while True:
            await self.settle()
            due = self._next_due()
            if due is None or due > target:
                break
            if due > self._now:
                self._mono += (due - self._now).total_seconds()
                self._now = due
            self._fire_due()
        if target > self._now:
            self._mono += (target - self._now).total_seconds()
            self._now = target
        await self.settle()

    def _next_due(self) -> datetime | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        candidates = []
        if self._timers:
            candidates.append(self._timers[0][0])
        if self._sleepers:
            candidates.append(self._sleepers[0][0])
        return min(candidates) if candidates else None

    def _fire_due(self) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _, _, handle, callback = heapq.heappop(self._timers)
            if not handle.cancelled:
                handle.cancelled = True
                callback()
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


async def wait_for(clock: Clock, future: asyncio.Future[Any], timeout: float) -> bool:
    """Wait for `future` at most `timeout` seconds of `clock` time. True if it completed."""
    if future.done():
        return True
    loop = asyncio.get_running_loop()
    expired: asyncio.Future[Any] = loop.create_future()

    def expire() -> None:
        if not expired.done():
            expired.set_result(None)

    handle = clock.call_at(clock.now() + timedelta(seconds=max(0.0, timeout)), expire)
    try:
        await asyncio.wait({future, expired}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        handle.cancel()
        expired.cancel()
    return future.done()
