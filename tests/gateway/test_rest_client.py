"""RestClient against a scripted gateway (httpx.MockTransport): endpoints, error mapping per
endpoint, tokens, retries, the limiter, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from riskman.config import GatewayConfig
from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderType, PositionType
from riskman.core.redaction import redact
from riskman.gateway.errors import (
    AuthError,
    GatewayRejected,
    GatewayUnavailable,
    MarketClosed,
    NotFound,
    OutcomeUnknown,
    Pending,
    ProtocolError,
    RateLimited,
)
from riskman.gateway.jwt import jwt_expiry
from riskman.gateway.ratelimit import RateLimiter
from riskman.gateway.rest import RestClient, RetryPolicy
from tests.gateway.support import (
    API_KEY,
    ScriptedGateway,
    make_jwt,
    ok,
    refused,
)

START = datetime(2026, 11, 17, 23, 0, tzinfo=UTC)


# --- endpoints ----------------------------------------------------------------------------


async def test_login_sends_username_and_key_then_bearer_on_every_call(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    await rest.login()
    accounts = await rest.search_accounts()

    login, search = gateway.requests
    assert login.path == "Auth/loginKey"
    assert login.body == {"userName": "demo", "apiKey": API_KEY}
    assert login.authorization is None
    assert search.authorization is not None and search.authorization.startswith("Bearer ")
    assert search.body == {"onlyActiveAccounts": True}
    assert accounts[0].id == 11 and accounts[0].can_trade


async def test_first_call_logs_in_lazily(rest: RestClient, gateway: ScriptedGateway) -> None:
    await rest.search_open_positions(11)
    assert gateway.paths() == ["Auth/loginKey", "Position/searchOpen"]


ReadCase = tuple[str, Callable[[RestClient], Awaitable[Any]], dict[str, Any]]

READS: list[ReadCase] = [
    ("Account/search", lambda c: c.search_accounts(False), {"onlyActiveAccounts": False}),
    ("Position/searchOpen", lambda c: c.search_open_positions(11), {"accountId": 11}),
    ("Order/searchOpen", lambda c: c.search_open_orders(11, urgent=True), {"accountId": 11}),
    (
        "Order/search",
        lambda c: c.search_orders(11, START, START + timedelta(hours=1)),
        {
            "accountId": 11,
            "startTimestamp": "2026-11-17T23:00:00+00:00",
            "endTimestamp": "2026-11-18T00:00:00+00:00",
        },
    ),
    (
        "Trade/search",
        lambda c: c.search_trades(11, START),
        {"accountId": 11, "startTimestamp": "2026-11-17T23:00:00+00:00"},
    ),
    (
        "Contract/searchById",
        lambda c: c.get_contract("CON.F.US.MNQ.Z26"),
        {"contractId": "CON.F.US.MNQ.Z26"},
    ),
    ("Contract/search", lambda c: c.search_contracts("MNQ"), {"searchText": "MNQ", "live": False}),
]


@pytest.mark.parametrize(("path", "call", "body"), READS, ids=[r[0] for r in READS])
async def test_every_read_endpoint_sends_documented_body(
    rest: RestClient,
    gateway: ScriptedGateway,
    path: str,
    call: Callable[[RestClient], Awaitable[Any]],
    body: dict[str, Any],
) -> None:
    result = await call(rest)
    assert gateway.requests[-1].path == path
    assert gateway.requests[-1].body == body
    assert result


async def test_read_payloads_are_parsed_into_models(rest: RestClient) -> None:
    (position,) = await rest.search_open_positions(11)
    assert position.type is PositionType.LONG and position.size == 2
    assert position.average_price == Decimal("21000.25")
    (order,) = await rest.search_open_orders(11)
    assert order.type is OrderType.STOP and order.stop_price == Decimal("20950.0")
    (trade,) = await rest.search_trades(11, START)
    assert trade.profit_and_loss is None and trade.fees == Decimal("0.74")
    contract = await rest.get_contract("CON.F.US.MNQ.Z26")
    assert contract.tick_size == Decimal("0.25") and contract.tick_value == Decimal("0.5")


MutationCase = tuple[str, Callable[[RestClient], Awaitable[Any]], dict[str, Any]]

MUTATIONS: list[MutationCase] = [
    (
        "Position/closeContract",
        lambda c: c.close_contract(11, "CON.F.US.MNQ.Z26"),
        {"accountId": 11, "contractId": "CON.F.US.MNQ.Z26"},
    ),
    (
        "Position/partialCloseContract",
        lambda c: c.partial_close_contract(11, "CON.F.US.MNQ.Z26", 1),
        {"accountId": 11, "contractId": "CON.F.US.MNQ.Z26", "size": 1},
    ),
    ("Order/cancel", lambda c: c.cancel_order(11, 9001), {"accountId": 11, "orderId": 9001}),
    (
        "Order/modify",
        lambda c: c.modify_order(11, 9001, stop_price=Decimal("20960.25")),
        {"accountId": 11, "orderId": 9001, "stopPrice": 20960.25},
    ),
    (
        "Order/place",
        lambda c: c.place_order(
            11,
            "CON.F.US.MNQ.Z26",
            OrderType.STOP,
            OrderSide.ASK,
            2,
            stop_price=Decimal("20950.5"),
            custom_tag="riskman-1",
        ),
        {
            "accountId": 11,
            "contractId": "CON.F.US.MNQ.Z26",
            "type": 4,
            "side": 1,
            "size": 2,
            "limitPrice": None,
            "stopPrice": 20950.5,
            "trailPrice": None,
            "customTag": "riskman-1",
        },
    ),
]


@pytest.mark.parametrize(("path", "call", "body"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
async def test_every_mutation_endpoint_sends_documented_body(
    rest: RestClient,
    gateway: ScriptedGateway,
    path: str,
    call: Callable[[RestClient], Awaitable[Any]],
    body: dict[str, Any],
) -> None:
    await call(rest)
    assert gateway.requests[-1].path == path
    assert gateway.requests[-1].body == body


async def test_place_order_returns_the_order_id(rest: RestClient) -> None:
    order_id = await rest.place_order(11, "CON.F.US.MNQ.Z26", OrderType.MARKET, OrderSide.BID, 1)
    assert order_id == 4242


async def test_place_order_rejected_with_an_id_is_still_a_rejection(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    gateway.push("Order/place", refused(2, "Invalid symbol", orderId=77))
    with pytest.raises(GatewayRejected) as info:
        await rest.place_order(11, "CON.F.US.MNQ.Z26", OrderType.MARKET, OrderSide.BID, 1)
    assert info.value.code_name == "OrderRejected"
    assert "Invalid symbol" in str(info.value)


async def test_place_order_accepted_without_id_is_outcome_unknown(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    gateway.push("Order/place", ok(orderId=None))
    with pytest.raises(OutcomeUnknown):
        await rest.place_order(11, "CON.F.US.MNQ.Z26", OrderType.MARKET, OrderSide.BID, 1)


async def test_last_price_reads_the_newest_bar(rest: RestClient, gateway: ScriptedGateway) -> None:
    price = await rest.last_price("CON.F.US.MNQ.Z26")
    assert price == Decimal("21001.5")
    body = gateway.requests[-1].body
    assert gateway.requests[-1].path == "History/retrieveBars"
    assert body["contractId"] == "CON.F.US.MNQ.Z26"
    assert body["includePartialBar"] is True and body["unit"] == 2 and body["limit"] == 1
    assert rest.bars_limiter.granted == 1


async def test_last_price_is_none_without_bars(rest: RestClient, gateway: ScriptedGateway) -> None:
    gateway.push("History/retrieveBars", ok(bars=[]))
    assert await rest.last_price("CON.F.US.MNQ.Z26") is None


# --- error codes, per endpoint -------------------------------------------------------------

CodeCase = tuple[str, Callable[[RestClient], Awaitable[Any]], int, type[Exception], str]


def _close(c: RestClient) -> Awaitable[Any]:
    return c.close_contract(11, "CON.F.US.MNQ.Z26")


def _partial(c: RestClient) -> Awaitable[Any]:
    return c.partial_close_contract(11, "CON.F.US.MNQ.Z26", 1)


def _place(c: RestClient) -> Awaitable[Any]:
    return c.place_order(11, "CON.F.US.MNQ.Z26", OrderType.MARKET, OrderSide.BID, 1)


def _modify(c: RestClient) -> Awaitable[Any]:
    return c.modify_order(11, 1, size=1)


def _cancel(c: RestClient) -> Awaitable[Any]:
    return c.cancel_order(11, 1)


CODES: list[CodeCase] = [
    ("Position/closeContract", _close, 1, NotFound, "AccountNotFound"),
    ("Position/closeContract", _close, 2, NotFound, "PositionNotFound"),
    ("Position/closeContract", _close, 3, NotFound, "ContractNotFound"),
    ("Position/closeContract", _close, 4, GatewayRejected, "ContractNotActive"),
    ("Position/closeContract", _close, 5, MarketClosed, "OrderRejected"),
    ("Position/closeContract", _close, 6, Pending, "OrderPending"),
    ("Position/closeContract", _close, 8, GatewayRejected, "AccountRejected"),
    ("Position/partialCloseContract", _partial, 2, NotFound, "PositionNotFound"),
    ("Position/partialCloseContract", _partial, 5, GatewayRejected, "InvalidCloseSize"),
    ("Position/partialCloseContract", _partial, 6, MarketClosed, "OrderRejected"),
    ("Position/partialCloseContract", _partial, 7, Pending, "OrderPending"),
    ("Position/partialCloseContract", _partial, 9, GatewayRejected, "AccountRejected"),
    ("Order/place", _place, 2, GatewayRejected, "OrderRejected"),
    ("Order/place", _place, 3, GatewayRejected, "InsufficientFunds"),
    ("Order/place", _place, 5, MarketClosed, "OutsideTradingHours"),
    ("Order/place", _place, 6, Pending, "OrderPending"),
    ("Order/place", _place, 8, NotFound, "ContractNotFound"),
    ("Order/modify", _modify, 2, NotFound, "OrderNotFound"),
    ("Order/modify", _modify, 4, Pending, "Pending"),
    ("Order/modify", _modify, 5, GatewayRejected, "UnknownError"),
    ("Order/cancel", _cancel, 2, NotFound, "OrderNotFound"),
    ("Order/cancel", _cancel, 4, Pending, "Pending"),
    ("Order/cancel", _cancel, 5, GatewayRejected, "UnknownError"),
    ("Order/cancel", _cancel, 6, GatewayRejected, "AccountRejected"),
    ("Order/cancel", _cancel, 99, GatewayRejected, "UnknownCode99"),
    ("Position/searchOpen", lambda c: c.search_open_positions(1), 1, NotFound, "AccountNotFound"),
    ("Trade/search", lambda c: c.search_trades(1, START), 1, NotFound, "AccountNotFound"),
    ("Contract/searchById", lambda c: c.get_contract("X"), 1, NotFound, "ContractNotFound"),
]


@pytest.mark.parametrize(
    ("path", "call", "code", "kind", "name"),
    CODES,
    ids=[f"{c[0]}-{c[2]}" for c in CODES],
)
async def test_error_codes_map_per_endpoint(
    rest: RestClient,
    gateway: ScriptedGateway,
    path: str,
    call: Callable[[RestClient], Awaitable[Any]],
    code: int,
    kind: type[Exception],
    name: str,
) -> None:
    gateway.push(path, refused(code, "nope"))
    with pytest.raises(GatewayRejected) as info:
        await call(rest)
    assert type(info.value) is kind
    assert info.value.code == code and info.value.code_name == name
    assert [r.path for r in gateway.requests].count(path) == 1  # refusals are never retried


async def test_same_code_means_different_things_on_different_endpoints(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    gateway.push("Position/closeContract", refused(5))
    gateway.push("Position/partialCloseContract", refused(5))
    gateway.push("Order/cancel", refused(5))
    with pytest.raises(MarketClosed):
        await _close(rest)
    with pytest.raises(GatewayRejected) as partial:
        await _partial(rest)
    assert partial.value.code_name == "InvalidCloseSize"
    with pytest.raises(GatewayRejected) as cancel:
        await _cancel(rest)
    assert cancel.value.code_name == "UnknownError"


async def test_login_refusal_is_auth_error_with_the_docs_name(
    gateway_config: GatewayConfig, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    client = RestClient(
        gateway_config,
        "wrong-key-000000",
        clock=fake_clock,
        transport=httpx.MockTransport(gateway.handler),
    )
    with pytest.raises(AuthError) as info:
        await client.login()
    assert info.value.code_name == "InvalidCredentials"
    await client.aclose()


async def test_login_http_400_is_auth_error(rest: RestClient, gateway: ScriptedGateway) -> None:
    gateway.push("Auth/loginKey", httpx.Response(400, json={"title": "bad"}))
    with pytest.raises(AuthError):
        await rest.login()


async def test_reply_without_envelope_is_protocol_error_for_reads(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    gateway.push("Order/searchOpen", {"orders": []})
    with pytest.raises(ProtocolError):
        await rest.search_open_orders(11)


async def test_one_bad_row_fails_the_read(rest: RestClient, gateway: ScriptedGateway) -> None:
    gateway.push("Position/searchOpen", ok(positions=[{"accountId": 11}]))
    with pytest.raises(ProtocolError):
        await rest.search_open_positions(11)


# --- 401 and tokens -------------------------------------------------------------------------


async def test_401_refreshes_once_and_retries_once(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    await rest.login()
    version = rest.token_version
    gateway.push("Position/closeContract", httpx.Response(401))
    await rest.close_contract(11, "CON.F.US.MNQ.Z26")
    assert gateway.paths() == [
        "Auth/loginKey",
        "Position/closeContract",
        "Auth/validate",
        "Position/closeContract",
    ]
    assert rest.token_version == version + 1
    assert gateway.requests[1].authorization != gateway.requests[3].authorization


async def test_second_401_after_refresh_is_auth_error(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    await rest.login()
    gateway.push("Order/cancel", httpx.Response(401), httpx.Response(401))
    with pytest.raises(AuthError):
        await rest.cancel_order(11, 1)
    assert gateway.paths().count("Order/cancel") == 2


async def test_failed_validate_falls_back_to_login(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    await rest.login()
    gateway.valid_tokens.clear()  # every token expired server-side
    await rest.search_open_orders(11)
    assert gateway.paths() == [
        "Auth/loginKey",
        "Order/searchOpen",
        "Auth/validate",
        "Auth/loginKey",
        "Order/searchOpen",
    ]


async def test_concurrent_401s_refresh_only_once(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    await rest.login()
    gateway.valid_tokens.clear()
    await asyncio.gather(*(rest.search_open_orders(11) for _ in range(5)))
    assert gateway.paths().count("Auth/validate") == 1
    assert gateway.paths().count("Auth/loginKey") == 2


async def test_token_close_to_expiry_is_renewed_before_the_call(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    gateway.token_lifetime = timedelta(minutes=3)
    await rest.login()
    gateway.token_lifetime = timedelta(hours=24)
    await rest.search_accounts()
    assert gateway.paths() == ["Auth/loginKey", "Auth/validate", "Account/search"]
    assert rest.token_expires == fake_clock.now().replace(microsecond=0) + timedelta(hours=24)


async def test_token_within_an_hour_is_renewed_in_the_background(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    gateway.token_lifetime = timedelta(minutes=50)
    await rest.login()
    gateway.token_lifetime = timedelta(hours=24)
    version = rest.token_version
    await rest.search_accounts()  # does not wait for the refresh
    await fake_clock.settle()
    assert "Auth/validate" in gateway.paths()
    assert rest.token_version == version + 1


async def test_scheduled_refresh_fires_an_hour_before_expiry(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    await rest.login()
    await fake_clock.advance(22 * 3600)
    assert "Auth/validate" not in gateway.paths()
    await fake_clock.advance(3600 + 1)
    assert gateway.paths() == ["Auth/loginKey", "Auth/validate"]


def test_jwt_expiry_reads_exp_and_tolerates_garbage() -> None:
    when = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)
    assert jwt_expiry(make_jwt(when)) == when
    assert jwt_expiry(make_jwt(None)) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None


async def test_token_without_exp_is_assumed_to_last_24h(
    rest: RestClient, gateway: ScriptedGateway, fake_clock: FakeClock
) -> None:
    gateway.push("Auth/loginKey", ok(token="opaque-token-without-claims"))
    await rest.login()
    assert rest.token_expires == fake_clock.now() + timedelta(hours=24)


async def test_token_listeners_hear_every_change(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    heard: list[int] = []
    remove = rest.add_token_listener(lambda: heard.append(rest.token_version))
    await rest.login()
    await rest.renew_token()
    remove()
    await rest.renew_token()
    assert heard == [1, 2]


# --- retries: reads yes, mutations never blindly ----------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(429),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
    ],
    ids=["500", "503", "429", "connect", "read-timeout", "dropped"],
)
async def test_reads_retry_transient_failures(
    rest: RestClient, gateway: ScriptedGateway, failure: Any
) -> None:
    gateway.push("Position/searchOpen", failure, failure)
    positions = await rest.search_open_positions(11)
    assert len(positions) == 1
    assert gateway.paths().count("Position/searchOpen") == 3


async def test_reads_give_up_after_bounded_attempts(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    gateway.push("Order/searchOpen", *[httpx.Response(500)] * 10)
    with pytest.raises(GatewayUnavailable):
        await rest.search_open_orders(11)
    assert gateway.paths().count("Order/searchOpen") == RetryPolicy().read_attempts
    gateway.push("Trade/search", *[httpx.Response(429)] * 10)
    with pytest.raises(RateLimited):
        await rest.search_trades(11, START)


async def test_read_backoff_grows_with_jitter_on_the_clock(
    gateway: ScriptedGateway, fake_clock: FakeClock, gateway_config: GatewayConfig
) -> None:
    client = RestClient(
        gateway_config,
        API_KEY,
        clock=fake_clock,
        transport=httpx.MockTransport(gateway.handler),
        retry=RetryPolicy(base_delay=1.0, max_delay=8.0),
    )
    gateway.push("Account/search", httpx.Response(503), httpx.Response(503))
    task = asyncio.create_task(client.search_accounts())
    await fake_clock.settle()
    assert gateway.paths().count("Account/search") == 1
    await fake_clock.advance(0.49)
    assert gateway.paths().count("Account/search") == 1  # first delay is in [0.5, 1.0]
    await fake_clock.advance(0.52)
    assert gateway.paths().count("Account/search") == 2
    await fake_clock.advance(2.0)  # second delay is in [1.0, 2.0]
    assert (await task)[0].id == 11
    await client.aclose()


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (httpx.ReadTimeout("no answer"), None),
        (httpx.RemoteProtocolError("server disconnected"), None),
        (httpx.WriteError("broken pipe"), None),
        (httpx.Response(500), 500),
        (httpx.Response(504), 504),
        (httpx.Response(200, text="<html>proxy error</html>"), None),
    ],
    ids=["read-timeout", "disconnected", "write-error", "500", "504", "not-json"],
)
async def test_mutation_with_unknown_outcome_is_never_retried(
    rest: RestClient, gateway: ScriptedGateway, failure: Any, status: int | None
) -> None:
    gateway.push("Position/closeContract", failure)
    with pytest.raises(OutcomeUnknown) as info:
        await rest.close_contract(11, "CON.F.US.MNQ.Z26")
    assert gateway.paths().count("Position/closeContract") == 1
    assert info.value.http_status == status


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("connection refused"), httpx.ConnectTimeout("syn"), httpx.Response(429)],
    ids=["refused", "connect-timeout", "429"],
)
async def test_mutation_refused_before_anything_happened_is_retried(
    rest: RestClient, gateway: ScriptedGateway, failure: Any
) -> None:
    gateway.push("Order/cancel", failure)
    await rest.cancel_order(11, 9001)
    assert gateway.paths().count("Order/cancel") == 2


async def test_mutation_retries_are_bounded(rest: RestClient, gateway: ScriptedGateway) -> None:
    gateway.push("Order/place", *[httpx.Response(429)] * 10)
    with pytest.raises(RateLimited):
        await _place(rest)
    assert gateway.paths().count("Order/place") == RetryPolicy().mutation_attempts
    gateway.push("Order/cancel", *[httpx.ConnectError("refused")] * 10)
    with pytest.raises(GatewayUnavailable):
        await _cancel(rest)


# --- the limiter ------------------------------------------------------------------------------


async def test_limiter_keeps_a_reserve_for_urgent_calls(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(fake_clock, limit=4, window=60.0, reserve=2)
    await limiter.acquire()
    await limiter.acquire()
    normal = asyncio.create_task(limiter.acquire())
    await fake_clock.settle()
    assert not normal.done()  # normal callers stop at limit - reserve
    await limiter.acquire(urgent=True)
    await limiter.acquire(urgent=True)
    assert limiter.in_window() == 4
    await fake_clock.advance(60.0)
    assert normal.done()


async def test_limiter_serves_urgent_waiters_first(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(fake_clock, limit=2, window=10.0)
    await limiter.acquire()
    await limiter.acquire()
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await limiter.acquire(urgent=urgent)
        order.append(name)

    tasks = [
        asyncio.create_task(take("read-1", False)),
        asyncio.create_task(take("read-2", False)),
        asyncio.create_task(take("close", True)),
    ]
    await fake_clock.settle()
    assert order == []
    await fake_clock.advance(10.0)
    assert order == ["close", "read-1"]
    await fake_clock.advance(10.0)
    assert order == ["close", "read-1", "read-2"]
    await asyncio.gather(*tasks)


async def test_limiter_sliding_window_never_exceeds_the_budget(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(fake_clock, limit=5, window=60.0, reserve=1)
    grants: list[float] = []

    async def one(urgent: bool) -> None:
        await limiter.acquire(urgent=urgent)
        grants.append(fake_clock.monotonic())

    tasks = [asyncio.create_task(one(i % 3 == 0)) for i in range(20)]
    for _ in range(40):
        await fake_clock.advance(7.0)
    await asyncio.gather(*tasks)
    for t in grants:
        assert sum(1 for g in grants if t - 60.0 < g <= t) <= 5


async def test_cancelled_waiter_gives_its_place_back(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(fake_clock, limit=1, window=10.0)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await fake_clock.settle()
    first.cancel()
    await fake_clock.advance(10.0)
    assert second.done() and first.cancelled()


async def test_enforcement_calls_jump_the_client_queue(
    gateway: ScriptedGateway, fake_clock: FakeClock, gateway_config: GatewayConfig
) -> None:
    client = RestClient(
        gateway_config,
        API_KEY,
        clock=fake_clock,
        transport=httpx.MockTransport(gateway.handler),
        limiter=RateLimiter(fake_clock, limit=3, window=60.0, reserve=1),
    )
    await client.login()  # 1 of 3
    await client.search_accounts()  # 2 of 3: the last normal slot
    reads = [asyncio.create_task(client.search_open_positions(11)) for _ in range(3)]
    await fake_clock.settle()
    close = asyncio.create_task(client.close_contract(11, "CON.F.US.MNQ.Z26"))
    await fake_clock.settle()
    assert close.done()  # used the reserve while three reads wait
    cancel = asyncio.create_task(client.cancel_order(11, 1))
    await fake_clock.settle()
    assert not cancel.done()
    await fake_clock.advance(61.0)
    assert cancel.done()
    order = [p for p in gateway.paths() if p != "Auth/loginKey"]
    assert order[:3] == ["Account/search", "Position/closeContract", "Order/cancel"]
    for _ in range(5):
        await fake_clock.advance(61.0)
    await asyncio.gather(*reads)
    await client.aclose()


# --- secrets --------------------------------------------------------------------------------


async def test_secrets_never_reach_logs_reprs_or_errors(
    gateway: ScriptedGateway,
    fake_clock: FakeClock,
    gateway_config: GatewayConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = RestClient(
        gateway_config,
        API_KEY,
        clock=fake_clock,
        transport=httpx.MockTransport(gateway.handler),
        retry=RetryPolicy(base_delay=0.0),
    )
    errors: list[str] = []
    await client.login()
    gateway.valid_tokens.clear()
    await client.search_accounts()  # 401 -> validate fails -> login again
    gateway.push("Position/closeContract", httpx.ReadTimeout("timed out"))
    gateway.push("Order/cancel", refused(2, "order gone"))
    gateway.push("Auth/validate", refused(1, "invalid"))
    for call in (
        lambda: client.close_contract(11, "X"),
        lambda: client.cancel_order(11, 1),
        client.renew_token,
    ):
        try:
            await call()
        except Exception as exc:
            errors.append(f"{exc!s} {exc!r}")
    bad = RestClient(
        gateway_config,
        "another-secret-key",
        clock=fake_clock,
        transport=httpx.MockTransport(gateway.handler),
    )
    try:
        await bad.login()
    except AuthError as exc:
        errors.append(f"{exc!s} {exc!r}")

    secrets = [API_KEY, "another-secret-key", *gateway.valid_tokens]
    secrets += [
        r.authorization.removeprefix("Bearer ") for r in gateway.requests if r.authorization
    ]
    assert len(secrets) > 4
    visible = " ".join([caplog.text, repr(client), str(client), *errors, repr(bad)])
    for secret in secrets:
        assert secret not in visible
    assert len(errors) == 3
    await client.aclose()
    await bad.aclose()


def test_redact_hides_hub_tokens_and_bearers() -> None:
    text = "wss://rtc/hubs/user?access_token=abc.def.ghi&x=1 Authorization: Bearer abc.def.ghi"
    assert "abc.def.ghi" not in redact(text)


async def test_validate_returning_the_same_token_falls_back_to_login(
    rest: RestClient, gateway: ScriptedGateway
) -> None:
    await rest.login()
    current = await rest.access_token()
    gateway.push("Auth/validate", ok(newToken=current))
    await rest.renew_token()
    assert gateway.paths() == ["Auth/loginKey", "Auth/validate", "Auth/loginKey"]
    assert await rest.access_token() != current


async def test_rest_client_implements_the_engine_port_and_token_source(rest: RestClient) -> None:
    from riskman.core.ports import GatewayPort
    from riskman.gateway.realtime import TokenSource

    def as_port(client: RestClient) -> GatewayPort:
        return client  # checked by mypy: the signatures must match the Protocol

    def as_tokens(client: RestClient) -> TokenSource:
        return client

    assert as_port(rest) is rest and as_tokens(rest) is rest


def test_every_endpoint_has_its_own_code_enum_starting_at_success() -> None:
    from riskman.gateway.endpoints import ENDPOINTS

    assert len({e.path for e in ENDPOINTS}) == len(ENDPOINTS) == 15
    for endpoint in ENDPOINTS:
        assert endpoint.codes(0).name == "Success"
        assert all(kind is not None for kind in endpoint.errors.values())
    mutations = {e.path for e in ENDPOINTS if e.mutation}
    assert mutations == {
        "Position/closeContract",
        "Position/partialCloseContract",
        "Order/place",
        "Order/modify",
        "Order/cancel",
    }
    urgent = {e.path for e in ENDPOINTS if e.urgent and e.mutation}
    assert urgent == {"Position/closeContract", "Position/partialCloseContract", "Order/cancel"}
