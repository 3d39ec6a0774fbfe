"""The one backoff helper: its delays, its own seeded random, and its waits on the clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from riskman.core.backoff import Backoff
from riskman.core.clock import FakeClock


def test_delays_double_up_to_the_maximum_within_the_jitter() -> None:
    backoff = Backoff(FakeClock(), base=0.25, maximum=4.0, seed=7)
    assert backoff.delay(0) == 0.0
    for attempt, raw in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (9, 4.0)]:
        for _ in range(50):
            assert raw * 0.5 <= backoff.delay(attempt) <= raw


def test_a_seed_repeats_the_same_waits_and_the_global_random_is_untouched() -> None:
    random.seed(1)
    expected_global = random.random()
    random.seed(1)
    first = [Backoff(FakeClock(), base=1.0, maximum=30.0, seed=42).delay(n) for n in range(1, 6)]
    again = [Backoff(FakeClock(), base=1.0, maximum=30.0, seed=42).delay(n) for n in range(1, 6)]
    assert first == again
    assert random.random() == expected_global


def test_jitter_range_base_override_and_retry_after() -> None:
    backoff = Backoff(FakeClock(), base=0.25, maximum=5.0, jitter=(0.75, 1.25), seed=1)
    for _ in range(50):
        assert 2.0 * 0.75 <= backoff.delay(1, base=2.0) <= 2.0 * 1.25
    # A server asking for longer is honoured, never past the maximum.
    assert backoff.delay(1, retry_after=3.0) == 3.0
    assert backoff.delay(1, retry_after=60.0) == 5.0


async def test_wait_sleeps_on_the_injected_clock() -> None:
    clock = FakeClock()
    backoff = Backoff(clock, base=10.0, maximum=10.0, jitter=(1.0, 1.0))
    task = asyncio.create_task(backoff.wait(1))
    await asyncio.sleep(0)
    assert not task.done()
    await clock.advance(9.9)
    assert not task.done()
    await clock.advance(0.2)
    assert await asyncio.wait_for(task, 5) == pytest.approx(10.0)
