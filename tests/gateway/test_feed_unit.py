"""GatewayFeed with fake hubs, a scripted REST gateway and a fake clock: subscription order,
reconcile-before-trust, event parsing, quotes, and REST polling while untrusted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from riskman.config import GatewayConfig
from riskman.core.clock import FakeClock
from riskman.core.ports import (
    AccountEvent,
    AccountSnapshot,
    OrderEvent,
    PositionEvent,
    QuoteEvent,
    TradeEvent,
)
from riskman.core.views import FeedState
from riskman.gateway.feed import GatewayFeed
from riskman.gateway.realtime import HubConnectError, HubName
from riskman.gateway.rest import RestClient
from tests.gateway.support import (
    ACCOUNT,
    ORDER,
    POSITION,
    TRADE,
    FakeHub,
    RecordingSink,
    ScriptedGateway,
    ok,
    settle_until,
)

MNQ = "CON.F.US.MNQ.Z26"
ES = "CON.F.US.EP.Z26"


class Hubs:
    """Per-hub FakeHub factories."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.built: dict[str, list[FakeHub]] = {"user": [], "market": []}
        self.errors: dict[str, list[Exception]] = {"user": [], "market": []}

    def __call__(self, hub: HubName) -> FakeHub:
        errors = self.errors[hub]
        fake = FakeHub(self.clock, connect_error=errors.pop(0) if errors else None)
        self.built[hub].append(fake)
        return fake

    def user(self) -> FakeHub:
        return self.built["user"][-1]

    def market(self) -> FakeHub:
        return self.built["market"][-1]


class Rig:
    def __init__(
        self,
        rest: RestClient,
        gateway: ScriptedGateway,
        clock: FakeClock,
        accounts: tuple[int, ...] = (11,),
    ) -> None:
        self.rest = rest
        self.gateway = gateway
        self.clock = clock
        self.sink = RecordingSink(quotes=frozenset({MNQ}))
        self.hubs = Hubs(clock)
        config = GatewayConfig(
            api_url="http://gateway.test",
            username="demo",
            hub_silence_timeout=30.0,
            stale_poll_interval=5.0,
        )
        self.feed = GatewayFeed(
            rest, config, self.sink, accounts, clock, transport_factory=self.hubs
        )

    async def trusted(self) -> None:
        await settle_until(self.clock, lambda: self.feed.user.trusted, step=0.1)

    async def market_up(self) -> None:
        await settle_until(self.clock, lambda: self.feed.market.trusted, step=0.1)


