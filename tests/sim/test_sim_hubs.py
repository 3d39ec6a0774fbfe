"""The SignalR hubs over real WebSockets: handshake, framing, invocations, events, faults."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from riskman.core.enums import OrderSide, PositionType
from riskman.core.models import PayloadError, Position, parse_quote, parse_user_event
from riskman.sim import Simulator

from .conftest import ACCOUNT, ES, MNQ, OTHER_ACCOUNT, RS, HubFactory, RawHub, ws_url

# --- handshake and connection -----------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1])
async def test_handshake_accepts_versions_0_and_1(
    sim: Simulator, hub_client: HubFactory, version: int
) -> None:
    raw = await hub_client("user", version=version)

    assert raw.messages == ["{}" + RS]
    await sim.wait_for_connections("user", 1)


@pytest.mark.parametrize(
    "handshake",
    [
        '{"protocol":"messagepack","version":1}',
        '{"protocol":"json","version":2}',
        "this is not json",
    ],
)
async def test_a_bad_handshake_gets_an_error_and_the_socket_closes(
    sim: Simulator, handshake: str
) -> None:
    async with websockets.connect(ws_url(sim, "user", sim.issue_token())) as ws:
        await ws.send(handshake + RS)

        reply = await asyncio.wait_for(ws.recv(), 3)
        assert isinstance(reply, str) and reply.endswith(RS)
        assert "error" in json.loads(reply[:-1])
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
    assert sim.connection_count("user") == 0


@pytest.mark.parametrize("token", [None, "", "a.b.c"])
async def test_hub_refuses_a_missing_or_invalid_token_with_http_401(
    sim: Simulator, token: str | None
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ws_url(sim, "market", token))

    assert refused.value.response.status_code == 401


async def test_hub_refuses_an_expired_token(sim: Simulator) -> None:
    token = sim.issue_token()
    sim.expire_tokens()

    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ws_url(sim, "user", token))

    assert refused.value.response.status_code == 401


async def test_negotiate_answers_a_v1_negotiate_response(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        token = sim.issue_token()
        ok = await client.post(f"/hubs/user/negotiate?negotiateVersion=1&access_token={token}")
        refused = await client.post("/hubs/user/negotiate?negotiateVersion=1")

    body = ok.json()
    assert body["negotiateVersion"] == 1 and body["connectionToken"]
    assert body["availableTransports"][0]["transport"] == "WebSockets"
    assert refused.status_code == 401


# --- invocations ------------------------------------------------------------------------------


async def test_several_records_in_one_message_are_each_handled(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")

    await raw.send(
        {"type": 1, "target": "SubscribeOrders", "arguments": [ACCOUNT], "invocationId": "a"},
        {"type": 1, "target": "SubscribePositions", "arguments": [ACCOUNT], "invocationId": "b"},
        {"type": 6},
        {"type": 1, "target": "SubscribeAccounts", "arguments": [], "invocationId": "c"},
    )

    ids = [(await raw.record())["invocationId"] for _ in range(3)]
    assert ids == ["a", "b", "c"]
    assert sim.subscriptions("user") == {
        ("SubscribeOrders", ACCOUNT),
        ("SubscribePositions", ACCOUNT),
        ("SubscribeAccounts", None),
    }


async def test_completion_is_sent_only_for_invocations_with_an_id(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("market")

    await raw.invoke("SubscribeContractTrades", ES)  # no id: no completion
    await raw.invoke("SubscribeContractMarketDepth", ES, invocation_id="7")

    assert await raw.record() == {"type": 3, "invocationId": "7", "result": None}
    assert sim.subscriptions("market") == {
        ("SubscribeContractTrades", ES),
        ("SubscribeContractMarketDepth", ES),
    }


async def test_unknown_methods_and_bad_arguments_complete_with_an_error(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")

    await raw.invoke("NoSuchMethod", 1)  # no id: silently ignored
    await raw.invoke("NoSuchMethod", 1, invocation_id="1")
    await raw.invoke("SubscribeOrders", "1001", invocation_id="2")
    await raw.invoke("SubscribeOrders", invocation_id="3")
    await raw.invoke("subscribeorders", ACCOUNT, invocation_id="4")  # names are case-insensitive

    unknown, wrong_type, missing, ok = [await raw.record() for _ in range(4)]
    assert unknown["invocationId"] == "1" and "Method does not exist" in unknown["error"]
    assert wrong_type["invocationId"] == "2" and "binding arguments" in wrong_type["error"]
    assert missing["invocationId"] == "3" and "expects 1" in missing["error"]
    assert ok == {"type": 3, "invocationId": "4", "result": None}
    assert sim.subscriptions("user") == {("SubscribeOrders", ACCOUNT)}


async def test_server_pings_and_accepts_client_pings() -> None:
    async with Simulator(ping_interval=0.05) as sim:
        raw = await RawHub.open(sim, "market", sim.issue_token())
        await raw.send({"type": 6})

        assert await raw.record(skip_pings=False) == {"type": 6}
        assert await raw.record(skip_pings=False) == {"type": 6}
        await raw.close()


async def test_a_close_message_from_the_client_closes_the_socket(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")
    await raw.subscribe(sim, "user", "SubscribeAccounts")

    await raw.send({"type": 7})

    await sim.wait_for_connections("user", 0)
    assert sim.subscriptions("user") == set()


async def test_invalid_json_from_the_client_ends_the_connection_with_an_error(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")

    await raw.ws.send("{oops" + RS)

    closing = await raw.record()
    assert closing["type"] == 7 and closing["error"]
    await sim.wait_for_connections("user", 0)


async def test_subscriptions_are_forgotten_when_the_socket_closes(
    sim: Simulator, hub_client: HubFactory
) -> None:
    first = await hub_client("market")
    second = await hub_client("market")
    await first.subscribe(sim, "market", "SubscribeContractQuotes", MNQ)
    await second.subscribe(sim, "market", "SubscribeContractQuotes", ES)

    await first.close()

    await sim.wait_for_subscription("market", "SubscribeContractQuotes", MNQ, present=False)
    assert sim.subscriptions("market") == {("SubscribeContractQuotes", ES)}
    assert sim.connection_count("market") == 1


async def test_unsubscribe_removes_the_subscription(sim: Simulator, hub_client: HubFactory) -> None:
    raw = await hub_client("user")
    await raw.subscribe(sim, "user", "SubscribeTrades", ACCOUNT)

    await raw.invoke("UnsubscribeTrades", ACCOUNT, invocation_id="u")

    assert (await raw.record())["invocationId"] == "u"
    assert sim.subscriptions("user") == set()


# --- events -----------------------------------------------------------------------------------


async def test_user_events_are_wrapped_with_an_action(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")
    for method in ("SubscribeOrders", "SubscribePositions", "SubscribeTrades"):
        await raw.subscribe(sim, "user", method, ACCOUNT)
    await raw.subscribe(sim, "user", "SubscribeAccounts")
    sim.set_price(MNQ, "20000")

    sim.submit_order(ACCOUNT, MNQ, OrderSide.BID, 1)

    [opened] = await raw.event("GatewayUserOrder")
    [filled] = await raw.event("GatewayUserOrder")
    [trade] = await raw.event("GatewayUserTrade")
    [position] = await raw.event("GatewayUserPosition")
    [account] = await raw.event("GatewayUserAccount")
    assert (opened["action"], opened["data"]["status"]) == (1, 1)
    assert (filled["action"], filled["data"]["status"]) == (2, 2)
    assert (trade["action"], trade["data"]["profitAndLoss"]) == (0, None)
    assert position["action"] == 1 and position["data"]["size"] == 1
    assert account["data"]["balance"] == 49999.63
    # The five events of one fill are queued together and leave in one WebSocket message.
    assert any(message.count(RS) >= 5 for message in raw.messages)
    parsed = parse_user_event("GatewayUserPosition", [position])
    assert isinstance(parsed, Position) and parsed.type is PositionType.LONG

    sim.close_position(ACCOUNT, MNQ)
    [closed] = await raw.event("GatewayUserPosition")
    assert closed["action"] == 2
    assert (closed["data"]["size"], closed["data"]["type"]) == (0, 0)


async def test_user_events_are_bare_when_asked(sim: Simulator, hub_client: HubFactory) -> None:
    raw = await hub_client("user")
    await raw.subscribe(sim, "user", "SubscribeAccounts")
    sim.emit_bare = True

    sim.set_can_trade(ACCOUNT, False)

    [account] = await raw.event("GatewayUserAccount")
    assert account == {
        "id": ACCOUNT,
        "name": "DEMO-50K-1",
        "balance": 50000,
        "canTrade": False,
        "isVisible": True,
        "simulated": True,
    }


async def test_account_streams_go_only_to_sockets_subscribed_to_that_account(
    sim: Simulator, hub_client: HubFactory
) -> None:
    mine = await hub_client("user")
    theirs = await hub_client("user")
    await mine.subscribe(sim, "user", "SubscribeOrders", ACCOUNT)
    await theirs.subscribe(sim, "user", "SubscribeOrders", OTHER_ACCOUNT)

    sim.submit_order(ACCOUNT, MNQ, OrderSide.BID, 1)
    sim.submit_order(OTHER_ACCOUNT, MNQ, OrderSide.ASK, 1)

    assert (await mine.event("GatewayUserOrder"))[0]["data"]["accountId"] == ACCOUNT
    assert (await theirs.event("GatewayUserOrder"))[0]["data"]["accountId"] == OTHER_ACCOUNT
    assert (await theirs.event("GatewayUserOrder"))[0]["data"]["accountId"] == OTHER_ACCOUNT


async def test_market_events_carry_two_arguments_with_arrays_for_trades_and_depth(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("market")
    await raw.subscribe(sim, "market", "SubscribeContractQuotes", MNQ)
    snapshot = await raw.event("GatewayQuote")  # the current quote on subscribing
    await raw.subscribe(sim, "market", "SubscribeContractTrades", MNQ)
    await raw.subscribe(sim, "market", "SubscribeContractMarketDepth", MNQ)

    sim.set_price(MNQ, "20000.5", bid="20000.25", ask="20000.5")

    contract_id, quote = parse_quote(await raw.event("GatewayQuote"))
    trade_args = await raw.event("GatewayTrade")
    depth_args = await raw.event("GatewayDepth")
    assert snapshot[0] == MNQ
    assert contract_id == MNQ
    assert (quote.last_price, quote.best_bid, quote.best_ask) == (
        Decimal("20000.5"),
        Decimal("20000.25"),
        Decimal("20000.5"),
    )
    assert quote.symbol == "F.US.MNQ"
    assert trade_args[0] == MNQ and isinstance(trade_args[1], list)
    assert trade_args[1][0]["price"] == 20000.5 and trade_args[1][0]["symbolId"] == "F.US.MNQ"
    assert depth_args[0] == MNQ and isinstance(depth_args[1], list) and depth_args[1]


async def test_quotes_go_only_to_subscribers_of_that_contract(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("market")
    await raw.subscribe(sim, "market", "SubscribeContractQuotes", ES)
    await raw.event("GatewayQuote")  # snapshot
    sim.event_log.clear()

    sim.set_price(MNQ, "20000")
    sim.set_price(ES, "6700")

    contract_id, quote = parse_quote(await raw.event("GatewayQuote"))
    assert contract_id == ES and quote.last_price == 6700
    assert [(hub, target, args[0]) for _, hub, target, args in sim.event_log] == [
        ("market", "GatewayQuote", ES)
    ]


async def test_quotes_tick_by_themselves_with_a_quote_interval() -> None:
    async with Simulator(seed=3, quote_interval=0.02, ping_interval=None) as sim:
        raw = await RawHub.open(sim, "market", sim.issue_token())
        await raw.subscribe(sim, "market", "SubscribeContractQuotes", MNQ)

        quotes = [parse_quote(await raw.event("GatewayQuote"))[1] for _ in range(4)]

        spec = sim.contract(MNQ)
        for quote in quotes:
            assert quote.best_ask is not None and quote.best_bid is not None
            assert quote.best_ask - quote.best_bid == spec.tick_size
            assert (quote.last_price or 0) % spec.tick_size == 0
        assert quotes[-1].volume and quotes[-1].volume > 0
        await raw.close()


async def test_send_logout_reaches_every_socket_of_the_hub(
    sim: Simulator, hub_client: HubFactory
) -> None:
    first = await hub_client("user")
    second = await hub_client("user")
    await sim.wait_for_connections("user", 2)

    assert sim.send_logout("user") == 2

    assert await first.event("GatewayLogout") == []
    assert await second.event("GatewayLogout") == []


async def test_event_log_timestamps_every_sent_event(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")
    await raw.subscribe(sim, "user", "SubscribeAccounts")
    sim.event_log.clear()

    sim.set_can_trade(ACCOUNT, False)

    await raw.event("GatewayUserAccount")
    [(sent_at, hub, target, args)] = sim.event_log
    assert (hub, target) == ("user", "GatewayUserAccount")
    assert args[0]["data"]["canTrade"] is False
    assert sent_at > 0


# --- faults -----------------------------------------------------------------------------------


async def test_drop_connections_cuts_the_socket_without_a_close_frame(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")
    await raw.subscribe(sim, "user", "SubscribeOrders", ACCOUNT)

    assert sim.faults.drop_connections("user") == 1

    # Forgotten at once, before the socket is even gone.
    assert sim.subscriptions("user") == set()
    assert sim.connection_count("user") == 0
    with pytest.raises(ConnectionClosed) as closed:
        await raw.record()
    assert closed.value.rcvd is None  # no close frame: an abnormal closure


async def test_drop_connections_with_a_close_message(
    sim: Simulator, hub_client: HubFactory
) -> None:
    user = await hub_client("user")
    market = await hub_client("market")
    await sim.wait_for_connections("market", 1)

    assert sim.faults.drop_connections(close_message=True) == 2

    for raw in (user, market):
        assert await raw.record() == {
            "type": 7,
            "error": "Connection closed with an error.",
            "allowReconnect": True,
        }
        with pytest.raises(ConnectionClosed) as closed:
            await raw.record()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


async def test_silenced_sockets_send_nothing_until_thawed() -> None:
    async with Simulator(ping_interval=0.02) as sim:
        frozen = await RawHub.open(sim, "market", sim.issue_token())
        await frozen.subscribe(sim, "market", "SubscribeContractQuotes", MNQ)
        await frozen.event("GatewayQuote")  # snapshot

        sim.faults.silence("market", True)
        healthy = await RawHub.open(sim, "market", sim.issue_token())  # opened later: healthy
        await healthy.subscribe(sim, "market", "SubscribeContractQuotes", MNQ)
        sim.set_price(MNQ, "20000")
        await frozen.invoke("SubscribeContractTrades", MNQ, invocation_id="x")
        for _ in range(3):
            await healthy.record(skip_pings=False)  # pings keep coming on the healthy socket
        assert sim.connection_count("market") == 2

        sim.faults.silence("market", False)
        sim.set_price(MNQ, "20001")

        # The frozen socket missed the first quote and the completion; only what was sent
        # after the thaw (pings, then the new quote) arrives.
        seen = [await frozen.record(skip_pings=False)]
        while seen[-1].get("target") != "GatewayQuote":
            seen.append(await frozen.record(skip_pings=False))
        assert all(r == {"type": 6} for r in seen[:-1])
        _, quote = parse_quote(seen[-1]["arguments"])
        assert quote.last_price == 20001
        await frozen.close()
        await healthy.close()


@pytest.mark.parametrize("kind", ["not_json", "bad_payload", "unknown_type", "truncated"])
@pytest.mark.parametrize("hub", ["user", "market"])
async def test_send_malformed_sends_one_broken_record_alone(
    sim: Simulator, hub_client: HubFactory, hub: str, kind: str
) -> None:
    raw = await hub_client(hub)
    await sim.wait_for_connections(hub, 1)

    assert sim.faults.send_malformed(hub, kind) == 1

    message = await raw.recv_message()
    assert message.endswith(RS) and message.count(RS) == 1
    body = message[:-1]
    if kind in ("not_json", "truncated"):
        with pytest.raises(ValueError):
            json.loads(body)
        return
    record = json.loads(body)
    if kind == "unknown_type":
        assert record["type"] not in range(1, 10)
    elif hub == "user":
        with pytest.raises(PayloadError):
            parse_user_event(record["target"], record["arguments"])
    else:
        with pytest.raises(PayloadError):
            parse_quote(record["arguments"])


# --- the real client library ------------------------------------------------------------------


async def test_signalrcore_connects_receives_and_reconnects() -> None:
    """signalrcore 1.0.2 (the production client's transport) skips negotiation and sends
    handshake version 0; it must connect, get events and come back after a drop.

    Its `stop()` closes the socket from another thread and joins its receive thread, which
    stays blocked until the server sends something: frequent pings keep that short.
    """
    from signalrcore.hub_connection_builder import HubConnectionBuilder

    loop = asyncio.get_running_loop()
    received: asyncio.Queue[list[Any]] = asyncio.Queue()
    opened = asyncio.Event()

    def on_account(args: list[Any]) -> None:
        loop.call_soon_threadsafe(received.put_nowait, args)

    async with Simulator(ping_interval=0.1) as sim:
        connection = (
            HubConnectionBuilder()
            .with_url(
                f"{sim.user_hub_url}?access_token={sim.issue_token()}",
                options={"skip_negotiation": True},
            )
            .with_automatic_reconnect(
                {"type": "interval", "keep_alive_interval": 10, "intervals": [0.2, 0.2, 0.2]}
            )
            .build()
        )
        connection.on_open(lambda: loop.call_soon_threadsafe(opened.set))
        connection.on("GatewayUserAccount", on_account)
        try:
            await asyncio.to_thread(connection.start)
            await asyncio.wait_for(opened.wait(), 5)
            await asyncio.to_thread(connection.send, "SubscribeAccounts", [])
            await sim.wait_for_subscription("user", "SubscribeAccounts")

            sim.set_can_trade(ACCOUNT, False)
            [wrapped] = await asyncio.wait_for(received.get(), 5)
            assert wrapped["data"]["canTrade"] is False

            sim.faults.drop_connections("user")
            await sim.wait_for_connections("user", 1, timeout=10)
            assert sim.subscriptions("user") == set()  # the client must subscribe again
        finally:
            await asyncio.wait_for(asyncio.to_thread(connection.stop), 10)
        await sim.wait_for_connections("user", 0)


async def test_push_position_streams_without_changing_state(
    sim: Simulator, hub_client: HubFactory
) -> None:
    raw = await hub_client("user")
    await raw.subscribe(sim, "user", "SubscribePositions", ACCOUNT)

    sim.push_position(ACCOUNT, MNQ, -3, "20000.25")
    sim.push_position(ACCOUNT, MNQ, 0, "20000.25")

    [short] = await raw.event("GatewayUserPosition")
    [closed] = await raw.event("GatewayUserPosition")
    assert (short["action"], short["data"]["type"], short["data"]["size"]) == (1, 2, 3)
    assert (closed["action"], closed["data"]["size"]) == (2, 0)
    assert sim.positions(ACCOUNT) == []
