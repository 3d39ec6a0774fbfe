"""The real client (httpx REST + signalrcore hubs) against the real simulator on 127.0.0.1.

Every wait is a condition with a deadline (`wait_until`, the simulator's `wait_for_*`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from riskman.config import GatewayConfig
from riskman.core.enums import OrderSide, OrderStatus, OrderType
from riskman.core.ports import OrderEvent, PositionEvent, QuoteEvent, TradeEvent
from riskman.core.views import FeedState
from riskman.gateway import realtime
from riskman.gateway.errors import NotFound, OutcomeUnknown
from riskman.gateway.feed import GatewayFeed
from riskman.gateway.realtime import SignalRCoreTransport
from riskman.gateway.rest import RestClient, RetryPolicy
from riskman.sim import Simulator
from tests.gateway.support import RecordingSink, wait_until

pytestmark = pytest.mark.e2e

MNQ = "CON.F.US.MNQ.Z26"
ES = "CON.F.US.EP.Z26"


def gateway_config(sim: Any, **overrides: Any) -> GatewayConfig:
    values: dict[str, Any] = {
        "api_url": sim.base_url,
        "user_hub_url": sim.user_hub_url,
        "market_hub_url": sim.market_hub_url,
        "username": "demo",
        "request_timeout": 2.0,
        "hub_silence_timeout": 5.0,
        "reconnect_max_backoff": 1.0,
        "stale_poll_interval": 0.5,
    }
    values.update(overrides)
    return GatewayConfig(**values)


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    simulator = Simulator(seed=1, quote_interval=None, ping_interval=0.5)
    await simulator.start(host="127.0.0.1", port=0)
    simulator.set_price(MNQ, 21000)
    simulator.set_price(ES, 6000)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def client(sim: Any) -> AsyncIterator[RestClient]:
    rest = RestClient(gateway_config(sim), "demo", retry=RetryPolicy(base_delay=0.05))
    try:
        yield rest
    finally:
        await rest.aclose()


@dataclass
class Live:
    sim: Any
    rest: RestClient
    sink: RecordingSink
    feed: GatewayFeed

    @property
    def account(self) -> int:
        return int(self.sim.account_ids[0])

    def snapshots_after(self, mark: int, *, full: bool = True) -> list[Any]:
        return [s for s in self.sink.snapshots[mark:] if (s.trades is not None) == full]


async def start_feed(sim: Any, **config: Any) -> Live:
    cfg = gateway_config(sim, **config)
    rest = RestClient(cfg, "demo", retry=RetryPolicy(base_delay=0.05))
    sink = RecordingSink(day_start=datetime.now(UTC) - timedelta(hours=12), quotes=frozenset({MNQ}))
    feed = GatewayFeed(rest, cfg, sink, sim.account_ids)
    await feed.start()
    return Live(sim, rest, sink, feed)


async def stop_feed(live: Live) -> None:
    await live.feed.stop()
    await live.rest.aclose()


@pytest.fixture
async def live(sim: Any) -> AsyncIterator[Live]:
    running = await start_feed(sim)
    try:
        assert await running.feed.wait_trusted(5.0)
        await wait_until(lambda: running.feed.market.trusted, what="market hub up")
        yield running
    finally:
        await stop_feed(running)


def user_subscriptions(account_ids: list[int]) -> set[tuple[str, object]]:
    subs: set[tuple[str, object]] = {("SubscribeAccounts", None)}
    for account_id in account_ids:
        subs |= {
            ("SubscribeOrders", account_id),
            ("SubscribePositions", account_id),
            ("SubscribeTrades", account_id),
        }
    return subs


# --- REST -----------------------------------------------------------------------------------


async def test_login_refresh_and_every_endpoint(sim: Any, client: RestClient) -> None:
    await client.login()
    first = await client.access_token()
    assert await client.renew_token() != first  # Auth/validate hands out a new token
    account = sim.account_ids[0]
    accounts = await client.search_accounts()
    assert {a.id for a in accounts} == set(sim.account_ids)

    sim.submit_order(account, MNQ, OrderSide.BID, 2)
    (position,) = await client.search_open_positions(account)
    assert position.contract_id == MNQ and position.size == 2

    order_id = await client.place_order(
        account,
        MNQ,
        OrderType.LIMIT,
        OrderSide.BID,
        1,
        limit_price=Decimal("20000"),
        custom_tag="riskman-e2e-1",
    )
    (working,) = await client.search_open_orders(account)
    assert working.id == order_id and working.custom_tag == "riskman-e2e-1"
    await client.modify_order(account, order_id, limit_price=Decimal("20000.25"))
    (working,) = await client.search_open_orders(account)
    assert working.limit_price == Decimal("20000.25")
    await client.cancel_order(account, order_id)
    assert await client.search_open_orders(account) == []
    since = datetime.now(UTC) - timedelta(hours=1)
    history = await client.search_orders(account, since)
    assert any(o.id == order_id and o.status is OrderStatus.CANCELLED for o in history)

    await client.partial_close_contract(account, MNQ, 1)
    (position,) = await client.search_open_positions(account)
    assert position.size == 1
    await client.close_contract(account, MNQ)
    assert await client.search_open_positions(account) == []
    trades = await client.search_trades(account, since)
    assert len(trades) == 3 and sum(1 for t in trades if t.is_closing) == 2

    contract = await client.get_contract(MNQ)
    assert contract.tick_size == Decimal("0.25") and contract.tick_value == Decimal("0.5")
    found = await client.search_contracts("MNQ")
    assert MNQ in {c.id for c in found}
    assert await client.last_price(MNQ) is not None

    endpoints = {r.endpoint for r in sim.requests}
    assert {
        "Auth/loginKey",
        "Auth/validate",
        "Account/search",
        "Position/searchOpen",
        "Position/closeContract",
        "Position/partialCloseContract",
        "Order/place",
        "Order/modify",
        "Order/cancel",
        "Order/search",
        "Order/searchOpen",
        "Trade/search",
        "Contract/searchById",
        "Contract/search",
        "History/retrieveBars",
    } <= endpoints


async def test_close_of_a_flat_position_is_not_found(sim: Any, client: RestClient) -> None:
    with pytest.raises(NotFound) as info:
        await client.close_contract(sim.account_ids[0], MNQ)
    assert info.value.code_name == "PositionNotFound"


async def test_429_and_500_on_reads_are_retried(sim: Any, client: RestClient) -> None:
    account = sim.account_ids[0]
    sim.faults.fail("Position/searchOpen", http_status=429)
    sim.faults.fail("Order/searchOpen", http_status=500, times=2)
    assert await client.search_open_positions(account) == []
    assert await client.search_open_orders(account) == []
    calls = [r for r in sim.requests if r.endpoint == "Order/searchOpen"]
    assert [r.status for r in calls] == [500, 500, 200]


async def test_mutations_retry_429_but_not_500(sim: Any, client: RestClient) -> None:
    account = sim.account_ids[0]
    sim.submit_order(account, MNQ, OrderSide.BID, 1)
    sim.faults.fail("Position/closeContract", http_status=429)
    await client.close_contract(account, MNQ)
    assert sim.positions(account) == []
    sim.submit_order(account, MNQ, OrderSide.BID, 1)
    sim.faults.fail("Position/closeContract", http_status=500)
    with pytest.raises(OutcomeUnknown):
        await client.close_contract(account, MNQ)
    closes = [r for r in sim.requests if r.endpoint == "Position/closeContract"]
    assert [r.status for r in closes] == [429, 200, 500]


async def test_a_timed_out_close_is_outcome_unknown_and_not_repeated(sim: Any) -> None:
    rest = RestClient(gateway_config(sim, request_timeout=0.3), "demo")
    account = sim.account_ids[0]
    sim.submit_order(account, MNQ, OrderSide.BID, 1)
    sim.faults.delay("Position/closeContract", 1.0)
    with pytest.raises(OutcomeUnknown):
        await rest.close_contract(account, MNQ)
    assert sim.positions(account) == []  # it did happen: the caller must re-read
    assert sum(1 for r in sim.requests if r.endpoint == "Position/closeContract") == 1
    await rest.aclose()


async def test_expired_token_mid_session_logs_in_again(sim: Any, client: RestClient) -> None:
    await client.search_accounts()
    version = client.token_version
    sim.expire_tokens()
    assert await client.search_open_positions(sim.account_ids[0]) == []
    assert client.token_version > version
    statuses = [(r.endpoint, r.status) for r in sim.requests]
    assert ("Position/searchOpen", 401) in statuses
    assert statuses[-2:] == [("Auth/loginKey", 200), ("Position/searchOpen", 200)]


# --- hubs -----------------------------------------------------------------------------------


async def test_subscriptions_arrive_at_the_simulator(live: Live) -> None:
    assert live.sim.subscriptions("user") == user_subscriptions(live.sim.account_ids)
    assert live.sim.subscriptions("market") == {("SubscribeContractQuotes", MNQ)}
    live.feed.want_quotes(frozenset({MNQ, ES}))
    await live.sim.wait_for_subscription("market", "SubscribeContractQuotes", ES)
    live.feed.want_quotes(frozenset({ES}))
    await wait_until(
        lambda: live.sim.subscriptions("market") == {("SubscribeContractQuotes", ES)},
        what="MNQ unsubscribed",
    )


async def test_events_arrive_parsed_wrapped_and_bare(live: Live) -> None:
    account = live.account
    live.sim.submit_order(account, MNQ, OrderSide.BID, 1)
    await wait_until(lambda: bool(live.sink.of_type(TradeEvent)), what="a fill")
    await wait_until(lambda: bool(live.sink.of_type(PositionEvent)), what="a position")
    assert live.sink.of_type(OrderEvent)[-1].order.status is OrderStatus.FILLED
    live.sim.emit_bare = True
    mark = len(live.sink.events)
    live.sim.submit_order(account, MNQ, OrderSide.ASK, 1)
    await wait_until(
        lambda: any(
            isinstance(e, PositionEvent) and e.position.is_closed for e in live.sink.events[mark:]
        ),
        what="the close, sent bare",
    )
    assert any(isinstance(e, TradeEvent) and e.trade.is_closing for e in live.sink.events[mark:])
    live.sim.set_price(MNQ, 21010)
    await wait_until(
        lambda: any(
            isinstance(e, QuoteEvent) and e.quote.last_price == Decimal("21010")
            for e in live.sink.events
        ),
        what="a quote",
    )


async def test_dropped_socket_reconnects_resubscribes_and_reconciles_the_gap(live: Live) -> None:
    sim, account = live.sim, live.account
    mark = len(live.sink.snapshots)
    sim.faults.drop_connections("user")
    # Opened while the client has no socket: no event can reach it, only REST can tell.
    sim.submit_order(account, ES, OrderSide.ASK, 3)
    await wait_until(
        lambda: any(
            s.account.id == account and any(p.contract_id == ES for p in s.positions)
            for s in live.snapshots_after(mark)
        ),
        what="a reconcile showing the position opened during the gap",
    )
    await wait_until(lambda: live.feed.user.trusted, what="user hub trusted again")
    assert sim.subscriptions("user") == user_subscriptions(sim.account_ids)
    assert live.feed.user.reconnects >= 1
    assert "reconnecting" in live.sink.states("user")
    assert live.sink.states("user")[-1] == "connected"


async def test_close_message_and_market_drop_are_recovered(live: Live) -> None:
    sim = live.sim
    live.feed.want_quotes(frozenset({MNQ, ES}))
    await sim.wait_for_subscription("market", "SubscribeContractQuotes", ES)
    live.sink.quotes = frozenset({MNQ, ES})
    sim.faults.drop_connections(close_message=True)
    await wait_until(
        lambda: live.feed.user.reconnects >= 1 and live.feed.market.reconnects >= 1,
        what="both hubs rebuilt",
    )
    await sim.wait_for_subscription("market", "SubscribeContractQuotes", ES)
    await sim.wait_for_subscription("market", "SubscribeContractQuotes", MNQ)
    await wait_until(lambda: live.feed.user.trusted and live.feed.market.trusted)


async def test_a_silent_hub_is_rebuilt(sim: Any) -> None:
    live = await start_feed(sim, hub_silence_timeout=1.5)
    try:
        assert await live.feed.wait_trusted(5.0)
        sim.faults.silence("user")
        await wait_until(
            lambda: "stale" in live.sink.states("user"), timeout=5.0, what="stale reported"
        )
        await wait_until(
            lambda: live.feed.user.trusted and live.feed.user.reconnects >= 1,
            timeout=5.0,
            what="rebuilt",
        )
        await sim.wait_for_subscription("user", "SubscribeTrades", sim.account_ids[0])
        assert sim.connection_count("user") == 1  # the frozen socket was closed
        assert live.feed.market.reconnects == 0  # pings kept the healthy hub trusted
    finally:
        await stop_feed(live)


async def test_gateway_logout_re_authenticates_and_reconnects(live: Live) -> None:
    sim = live.sim
    logins = sum(1 for r in sim.requests if r.endpoint in ("Auth/loginKey", "Auth/validate"))
    assert sim.send_logout("user") == 1
    await wait_until(
        lambda: live.feed.user.reconnects >= 1 and live.feed.user.trusted, what="back up"
    )
    after = sum(1 for r in sim.requests if r.endpoint in ("Auth/loginKey", "Auth/validate"))
    assert after > logins
    assert sim.subscriptions("user") == user_subscriptions(sim.account_ids)


async def test_expired_token_rebuilds_the_hubs_with_a_new_one(live: Live) -> None:
    sim = live.sim
    mark = len(sim.requests)
    sim.expire_tokens()
    sim.faults.drop_connections()  # the hubs must now come back with a fresh token
    await wait_until(
        lambda: (
            live.feed.user.reconnects >= 1 and live.feed.user.trusted and live.feed.market.trusted
        ),
        timeout=10.0,
        what="hubs back with a new token",
    )
    assert any(r.endpoint == "Auth/loginKey" for r in sim.requests[mark:])
    assert sim.subscriptions("user") == user_subscriptions(sim.account_ids)


@pytest.mark.parametrize("kind", ["not_json", "bad_payload", "unknown_type", "truncated"])
async def test_malformed_frames_are_skipped_and_the_connection_survives(
    live: Live, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim = live.sim
    assert sim.faults.send_malformed("user", kind) == 1
    assert sim.faults.send_malformed("market", kind) == 1
    mark = len(live.sink.events)
    sim.submit_order(live.account, MNQ, OrderSide.BID, 1)
    sim.set_price(MNQ, 21002)
    await wait_until(
        lambda: any(isinstance(e, TradeEvent) for e in live.sink.events[mark:]),
        what="events after the bad frame",
    )
    await wait_until(
        lambda: any(isinstance(e, QuoteEvent) for e in live.sink.events[mark:]),
        what="quotes after the bad frame",
    )
    assert live.feed.user.reconnects == 0 and live.feed.market.reconnects == 0
    if kind == "bad_payload":
        assert live.feed.malformed_events == 2


async def test_gateway_down_at_start_is_reported_and_retried(unused_port: int) -> None:
    sim = Simulator(seed=1, ping_interval=0.5)
    cfg = GatewayConfig(
        api_url=f"http://127.0.0.1:{unused_port}",
        user_hub_url=f"http://127.0.0.1:{unused_port}/hubs/user",
        market_hub_url=f"http://127.0.0.1:{unused_port}/hubs/market",
        username="demo",
        request_timeout=1.0,
        reconnect_max_backoff=0.5,
        stale_poll_interval=0.3,
    )
    rest = RestClient(cfg, "demo", retry=RetryPolicy(base_delay=0.01, read_attempts=2))
    sink = RecordingSink(quotes=frozenset({MNQ}))
    feed = GatewayFeed(rest, cfg, sink, [1001])
    try:
        await feed.start()  # does not raise
        await wait_until(
            lambda: "down" in sink.states("user"), timeout=10.0, what="user hub reported down"
        )
        assert not feed.trusted
        await sim.start(host="127.0.0.1", port=unused_port)
        assert await feed.wait_trusted(10.0)
        await sim.wait_for_subscription("user", "SubscribeOrders", 1001)
        assert sink.states("user")[-1] == "connected"
    finally:
        await feed.stop()
        await rest.aclose()
        await sim.stop()


async def test_close_contract_flattens_in_the_simulator_end_to_end(live: Live) -> None:
    sim, account = live.sim, live.account
    sim.submit_order(account, MNQ, OrderSide.BID, 3)
    await wait_until(
        lambda: any(
            isinstance(e, PositionEvent) and e.position.size == 3 for e in live.sink.events
        ),
        what="the position event",
    )
    await live.rest.close_contract(account, MNQ)
    request = await sim.wait_for_request(
        "Position/closeContract", lambda r: r.body.get("contractId") == MNQ
    )
    assert request.status == 200 and request.body["accountId"] == account
    assert sim.positions(account) == []
    await wait_until(
        lambda: any(
            isinstance(e, PositionEvent) and e.position.is_closed for e in live.sink.events
        ),
        what="the close reaching the feed",
    )


async def test_the_hub_loggers_are_kept_at_warning(live: Live) -> None:
    for name in ("SignalRCoreClient", "riskman.gateway.websocket"):
        assert logging.getLogger(name).level >= logging.WARNING


async def test_no_token_in_any_log_line_even_with_the_hub_loggers_at_debug(
    sim: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone turned the WebSocket protocol's debug logging on anyway (it logs the upgrade
    # request, whose URL carries the token): the redaction filter still holds.
    monkeypatch.setattr(realtime, "quiet_hub_loggers", lambda: None)
    caplog.set_level(logging.DEBUG)
    for name in ("SignalRCoreClient", "riskman.gateway.websocket"):
        caplog.set_level(logging.DEBUG, logger=name)
    live = await start_feed(sim)
    try:
        assert await live.feed.wait_trusted(5.0)
        sim.faults.drop_connections("user")
        await wait_until(lambda: live.feed.user.reconnects >= 1 and live.feed.user.trusted)
        token = await live.rest.access_token()
    finally:
        await stop_feed(live)
    assert "> GET /hubs/user?" in caplog.text  # the protocol did log the request line ...
    assert token not in caplog.text  # ... but never the token
    assert "access_token=<redacted>" in caplog.text


async def test_stop_leaves_no_thread_or_task_behind(sim: Any) -> None:
    live = await start_feed(sim)
    assert await live.feed.wait_trusted(5.0)
    await stop_feed(live)
    await wait_until(
        lambda: (
            not [
                t
                for t in threading.enumerate()
                if t.name.startswith(("riskman-hub", "Signalrcore"))
            ]
        ),
        what="hub threads gone",
    )
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith(("riskman-", "sim-x"))]
    assert tasks == []


async def test_transport_close_is_bounded_against_a_server_that_never_answers() -> None:
    # A listener that accepts the TCP connection but never answers the upgrade.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    transport = SignalRCoreTransport(connect_timeout=0.5, close_timeout=1.0)
    from riskman.gateway.realtime import HubConnectError

    try:
        with pytest.raises(HubConnectError):
            await transport.connect(f"http://127.0.0.1:{port}/hubs/user", "t0ken-abcdef")
        await asyncio.wait_for(transport.close(), 2.0)
    finally:
        server.close()


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_feed_state_values_are_the_documented_ones() -> None:
    assert {s.value for s in FeedState} == {
        "connecting",
        "connected",
        "reconnecting",
        "stale",
        "down",
    }


EXIT_SCRIPT = """
import asyncio
from riskman.config import GatewayConfig
from riskman.gateway.feed import GatewayFeed
from riskman.gateway.rest import RestClient
from tests.gateway.support import RecordingSink
from riskman.sim import Simulator

async def main():
    sim = Simulator(seed=1)
    await sim.start()
    cfg = GatewayConfig(api_url=sim.base_url, user_hub_url=sim.user_hub_url,
                        market_hub_url=sim.market_hub_url, username="demo")
    feed = GatewayFeed(RestClient(cfg, "demo"), cfg, RecordingSink(), sim.account_ids)
    await feed.start()
    assert await feed.wait_trusted(10)
    # return without stopping anything: the interpreter must still exit

asyncio.run(main())
print("exited cleanly")
"""


def test_interpreter_exits_even_if_the_feed_was_never_stopped() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exited cleanly" in done.stdout
