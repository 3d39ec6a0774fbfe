"""Gateway faults, through the simulator's fault injection, against the whole riskman (REST
client, signalrcore hubs, feed, engine, SQLite): what the trader is promised still holds.

Timings are shortened through the configuration (silence timeout, poll interval, backoff), never
by reaching into riskman.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from riskman.config import GatewayConfig, Settings
from riskman.core.clock import FakeClock, SystemClock
from riskman.core.enums import OrderSide
from riskman.core.ports import PositionEvent, TradeEvent
from riskman.core.views import FeedState
from riskman.gateway.feed import GatewayFeed
from riskman.gateway.ratelimit import RateLimiter
from riskman.gateway.realtime import HubEvent
from riskman.runtime import Runtime
from riskman.sim import Simulator
from tests.conftest import HOLIDAYS, EngineFactory
from tests.e2e.conftest import (
    MNQ,
    RuntimeFactory,
    buy,
    engine_of,
    eventually,
    sell,
    sim_positions,
)
from tests.fakes import FakeGateway
from tests.fakes import position as fake_position
from tests.fakes import trade as fake_trade


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def _successes(sim: Simulator, endpoint: str, since: float = 0.0) -> int:
    return sum(
        1
        for r in sim.requests
        if r.endpoint == endpoint
        and r.received >= since
        and r.response is not None
        and r.response.get("success") is True
    )


# --- dropped sockets -------------------------------------------------------------------------


async def test_a_hundred_drops_in_a_row_are_each_resubscribed_and_reconciled(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    account = sim.account_ids[0]
    runtime = await make_runtime(
        {"max_contracts": {"limit": 2}},
        accounts=[account],
        gateway={"reconnect_max_backoff": 0.01},
    )
    # 200 requests a minute is the real gateway's budget and the client keeps to it; a hundred
    # reconciles in a few seconds need more (the simulator has no limit of its own).
    assert runtime.rest is not None and runtime.feed is not None
    runtime.rest.limiter = RateLimiter(SystemClock(), limit=100_000, window=61, reserve=30)
    feed, engine = runtime.feed, engine_of(runtime)
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ)
    await sim.wait_for_subscription("market", "SubscribeContractQuotes", MNQ, timeout=10)

    for drop in range(100):
        reconnects = feed.user.reconnects
        since = time.monotonic()
        assert sim.faults.drop_connections() == 2, f"drop {drop}: both hubs were connected"
        if drop % 10 == 5:
            # The trader trades while riskman is deaf: only the reconcile can bring the fills.
            buy(sim, account, MNQ)
            sell(sim, account, MNQ)
        # The reconcile's fill read comes after the resubscription, on the new connection;
        # the feed is trusted again only once that reconcile is done.
        await sim.wait_for_request(
            "Trade/search", lambda r: r.body["accountId"] == account, since=since, timeout=10
        )
        await sim.wait_for_subscription("user", "SubscribeTrades", account, timeout=10)
        await sim.wait_for_subscription("user", "SubscribePositions", account, timeout=10)
        await sim.wait_for_subscription("market", "SubscribeContractQuotes", MNQ, timeout=10)
        assert await feed.wait_trusted(10), f"drop {drop}: the user feed is not trusted again"
        assert feed.user.reconnects > reconnects

    # Nothing was lost or counted twice across the gaps, and riskman still enforces.
    await engine.drain()
    fills = sim.trades(account)
    assert len(fills) == 1 + 2 * 10
    assert engine.pnl.day_totals(account).fills == len(fills)
    expected = sum((t.net_pnl for t in fills), Decimal(0))
    assert engine.pnl.get_daily_realized_pnl(account) == expected
    assert engine.state.get_contract_count(account, MNQ) == 1
    buy(sim, account, MNQ, 2)
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10)
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2)


# --- a silent hub ----------------------------------------------------------------------------


async def test_a_silent_user_hub_is_said_loudly_and_rest_polls_still_catch_a_breach(
    sim: Simulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="riskman")
    account = sim.account_ids[0]
    runtime = await make_runtime(
        {"max_contracts": {"limit": 2}},
        accounts=[account],
        gateway={"hub_silence_timeout": 1, "stale_poll_interval": 0.5},
    )
    engine = engine_of(runtime)
    assert engine.snapshot().armed
    # Silent, and every reconnect silent too: an outage that lasts.
    sim.faults.silence("user", new_sockets=True)
    await eventually(
        lambda: (
            (health := engine.snapshot().user_feed) is not None
            and health.state is not FeedState.CONNECTED
        ),
        what="the user feed to be reported untrusted",
    )
    snapshot = engine.snapshot()
    assert not snapshot.armed
    assert snapshot.user_feed is not None and not snapshot.user_feed.trusted
    await eventually(
        lambda: any("user hub: stale" in m for m in _messages(caplog)),
        what="a WARNING that the user hub is stale",
    )
    await eventually(
        lambda: any("re-read over REST every 0.5 s" in m for m in _messages(caplog)),
        what="a WARNING that riskman now polls REST",
    )

    # The trader breaks the limit while the stream is dead: the REST poll catches it.
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 3)
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10)
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2)
    assert not engine.snapshot().armed

    sim.faults.silence("user", False)
    assert runtime.feed is not None and await runtime.feed.wait_trusted(15)
    assert engine.snapshot().armed
    await eventually(
        lambda: any("user feed trusted again" in m for m in _messages(caplog, logging.INFO)),
        what="an INFO that the feed is trusted again",
    )


async def test_frozen_quotes_fall_back_to_rest_prices_and_a_loss_is_still_closed(
    sim: Simulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """PROJECTX_API §3.4 / project-x-py #97: the market hub stays connected but stops sending,
    while REST bars stay current. Stale quotes never close a position by themselves; prices
    read from the bars do."""
    caplog.set_level(logging.INFO, logger="riskman")
    account = sim.account_ids[0]
    runtime = await make_runtime(
        {"daily_unrealized_loss": {"limit": 40}},
        accounts=[account],
        quotes={"stale_after": 1},
        gateway={"stale_poll_interval": 0.3, "hub_silence_timeout": 60},
    )
    engine = engine_of(runtime)
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ)  # long 1 MNQ at 24500.25: $2 a point
    await eventually(lambda: engine.quotes.get_last_price(MNQ) == Decimal("24500"))
    sim.faults.silence("market", new_sockets=True)
    since = time.monotonic()
    sim.set_price(MNQ, "24470")  # -$60.50 open: only REST can tell riskman
    request = await sim.wait_for_request("Position/closeContract", timeout=15, since=since)
    assert request.body == {"accountId": account, "contractId": MNQ}
    await eventually(lambda: MNQ not in sim_positions(sim, account))
    await engine.actions.wait_idle(10)
    assert any("pricing it from History/retrieveBars" in m for m in _messages(caplog))
    assert any(r.rule == "RULE-004" and r.action == "close" and r.ok for r in engine.recent_log())


async def test_rest_prices_are_marked_as_such_in_the_snapshot(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    account = sim.account_ids[0]
    runtime = await make_runtime(
        {"daily_unrealized_loss": {"limit": 400}},
        accounts=[account],
        quotes={"stale_after": 1},
        gateway={"stale_poll_interval": 0.3, "hub_silence_timeout": 60},
    )
    engine = engine_of(runtime)
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ)
    await eventually(lambda: engine.quotes.get_last_price(MNQ) == Decimal("24500"))
    sim.faults.silence("market", new_sockets=True)
    sim.set_price(MNQ, "24490")
    await eventually(lambda: MNQ in engine.snapshot().rest_priced, timeout=15)
    view = engine.snapshot().accounts[0].positions[0]
    assert view.price_source == "rest" and view.last == Decimal("24490")
    assert view.open_pnl == Decimal("-20.50")
    sim.faults.silence("market", False)
    sim.faults.drop_connections("market")  # a fresh, healthy connection
    sim.set_price(MNQ, "24495")
    await eventually(lambda: engine.snapshot().rest_priced == (), timeout=15)
    view = engine.snapshot().accounts[0].positions[0]
    assert view.price_source == "hub" and view.last == Decimal("24495")


# --- sessions: expiry and logout ---------------------------------------------------------------


async def test_token_expiry_and_gateway_logout_mid_session_keep_enforcing(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    account = sim.account_ids[0]
    runtime = await make_runtime({"max_contracts": {"limit": 2}}, accounts=[account])
    assert runtime.feed is not None
    feed = runtime.feed
    sim.set_price(MNQ, "24500")

    # Every token dies; the hubs can only come back with a new one.
    reconnects = feed.user.reconnects
    since = time.monotonic()
    sim.expire_tokens()
    sim.faults.drop_connections()
    await sim.wait_for_request("Auth/loginKey", since=since, timeout=15)
    await eventually(
        lambda: feed.user.reconnects > reconnects and feed.trusted, what="trusted after expiry"
    )
    buy(sim, account, MNQ, 3)
    request = await sim.wait_for_request("Position/partialCloseContract", since=since, timeout=10)
    assert request.response is not None and request.response["success"] is True
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2)

    # The gateway ends the session on the hub: a new token, new connections, still guarding.
    reconnects = feed.user.reconnects
    since = time.monotonic()
    assert sim.send_logout("user") == 1
    await eventually(
        lambda: feed.user.reconnects > reconnects and feed.trusted, what="trusted after logout"
    )
    assert any(
        r.endpoint in ("Auth/validate", "Auth/loginKey") and r.received >= since
        for r in sim.requests
    )
    buy(sim, account, MNQ, 1)
    await sim.wait_for_request("Position/partialCloseContract", since=since, timeout=10)
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2)


# --- enforcement under gateway errors --------------------------------------------------------

FAULTS = ["http 429", "http 500", "timeout", "timeout, user hub silent", "500 on reads too"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_close_under_gateway_errors_ends_flat_with_exactly_one_close(
    sim: Simulator, make_runtime: RuntimeFactory, fault: str
) -> None:
    """The position ends flat; the close that took effect is the only one (a second one could
    reverse the position at a real broker), whatever the gateway answered in between."""
    account = sim.account_ids[0]
    runtime = await make_runtime(
        {"daily_unrealized_loss": {"limit": 40}},
        accounts=[account],
        gateway={"request_timeout": 1, "hub_silence_timeout": 30},
        enforcement={"verify_after": 0.5},
    )
    engine = engine_of(runtime)
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 2)
    await eventually(lambda: engine.state.get_contract_count(account, MNQ) == 2)
    await eventually(lambda: engine.quotes.get_last_price(MNQ) == Decimal("24500"))
    close = "Position/closeContract"
    if fault == "http 429":
        sim.faults.fail(close, http_status=429, times=4)  # more than the client's own retries
    elif fault == "http 500":
        sim.faults.fail(close, http_status=500, times=2)  # outcome unknown: re-read, then again
    elif fault == "timeout":
        sim.faults.delay(close, 2.5)  # closed at once, answered after riskman gave up waiting
    elif fault == "timeout, user hub silent":
        sim.faults.delay(close, 2.5)
        sim.faults.silence("user", new_sockets=True)  # and no position event to confirm it
    else:
        sim.faults.fail(close, http_status=500, times=2)
        sim.faults.fail("Position/searchOpen", http_status=500, times=3)
    since = time.monotonic()
    sim.set_price(MNQ, "24480")  # -$81 open on 2 MNQ
    await eventually(lambda: MNQ not in sim_positions(sim, account), timeout=20, what="flat")
    await engine.actions.wait_idle(20)
    assert _successes(sim, close, since) == 1
    assert [r for r in sim.requests if r.endpoint == "Position/partialCloseContract"] == []
    # At the broker: one sell of 2 after the breach, and nothing else.
    sells = [t for t in sim.trades(account) if t.side is OrderSide.ASK]
    assert [t.size for t in sells] == [2]
    assert any(r.rule == "RULE-004" and r.action == "close" and r.ok for r in engine.recent_log())


async def test_a_timed_out_partial_close_is_never_repeated_into_a_reversal(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    account = sim.account_ids[0]
    runtime = await make_runtime(
        {"max_contracts": {"limit": 1}},
        accounts=[account],
        gateway={"request_timeout": 1, "hub_silence_timeout": 1, "stale_poll_interval": 0.5},
        enforcement={"verify_after": 0.5},
    )
    engine = engine_of(runtime)
    sim.set_price(MNQ, "24500")
    sim.faults.delay("Position/partialCloseContract", 2.5)
    # The stream is dead (riskman learns of the position from its REST poll) and the reduction
    # is never confirmed by an event: only a re-read can tell riskman it happened.
    sim.faults.silence("user", new_sockets=True)
    since = time.monotonic()
    buy(sim, account, MNQ, 3)
    await sim.wait_for_request("Position/partialCloseContract", since=since, timeout=15)
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 1)
    await engine.actions.wait_idle(20)
    assert _successes(sim, "Position/partialCloseContract", since) == 1
    assert _successes(sim, "Position/closeContract", since) == 0
    assert sim_positions(sim, account)[MNQ].size == 1


# --- the gateway down at start -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_gateway_down_at_start_is_retried_said_and_enforced_once_reachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="riskman")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    sim = Simulator(seed=3, quote_interval=None, ping_interval=2.0)
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 3)  # opened while riskman could not reach the gateway
    settings = Settings.model_validate(
        {
            "gateway": {
                "api_url": base,
                "user_hub_url": f"{base}/hubs/user",
                "market_hub_url": f"{base}/hubs/market",
                "username": sim.username,
                "stale_poll_interval": 1,
                "reconnect_max_backoff": 1,
            },
            "holidays_file": HOLIDAYS,
            "database": tmp_path / "riskman.db",
            "accounts": [account],
            "rules": {"max_contracts": {"limit": 2}},
        }
    )
    runtime = Runtime(settings, api_key=sim.api_key, start_wait=60)
    starting = asyncio.create_task(runtime.start())
    try:
        await eventually(
            lambda: any(f"gateway at {base} unreachable" in m for m in _messages(caplog)),
            timeout=20,
            what="a WARNING that the gateway is unreachable",
        )
        assert not starting.done()
        await sim.start(port=port)
        await asyncio.wait_for(starting, 30)
        assert await runtime.wait_armed(15)
        request = await sim.wait_for_request("Position/partialCloseContract", timeout=10)
        assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
        await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2)
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await runtime.stop()
        await sim.stop()


class _Bars:
    """`RestClient.last_price` as the pricer uses it: scripted answers, counted calls."""

    def __init__(self) -> None:
        self.price: Decimal | None = None
        self.calls = 0

    async def last_price(self, contract_id: str) -> Decimal | None:
        self.calls += 1
        return self.price


class _Sink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def submit(self, event: Any) -> None:
        self.events.append(event)


async def test_rest_pricing_waits_a_minute_when_the_market_has_no_bars(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closed market (no bar in the last half hour): nothing is priced, and the bars are not
    asked for every poll; once trades resume the price flows, with one WARNING."""
    caplog.set_level(logging.INFO, logger="riskman")
    clock = FakeClock()
    bars, sink = _Bars(), _Sink()
    feed = GatewayFeed(
        bars,  # type: ignore[arg-type]
        GatewayConfig(stale_poll_interval=5),
        sink,  # type: ignore[arg-type]
        clock=clock,
        quote_stale_after=10,
    )
    feed.want_quotes(frozenset({MNQ}))
    await clock.advance(5)
    await feed._price_once(5)
    assert bars.calls == 0  # not stale yet
    await clock.advance(6)
    await feed._price_once(5)
    assert bars.calls == 1 and sink.events == []
    for _ in range(11):  # 55 s of polls: not asked again
        await clock.advance(5)
        await feed._price_once(5)
    assert bars.calls == 1
    bars.price = Decimal("24490.25")
    await clock.advance(6)
    await feed._price_once(5)
    await clock.advance(5)
    await feed._price_once(5)
    assert bars.calls == 3
    assert [(e.contract_id, e.quote.last_price, e.source) for e in sink.events] == [
        (MNQ, Decimal("24490.25"), "rest")
    ] * 2
    assert len([m for m in _messages(caplog) if "History/retrieveBars" in m]) == 1
    feed._on_market_event(HubEvent("GatewayQuote", [MNQ, {"lastPrice": 24491}]))
    assert any("quotes for" in m and "resumed" in m for m in _messages(caplog, logging.INFO))
    await feed._price_once(5)
    assert bars.calls == 3