@pytest.fixture
async def rig(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> AsyncIterator[Rig]:
    r = Rig(rest, gateway, fake_clock)
    yield r
    await r.feed.stop()


async def test_user_hub_subscribes_then_reconciles_then_reports_trusted(rig: Rig) -> None:
    states_at_reconcile: list[FeedState] = []
    recorded = rig.sink.reconcile

    async def reconcile(snapshot: AccountSnapshot) -> None:
        states_at_reconcile.append(rig.feed.user.state)
        await recorded(snapshot)

    rig.sink.reconcile = reconcile  # type: ignore[method-assign]
    await rig.feed.start()
    await rig.trusted()

    assert rig.hubs.user().invocations == [
        ("SubscribeAccounts", []),
        ("SubscribeOrders", [11]),
        ("SubscribePositions", [11]),
        ("SubscribeTrades", [11]),
    ]
    full = [s for s in rig.sink.snapshots if s.trades is not None]
    assert len(full) == 1
    snapshot = full[0]
    assert snapshot.account.id == 11 and snapshot.positions[0].contract_id == MNQ
    assert snapshot.orders[0].id == 9001 and snapshot.trades is not None
    assert snapshot.trades[0].id == 5
    trade_reads = [r for r in rig.gateway.requests if r.path == "Trade/search"]
    assert trade_reads[-1].body["startTimestamp"] == "2026-11-17T23:00:00+00:00"
    assert FeedState.CONNECTED not in states_at_reconcile
    assert rig.sink.states("user")[-1] == "connected"


async def test_user_events_wrapped_and_bare_reach_the_sink_parsed(rig: Rig) -> None:
    await rig.feed.start()
    await rig.trusted()
    hub = rig.hubs.user()
    hub.push("GatewayUserAccount", {"action": 1, "data": {**ACCOUNT, "canTrade": False}})
    hub.push("GatewayUserOrder", ORDER)
    hub.push("GatewayUserPosition", {"action": 2, "data": {**POSITION, "type": 0, "size": 0}})
    hub.push("GatewayUserTrade", {"action": 0, "data": {**TRADE, "profitAndLoss": -50.0}})
    await settle_until(rig.clock, lambda: len(rig.sink.events) == 4)
    account, order, position, trade = rig.sink.events
    assert isinstance(account, AccountEvent) and account.account.can_trade is False
    assert isinstance(order, OrderEvent) and order.order.id == 9001
    assert isinstance(position, PositionEvent) and position.position.is_closed
    assert isinstance(trade, TradeEvent) and trade.trade.is_closing
    assert account.received == rig.clock.monotonic()


async def test_malformed_and_unknown_events_are_skipped_not_fatal(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.feed.start()
    await rig.trusted()
    hub = rig.hubs.user()
    huge = {"accountId": "x" * 100_000}
    hub.push("GatewayUserPosition", huge)
    hub.push("GatewayUserOrder", "not an object")
    hub.push("GatewayUserSomethingNew", {})
    hub.push("GatewayUserOrder")
    hub.push("GatewayUserOrder", ORDER)
    await settle_until(rig.clock, lambda: len(rig.sink.events) == 1)
    assert rig.feed.malformed_events == 3
    assert rig.feed.user.trusted and len(rig.hubs.built["user"]) == 1
    assert "x" * 200 not in caplog.text  # the reason is logged, never the payload


async def test_events_of_unguarded_accounts_are_dropped(rig: Rig) -> None:
    await rig.feed.start()
    await rig.trusted()
    rig.hubs.user().push("GatewayUserOrder", {**ORDER, "accountId": 99})
    rig.hubs.user().push("GatewayUserOrder", ORDER)
    await settle_until(rig.clock, lambda: len(rig.sink.events) == 1)
    await rig.clock.settle()
    assert [e.order.account_id for e in rig.sink.of_type(OrderEvent)] == [11]
    assert len(rig.sink.events) == 1


async def test_no_configured_accounts_means_every_active_account(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    second = {**ACCOUNT, "id": 12, "name": "XFA"}
    gateway.push("Account/search", *[ok(accounts=[ACCOUNT, second])] * 20)
    rig = Rig(rest, gateway, fake_clock, accounts=())
    await rig.feed.start()
    await rig.trusted()
    subscribed = {args[0] for method, args in rig.hubs.user().invocations if args}
    assert subscribed == {11, 12}
    assert rig.feed.guarded_accounts == (11, 12)
    await rig.feed.stop()


async def test_market_hub_follows_the_engine_quote_set(rig: Rig) -> None:
    await rig.feed.start()
    await rig.market_up()
    market = rig.hubs.market()
    assert market.invocations == [("SubscribeContractQuotes", [MNQ])]
    rig.feed.want_quotes(frozenset({MNQ, ES}))
    await settle_until(rig.clock, lambda: len(market.invocations) == 2)
    rig.feed.want_quotes(frozenset({ES}))
    await settle_until(rig.clock, lambda: len(market.invocations) == 3)
    assert market.invocations[1:] == [
        ("SubscribeContractQuotes", [ES]),
        ("UnsubscribeContractQuotes", [MNQ]),
    ]
    market.push("GatewayQuote", ES, {"symbol": "F.US.EP", "lastPrice": 6001.25, "bestBid": 6001})
    market.push("GatewayQuote", ES, "garbage")
    market.push("GatewayDepth", ES, [{"price": 1}])
    await settle_until(rig.clock, lambda: len(rig.sink.events) == 1)
    (quote,) = rig.sink.events
    assert isinstance(quote, QuoteEvent) and quote.contract_id == ES
    assert str(quote.quote.last_price) == "6001.25"


async def test_market_reconnect_resubscribes_what_the_engine_needs_now(rig: Rig) -> None:
    await rig.feed.start()
    await rig.market_up()
    rig.sink.quotes = frozenset({ES})
    rig.hubs.market().drop()
    await settle_until(
        rig.clock,
        lambda: len(rig.hubs.built["market"]) == 2 and rig.feed.market.trusted,
        step=0.1,
    )
    assert rig.hubs.market().invocations == [("SubscribeContractQuotes", [ES])]


async def test_a_refused_quote_subscription_does_not_loop(rig: Rig) -> None:
    rig.sink.quotes = frozenset({MNQ, "CON.F.US.BAD.Z26"})
    factory = rig.hubs

    def refusing(hub: HubName) -> FakeHub:
        fake = Hubs.__call__(factory, hub)
        fake.refuse["SubscribeContractQuotes"] = "unknown contract"
        return fake

    rig.feed.market._factory = lambda: refusing("market")
    await rig.feed.start()
    await rig.market_up()
    assert len(rig.hubs.built["market"]) == 1


async def test_rest_is_polled_while_the_user_feed_is_untrusted(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    rig = Rig(rest, gateway, fake_clock)
    rig.hubs.errors["user"] = [HubConnectError("refused")] * 50
    await rig.feed.start()
    await settle_until(fake_clock, lambda: rig.feed.polls >= 3, step=0.5)
    polls = [s for s in rig.sink.snapshots if s.trades is None]
    assert len(polls) >= 3 and all(s.positions[0].contract_id == MNQ for s in polls)
    assert "Trade/search" not in gateway.paths()
    assert rig.feed.user.state in (FeedState.RECONNECTING, FeedState.DOWN)
    rig.hubs.errors["user"] = []
    await settle_until(fake_clock, lambda: rig.feed.user.trusted, step=0.5)
    polls_when_trusted = rig.feed.polls
    await fake_clock.advance(20.0)  # trusted (and not yet silent): no polling
    assert rig.feed.polls == polls_when_trusted
    await rig.feed.stop()


async def test_a_failing_poll_does_not_stop_polling(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    from tests.gateway.support import refused

    rig = Rig(rest, gateway, fake_clock)
    rig.hubs.errors["user"] = [HubConnectError("refused")] * 50
    gateway.push("Position/searchOpen", *[refused(1)] * 2)
    await rig.feed.start()
    await settle_until(fake_clock, lambda: rig.feed.polls >= 2, step=0.5)
    await rig.feed.stop()


async def test_stop_ends_every_task(rig: Rig) -> None:
    await rig.feed.start()
    await rig.trusted()
    rig.feed.want_quotes(frozenset({ES}))
    await rig.feed.stop()
    await asyncio.sleep(0)
    leftovers: Any = [
        t for t in asyncio.all_tasks() if t.get_name().startswith(("riskman-hub", "riskman-feed"))
    ]
    assert leftovers == []
    assert all(h.closed for built in rig.hubs.built.values() for h in built)
    assert rig.feed.user.state is FeedState.DOWN


def test_day_start_is_utc(rig: Rig) -> None:
    assert rig.sink.trading_day_start().tzinfo is UTC
    assert rig.sink.trading_day_start() < datetime(2026, 11, 18, tzinfo=UTC)
