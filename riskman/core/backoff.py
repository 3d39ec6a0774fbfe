"""Exponential backoff with jitter: the one helper every retry in riskman uses (REST reads, hub
reconnects, enforcement calls, the start-up login).

It waits on the injected clock (so a test moves time instead of sleeping) and draws its jitter
from its own random generator (seedable; never the global one).
"""

from __future__ import annotations

import random

from riskman.core.clock import Clock


class Backoff:
    """`base` x 2^(attempt - 1), at most `maximum`, times a random factor in `jitter`."""

    def __init__(
        self,
        clock: Clock,
        *,
        base: float,
        maximum: float,
        jitter: tuple[float, float] = (0.5, 1.0),
        rng: random.Random | None = None,
        seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.base = base
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng if rng is not None else random.Random(seed)

    def delay(
        self, attempt: int, *, base: float | None = None, retry_after: float | None = None
    ) -> float:
        """Seconds to wait before attempt `attempt` + 1 (0 before the first retry).

        `base` overrides the configured one for this wait; a server's `retry_after` is honoured
        (never past `maximum`) when it asks for longer than the backoff would wait.
        """
        if attempt <= 0:
            return 0.0
        start = self.base if base is None else base
        raw = min(self.maximum, start * 2.0 ** (attempt - 1))
        low, high = self.jitter
        delay = raw * (low + (high - low) * self.rng.random())
        if retry_after is not None:
            return min(self.maximum, max(delay, retry_after))
        return delay

    async def wait(
        self, attempt: int, *, base: float | None = None, retry_after: float | None = None
    ) -> float:
        """Sleep on the clock for `delay(...)`; return how long."""
        delay = self.delay(attempt, base=base, retry_after=retry_after)
        await self.clock.sleep(delay)
        return delay