async def test_a_refused_close_does_not_swallow_the_traders_next_fill(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    """riskman notes the fill each of its closes will bring, so that fill is not counted as
    the trader's trade (RULE-006). A close the gateway refused brings no fill: the trader's own
    fill that follows must count."""
    engine = await make_engine({"trade_frequency_limit": {"per_minute": 50}})
    await engine.process(PositionEvent(fake_position(7, MNQ, 1)))  # the gateway has no such
    task = engine.actions.close_position(7, MNQ, rule="TEST", reason="test")
    assert task is not None and await task  # answered "already flat"
    assert engine.recent_log()[0].result == "already flat"
    await engine.process(TradeEvent(fake_trade(7, pnl="-5", order_id=4242)))
    assert engine.counter.get_trade_counts(7).session == 1


async def test_a_hanging_close_does_not_hold_the_position_open(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    """The first close gets HTTP 500, the second hangs (the general request timeout is 10 s):
    the enforcement call's own deadline (2 s) gives up on it, riskman re-reads the positions and
    closes again. Flat within 5 s, one close took effect, and the hung call acting late closes
    nothing more (it can never reverse the position)."""
    account = sim.account_ids[0]
    runtime = await make_runtime(
        {"daily_unrealized_loss": {"limit": 40}},
        accounts=[account],
        gateway={"request_timeout": 10, "hub_silence_timeout": 30},
    )
    engine = engine_of(runtime)
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 2)
    await eventually(lambda: engine.state.get_contract_count(account, MNQ) == 2)
    await eventually(lambda: engine.quotes.get_last_price(MNQ) == Decimal("24500"))
    close = "Position/closeContract"
    sim.faults.fail(close, http_status=500)
    sim.faults.hang(close, 4.0)  # acts (on a flat account) long after riskman gave up on it
    since = time.monotonic()
    sim.set_price(MNQ, "24480")  # -$81 open on 2 MNQ
    await eventually(lambda: MNQ not in sim_positions(sim, account), timeout=10, what="flat")
    took = time.monotonic() - since
    assert took < 5.0, f"flat {took:.1f} s after the breach"
    await asyncio.sleep(max(0.0, since + 4.5 - time.monotonic()))  # the hung call has acted
    await engine.actions.wait_idle(20)
    assert MNQ not in sim_positions(sim, account)
    assert _successes(sim, close, since) == 1
    sells = [t for t in sim.trades(account) if t.side is OrderSide.ASK]
    assert [t.size for t in sells] == [2]
