"""riskman's own rate limiter for the gateway's REST calls (200 a minute allowed): a sliding
window with a reserve that only urgent (enforcement) calls may use, so reads never make a close
wait."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from datetime import timedelta

from riskman.core.clock import Clock, TimerHandle


class RateLimiter:
    """A sliding-window limiter with a queue where urgent callers go first.

    `limit` requests per `window` seconds in total; normal callers may only use
    `limit - reserve` of them, so a burst of reads can never leave enforcement calls waiting
    for a full window. Waiters are served urgent-first, then in arrival order.
    """

    def __init__(self, clock: Clock, *, limit: int, window: float, reserve: int = 0) -> None:
        if not 0 <= reserve < limit:
            raise ValueError("reserve must be smaller than limit")
        self._clock = clock
        self.limit = limit
        self.window = window
        self.reserve = reserve
        self._sent: deque[float] = deque()
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: TimerHandle | None = None
        self.granted = 0
        """Requests let through so far (for tests and the status screen)."""

    def _cap(self, priority: int) -> int:
        return self.limit if priority == 0 else self.limit - self.reserve

    def in_window(self) -> int:
        self._expire()
        return len(self._sent)

    def _expire(self) -> None:
        horizon = self._clock.monotonic() - self.window
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()

    async def acquire(self, *, urgent: bool = False) -> None:
        priority = 0 if urgent else 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (priority, next(self._seq), future))
        self._pump()
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            self._pump()

    def _pump(self) -> None:
        self._expire()
        while self._queue:
            priority, _, future = self._queue[0]
            if future.done():
                heapq.heappop(self._queue)
                continue
            if len(self._sent) >= self._cap(priority):
                break
            heapq.heappop(self._queue)
            self._sent.append(self._clock.monotonic())
            self.granted += 1
            future.set_result(None)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        live = [item for item in self._queue if not item[2].done()]
        if not live:
            return
        head = min(live)
        # The head may go once enough of the oldest sends have left the window.
        must_expire = len(self._sent) - self._cap(head[0]) + 1
        if must_expire <= 0 or must_expire > len(self._sent):
            return
        free_at = self._sent[must_expire - 1] + self.window
        delay = max(0.001, free_at - self._clock.monotonic())
        self._timer = self._clock.call_at(
            self._clock.now() + timedelta(seconds=delay), self._on_timer
        )

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()
