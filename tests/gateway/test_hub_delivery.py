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
    transport._on_item(frame("A", "B"))  # before anyone listens: queued
    transport.deliver_to(lambda event: handed.append(event.target))
    transport._on_item(frame("C"))  # A and B still wait: C waits behind them
    assert handed == []
    received = [await transport.receive() for _ in range(3)]
    assert [m.target for m in received if isinstance(m, HubEvent)] == ["A", "B", "C"]
    transport._on_item(frame("D", "E"))  # nothing waits now: handed over at once, in order
    assert handed == ["D", "E"]
    transport.deliver_to(None)
    transport._on_item(frame("F"))
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
    transport._on_item(fill_frame(*fill))
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


async def test_a_trade_waits_only_for_its_own_position_update_in_the_same_hand_over() -> None:
    transport, handed = listening()
    # No position update with it (it comes in a later read, or not at all): at once.
    transport._on_item(fill_frame("GatewayUserOrder", "GatewayUserTrade", "GatewayUserAccount"))
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
    transport._on_item(fill_frame("GatewayUserTrade") + other + RECORD_SEPARATOR)
    assert handed == ["GatewayUserTrade", "GatewayUserPosition"]


async def test_a_trade_never_overtakes_an_account_update() -> None:
    transport, handed = listening()
    transport._on_item(fill_frame("GatewayUserAccount", "GatewayUserOrder"))
    transport._on_item(fill_frame("GatewayUserTrade", "GatewayUserPosition", "GatewayQuote"))
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
    transport._on_item(fill_frame("GatewayUserOrder"))
    transport._lose("test")
    assert handed == ["GatewayUserOrder"]
    assert isinstance(await transport.receive(), HubClosed)


async def test_a_fill_never_overtakes_a_working_order_of_its_contract() -> None:
    """The market order a fill fills, still shown working: routed after the fill, the lockout
    gate would cancel it as placed under the lock the fill set."""
    transport, handed = listening()
    transport._on_item(fill_frame("GatewayUserOrder", "GatewayUserTrade", status=OPEN))
    assert handed == []
    for _ in range(2):
        await asyncio.sleep(0)
    assert handed == ["GatewayUserOrder", "GatewayUserTrade"]
    handed.clear()
    # A working order of another contract is overtaken.
    other = "CON.F.US.EP.Z26"
    transport._on_item(
        fill_frame("GatewayUserOrder", "GatewayUserTrade", status=OPEN, contract=other)
    )
    assert handed == ["GatewayUserTrade"]


# --- the websocket client: a burst's frames, read at once, handed over together -------------


def _text_frame(text: str) -> bytes:
    """A server's (unmasked, final) text frame."""
    payload = text.encode()
    if len(payload) < 126:
        return bytes([0x81, len(payload)]) + payload
    return bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload


def test_the_whole_frames_one_read_brings_are_handed_over_together() -> None:
    import socket
    import threading

    from riskman.gateway.realtime import _TimedWebSocketClient

    ours, gateway = socket.socketpair()
    client = _TimedWebSocketClient(connect_timeout=1.0, url="ws://127.0.0.1:9/hubs/user")
    # As after the upgrade: the socket, and this thread as the receive thread.
    client.sock, client.running = ours, True
    client.recv_thread = threading.current_thread()
    try:
        big = "x" * 300  # a 16-bit length
        gateway.sendall(_text_frame("a\x1e") + _text_frame(big + "\x1e") + _text_frame("c\x1e"))
        assert client._recv_frame() == "\x1e".join(["a\x1e", big + "\x1e", "c\x1e"])
        # A frame not yet whole ends the batch; it comes whole with the next read.
        second = _text_frame("e\x1e")
        gateway.sendall(_text_frame("d\x1e") + second[:3])
        assert client._recv_frame() == "d\x1e"
        gateway.sendall(second[3:])
        assert client._recv_frame() == "e\x1e"
        # A ping ends the batch too (it is answered, then the next message comes).
        gateway.sendall(_text_frame("f\x1e") + bytes([0x89, 0]) + _text_frame("g\x1e"))
        assert client._recv_frame() == "f\x1e"
        assert client._recv_frame() is None  # the ping, answered with a pong
        assert gateway.recv(2)[0] == 0x8A
        assert client._recv_frame() == "g\x1e"
    finally:
        ours.close()
        gateway.close()
