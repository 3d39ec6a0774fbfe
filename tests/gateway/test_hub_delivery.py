"""The hub transport hands events to the supervisor as their frame is read (issue 16: no turn
of the loop through a queue and a reader task), never out of order."""

from __future__ import annotations

import json

from riskman.gateway.realtime import RECORD_SEPARATOR, HubEvent, SignalRCoreTransport


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
