"""HubSupervisor with a fake transport and a fake clock: when it rebuilds, how it backs off,
when it reports CONNECTED."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from riskman.core.backoff import Backoff
from riskman.core.clock import FakeClock
from riskman.core.views import FeedHealth, FeedState
from riskman.gateway.errors import AuthError
from riskman.gateway.realtime import (
    HubConnectError,
    HubEvent,
    HubSupervisor,
    HubTransport,
)
from tests.gateway.support import FakeTokens, HubFactory, settle_until


class Harness:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tokens = FakeTokens()
        self.factory = HubFactory(clock)
        self.health: list[FeedHealth] = []
        self.events: list[HubEvent] = []
        self.setups = 0
        self.setup_gate: asyncio.Event | None = None
        self.setup_error: Exception | None = None
        self.supervisor = HubSupervisor(
            "user",
            "http://hub.test/hubs/user",
            self.tokens,
            setup=self.setup,
            on_event=self.on_event,
            on_health=self.health.append,
            clock=clock,
            transport_factory=self.factory,
            silence_timeout=30.0,
            max_backoff=30.0,
            rng=random.Random(7),
        )

    async def setup(self, hub: HubTransport) -> None:
        self.setups += 1
        await hub.invoke("SubscribeAccounts", [])
        if self.setup_gate is not None:
            await self.setup_gate.wait()
        if self.setup_error is not None:
            raise self.setup_error

    def on_event(self, event: HubEvent) -> None:
        if event.target == "Boom":
            raise RuntimeError("handler bug")
        self.events.append(event)

    def states(self) -> list[FeedState]:
        return [h.state for h in self.health]

    async def connected(self, count: int = 1) -> None:
        await settle_until(
            self.clock,
            lambda: self.supervisor.trusted and len(self.factory.built) >= count,
            step=0.25,
        )


@pytest.fixture
async def harness(fake_clock: FakeClock) -> AsyncIterator[Harness]:
    h = Harness(fake_clock)
    await h.supervisor.start()
    yield h
    await h.supervisor.stop()


async def test_connected_is_reported_only_after_setup_finished(fake_clock: FakeClock) -> None:
    h = Harness(fake_clock)
    h.setup_gate = asyncio.Event()
    await h.supervisor.start()
    await settle_until(fake_clock, lambda: h.setups == 1)
    assert h.supervisor.state is FeedState.CONNECTING
    assert h.factory.last.token == "token-1"
    h.setup_gate.set()
    await h.connected()
    assert h.states() == [FeedState.CONNECTING, FeedState.CONNECTED]
    await h.supervisor.stop()
    assert h.supervisor.health().state is FeedState.DOWN and h.factory.last.closed


async def test_events_are_handed_over_and_a_failing_handler_is_survived(
    harness: Harness,
) -> None:
    await harness.connected()
    hub = harness.factory.last
    hub.push("Boom", {})
    hub.push("GatewayUserOrder", {"id": 1})
    await settle_until(harness.clock, lambda: len(harness.events) == 1)
    assert harness.events[0].target == "GatewayUserOrder"
    assert harness.supervisor.trusted and len(harness.factory.built) == 1


async def test_silence_past_the_limit_marks_stale_and_rebuilds(harness: Harness) -> None:
    await harness.connected()
    first = harness.factory.last
    await harness.clock.advance(29.0)
    assert harness.supervisor.trusted
    await harness.clock.advance(2.0)
    await harness.connected(count=2)
    assert first.closed
    assert FeedState.STALE in harness.states()
    assert harness.supervisor.reconnects == 1
    assert harness.setups == 2


async def test_pings_count_as_traffic(harness: Harness) -> None:
    await harness.connected()
    for _ in range(10):
        await harness.clock.advance(10.0)
        harness.factory.last.ping()
    assert len(harness.factory.built) == 1 and harness.supervisor.trusted
    age = harness.supervisor.health().last_event_age
    assert age is not None and age < 1.0


async def test_a_dropped_connection_is_rebuilt_at_once_when_it_had_been_stable(
    harness: Harness,
) -> None:
    await harness.connected()
    for _ in range(4):
        await harness.clock.advance(10.0)
        harness.factory.last.ping()
    harness.factory.last.drop("close message (Connection closed with an error.)")
    await settle_until(harness.clock, lambda: len(harness.factory.built) == 2)  # no time passed
    await harness.connected(count=2)
    assert FeedState.RECONNECTING in harness.states()


async def test_failed_connects_back_off_then_report_down_and_keep_trying(
    fake_clock: FakeClock,
) -> None:
    h = Harness(fake_clock)
    h.factory.errors = [HubConnectError("refused")] * 6
    await h.supervisor.start()
    times: list[float] = []
    seen = 0
    for _ in range(2000):
        if len(h.factory.built) > seen:
            seen = len(h.factory.built)
            times.append(fake_clock.monotonic())
        if h.supervisor.trusted:
            break
        await fake_clock.advance(0.1)
    assert h.supervisor.trusted and len(h.factory.built) == 7
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(later >= earlier * 0.9 for earlier, later in itertools.pairwise(gaps))
    assert max(gaps) <= 30.0 + 0.2
    assert FeedState.DOWN in h.states()
    assert h.states()[-1] is FeedState.CONNECTED
    await h.supervisor.stop()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(FakeClock(), base=0.5, maximum=30.0, rng=random.Random(1))
    assert backoff.delay(0) == 0.0
    for failures, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (8, 30.0), (20, 30.0)]:
        delays = {backoff.delay(failures) for _ in range(50)}
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(delays) > 1


async def test_setup_failure_discards_the_connection(fake_clock: FakeClock) -> None:
    h = Harness(fake_clock)
    h.setup_error = RuntimeError("REST down")
    await h.supervisor.start()
    await settle_until(fake_clock, lambda: len(h.factory.built) >= 2, step=0.25)
    assert h.factory.built[0].closed
    assert not h.supervisor.trusted
    h.setup_error = None
    await h.connected(count=3)
    await h.supervisor.stop()


async def test_gateway_logout_renews_the_token_and_reconnects(harness: Harness) -> None:
    await harness.connected()
    harness.factory.last.push("GatewayLogout", None)
    await harness.connected(count=2)
    assert harness.tokens.renewals == 1
    assert harness.factory.last.token == "token-2"
    assert harness.events == []  # the logout is handled here, not passed on


async def test_a_new_token_rebuilds_the_connection_with_it(harness: Harness) -> None:
    await harness.connected()
    harness.tokens.bump()
    await harness.connected(count=2)
    assert harness.factory.built[0].closed
    assert harness.factory.last.token == "token-2"


async def test_unauthorized_connect_renews_the_token_first(fake_clock: FakeClock) -> None:
    h = Harness(fake_clock)
    h.factory.errors = [HubConnectError("HTTP 401", unauthorized=True)]
    await h.supervisor.start()
    await h.connected(count=2)
    assert h.tokens.renewals == 1
    await h.supervisor.stop()


async def test_no_token_is_a_failed_attempt_not_a_crash(fake_clock: FakeClock) -> None:
    h = Harness(fake_clock)
    h.tokens.fail_with = AuthError("Auth/loginKey", "gateway down")
    await h.supervisor.start()
    await settle_until(
        fake_clock,
        lambda: h.supervisor.state is FeedState.DOWN and h.supervisor.reconnects >= 3,
        step=0.5,
    )
    assert "no token" in h.supervisor.health().detail
    h.tokens.fail_with = None
    await settle_until(fake_clock, lambda: h.supervisor.trusted, step=0.5)
    await h.supervisor.stop()


async def test_invoke_without_connection_raises(fake_clock: FakeClock) -> None:
    from riskman.gateway.realtime import HubError

    h = Harness(fake_clock)
    with pytest.raises(HubError):
        await h.supervisor.invoke("SubscribeAccounts", [])


async def test_stop_while_connecting_closes_the_half_built_connection(
    fake_clock: FakeClock,
) -> None:
    h = Harness(fake_clock)
    h.setup_gate = asyncio.Event()
    await h.supervisor.start()
    await settle_until(fake_clock, lambda: h.setups == 1)
    await h.supervisor.stop()
    assert h.factory.last.closed
    tasks: Any = [t for t in asyncio.all_tasks() if t.get_name().startswith("riskman-hub")]
    assert tasks == []


async def test_events_already_received_are_handed_over_before_a_rebuild(
    harness: Harness,
) -> None:
    await harness.connected()
    hub = harness.factory.last
    harness.supervisor.rebuild("test")
    for order_id in range(3):
        hub.push("GatewayUserOrder", {"id": order_id})
    await harness.connected(count=2)
    assert [e.arguments[0]["id"] for e in harness.events] == [0, 1, 2]
