"""The hub transport hands events to the supervisor as their frame is read (issue 16: no turn
of the loop through a queue and a reader task), never out of order."""

from __future__ import annotations

import asyncio
import json

from riskman.gateway.realtime import RECORD_SEPARATOR, HubClosed, HubEvent, SignalRCoreTransport


def frame(*targets: str) -> str:
    return "".join(
        json.dumps({"type": 1, "target": target, "arguments": [{"n": n}]}) + RECORD_SEPARATOR
        for n, target in enumerate(targets)
    )


async def test_events_go_straight_to_the_handler_and_never_overtake_queued_ones() -> None:
    transport = SignalRCoreTransport()
    handed: list[str] = []
    transport._on_messages([frame("A", "B")])  # before anyone listens: queued
    transport.deliver_to(lambda event: handed.append(event.target))
    transport._on_messages([frame("C")])  # A and B still wait: C waits behind them
    assert handed == []
    received = [await transport.receive() for _ in range(3)]
    assert [m.target for m in received if isinstance(m, HubEvent)] == ["A", "B", "C"]
    transport._on_messages([frame("D", "E")])  # nothing waits now: handed over at once, in order
    assert handed == ["D", "E"]
    transport.deliver_to(None)
    transport._on_messages([frame("F")])
    assert handed == ["D", "E"]
    last = await transport.receive()
    assert isinstance(last, HubEvent) and last.target == "F"


MNQ = "CON.F.US.MNQ.Z26"
FILLED, OPEN = 2, 1


def fill_frame(*targets: str, status: int = FILLED, contract: str = MNQ) -> str:
    """Records as the gateway sends them (TopstepX wraps each in {"action", "data"})."""

    def payload(target: str) -> dict[str, object]:
        data: dict[str, object] = {"accountId": 7, "contractId": MNQ}
        if target == "GatewayUserOrder":
            data.update(status=status, contractId=contract)
        return {"action": 1, "data": data}

    return "".join(
        json.dumps({"type": 1, "target": target, "arguments": [payload(target)]}) + RECORD_SEPARATOR
        for target in targets
    )


def listening() -> tuple[SignalRCoreTransport, list[str]]:
    """A transport on the running loop that hands its events' targets to the list."""
    transport = SignalRCoreTransport()
    transport._loop = asyncio.get_running_loop()
    handed: list[str] = []
    transport.deliver_to(lambda event: handed.append(event.target))
    return transport, handed


async def test_a_fills_trade_and_position_go_first_and_its_order_and_account_updates_next() -> None:
    transport, handed = listening()
    fill = ("GatewayUserOrder", "GatewayUserTrade", "GatewayUserPosition", "GatewayUserAccount")
    transport._on_messages([fill_frame(*fill)])
    # The position update at once: it decides a breach with the least work; its trade waits
    # for it, with the order and account updates.
    assert handed == ["GatewayUserPosition"]
    await asyncio.sleep(0)
    assert len(handed) == 1  # a turn of the loop for the engine, one for the close it sends
    await asyncio.sleep(0)
    assert handed == [
        "GatewayUserPosition",
        "GatewayUserOrder",
        "GatewayUserTrade",
        "GatewayUserAccount",
    ]


async def test_what_waits_comes_after_the_close_the_position_update_dispatches() -> None:
    """The engine's path: the position update wakes its consumer (a turn of the loop), which
    routes it and dispatches the close, whose task writes the request on the next turn. The
    order, trade and account updates of the burst come after that, though the order update
    was deferred before the position update was read."""
    transport, handed = listening()
    loop = asyncio.get_running_loop()

    def engine(event: HubEvent) -> None:
        handed.append(event.target)
        if event.target == "GatewayUserPosition":
            loop.call_soon(lambda: loop.call_soon(handed.append, "close written"))

    transport.deliver_to(engine)
    fill = ("GatewayUserOrder", "GatewayUserTrade", "GatewayUserPosition", "GatewayUserAccount")
    transport._on_messages([fill_frame(*fill)])
    for _ in range(3):
        await asyncio.sleep(0)
    assert handed == [
        "GatewayUserPosition",
        "close written",
        "GatewayUserOrder",
        "GatewayUserTrade",
        "GatewayUserAccount",
    ]


async def test_a_trade_waits_only_for_its_own_position_update_in_the_same_hand_over() -> None:
    transport, handed = listening()
    # No position update with it (it comes in a later read, or not at all): at once.
    transport._on_messages(
        [fill_frame("GatewayUserOrder", "GatewayUserTrade", "GatewayUserAccount")]
    )
    assert handed == ["GatewayUserTrade"]
    for _ in range(2):
        await asyncio.sleep(0)
    handed.clear()
    # Another contract's position update does not hold it back, nor pass it.
    other = json.dumps(
        {
            "type": 1,
            "target": "GatewayUserPosition",
            "arguments": [{"action": 1, "data": {"accountId": 7, "contractId": "CON.F.US.EP.Z26"}}],
        }
    )
    transport._on_messages([fill_frame("GatewayUserTrade") + other + RECORD_SEPARATOR])
    assert handed == ["GatewayUserTrade", "GatewayUserPosition"]


async def test_a_trade_never_overtakes_an_account_update() -> None:
    transport, handed = listening()
    transport._on_messages([fill_frame("GatewayUserAccount", "GatewayUserOrder")])
    transport._on_messages([fill_frame("GatewayUserTrade", "GatewayUserPosition", "GatewayQuote")])
    assert handed == []
    for _ in range(2):
        await asyncio.sleep(0)
    assert handed == [
        "GatewayUserAccount",
        "GatewayUserOrder",
        "GatewayUserTrade",
        "GatewayUserPosition",
        "GatewayQuote",
    ]


async def test_what_waits_is_handed_over_before_the_end_of_the_connection() -> None:
    transport, handed = listening()
    transport._on_messages([fill_frame("GatewayUserOrder")])
    transport._lose("test")
    assert handed == ["GatewayUserOrder"]
    assert isinstance(await transport.receive(), HubClosed)


async def test_a_fill_never_overtakes_a_working_order_of_its_contract() -> None:
    """The market order a fill fills, still shown working: routed after the fill, the lockout
    gate would cancel it as placed under the lock the fill set."""
    transport, handed = listening()
    transport._on_messages([fill_frame("GatewayUserOrder", "GatewayUserTrade", status=OPEN)])
    assert handed == []
    for _ in range(2):
        await asyncio.sleep(0)
    assert handed == ["GatewayUserOrder", "GatewayUserTrade"]
    handed.clear()
    # A working order of another contract is overtaken.
    other = "CON.F.US.EP.Z26"
    transport._on_messages(
        [fill_frame("GatewayUserOrder", "GatewayUserTrade", status=OPEN, contract=other)]
    )
    assert handed == ["GatewayUserTrade"]
