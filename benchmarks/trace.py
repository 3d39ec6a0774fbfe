"""Where a breach's time goes: timestamps at each stage of riskman's path, for the burst of
a fill over the max-contracts limit (order update, trade, position update, account update in
one frame), in a diagnostic run only (``python -m benchmarks breakdown``; the wrappers cost a
few microseconds).

The stages, in order, all on `time.monotonic()` (the same clock as the simulator's):

    recv      the event loop reads the burst off the socket (`HubSocket.data_received`: the
              bytes one read brought)
    loop      its frames cut by the WebSocket protocol and decoded to text, handed to the hub
              transport together (`SignalRCoreTransport._on_messages`)
    feed      the feed gets the burst's first decoded invocation (`GatewayFeed._on_user_event`):
              the position update, since a fill's trade waits for the position update in the
              same burst, and its order and account updates are handed over after them
    submit    the parsed position update is handed to the engine (`Engine.submit`)
    route     the router takes the burst's first event off the queue (`EventRouter.handle`):
              the position update
    dispatch  the breach decided, its actions dispatched (`EventRouter.dispatch`)
    rest      the action task calls the REST client (`RestClient.partial_close_contract`)
    post      the client hands the request to httpx's transport (`RestClient._post`)
    wire      the request's first bytes go to the socket (the loop transport's `write`)
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

STAGES = (
    "recv",
    "loop",
    "feed",
    "submit",
    "route",
    "dispatch",
    "rest",
    "post",
    "wire",
)


STALL = 0.001
"""A loop callback that runs longer than this is a stall (an event arriving waits for it)."""


def describe_callback(callback: Any) -> str:
    """A readable name for what a loop callback runs (a task: its coroutine, and for a
    Textual timer or message pump, whose)."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        frame = getattr(coro, "cr_frame", None)
        target = frame.f_locals.get("self") if frame is not None else None
        timer_callback = getattr(target, "_callback", None)
        if timer_callback is not None:
            return f"{name} -> {getattr(timer_callback, '__qualname__', timer_callback)}"
        if target is not None:
            return f"{name} ({type(target).__name__})"
        return name
    return getattr(callback, "__qualname__", repr(callback))


class Tracer:
    def __init__(self, breach_size: int) -> None:
        self.breach_size = breach_size
        self.records: list[dict[str, float]] = []
        self.stalls: list[tuple[str, float]] = []
        self._marker = f'"size":{breach_size},'
        self._marker_bytes = self._marker.encode()

    def is_breach_frame(self, raw: Any) -> bool:
        """Does `raw` (the bytes of a read, or the messages cut from them) hold the breach's
        position update?"""
        if isinstance(raw, bytes | bytearray):
            return b"GatewayUserPosition" in raw and self._marker_bytes in raw
        if isinstance(raw, list):
            return any(self.is_breach_frame(message) for message in raw)
        return isinstance(raw, str) and "GatewayUserPosition" in raw and self._marker in raw

    def mark(self, stage: str, after: str | None = None) -> None:
        """Stamp `stage` on the current breach, once (and only once `after` is stamped)."""
        if not self.records:
            return
        record = self.records[-1]
        if stage not in record and (after is None or after in record):
            record[stage] = time.monotonic()

    def install(self, floor: bool = False) -> None:
        """Wrap riskman's stages (for the floor, which marks its own, only the socket write),
        and time every callback of the event loop (`asyncio.Handle._run`)."""
        run = asyncio.Handle._run
        stalls = self.stalls

        def timed_run(handle: asyncio.Handle) -> None:
            began = time.perf_counter()
            run(handle)
            took = time.perf_counter() - began
            if took > STALL:
                stalls.append((describe_callback(handle._callback), took))  # type: ignore[attr-defined]

        asyncio.Handle._run = timed_run  # type: ignore[method-assign,assignment]

        from riskman.core.ports import PositionEvent
        from riskman.engine.engine import Engine
        from riskman.engine.router import EventRouter
        from riskman.gateway.feed import GatewayFeed
        from riskman.gateway.realtime import SignalRCoreTransport
        from riskman.gateway.rest import RestClient
        from riskman.gateway.websocket import HubSocket

        tracer = self
        # The HTTP clients and the hub's WebSocket write through the loop's socket transport:
        # "wire" is stamped only after "post" (the close call), so a hub ping is not taken
        # for it.
        from asyncio import selector_events

        transport_class = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
        before_write = transport_class.write

        def traced_write(transport: Any, data: Any) -> None:
            tracer.mark("wire", after="post")
            before_write(transport, data)

        transport_class.write = traced_write
        if floor:
            return

        def is_breach_event(event: Any) -> bool:
            return isinstance(event, PositionEvent) and event.position.size == self.breach_size

        data_received = HubSocket.data_received

        def traced_data_received(sock: HubSocket, data: bytes) -> None:
            if tracer.is_breach_frame(data):
                tracer.records.append({"recv": time.monotonic()})
            data_received(sock, data)

        HubSocket.data_received = traced_data_received  # type: ignore[method-assign]

        def before(
            cls: Any, name: str, stage: str, when: Callable[..., bool], after: str | None = None
        ) -> None:
            original = getattr(cls, name)

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if when(*args, **kwargs):
                    tracer.mark(stage, after)
                return original(*args, **kwargs)

            setattr(cls, name, wrapper)

        before(
            SignalRCoreTransport,
            "_on_messages",
            "loop",
            lambda _s, item: tracer.is_breach_frame(item),
        )
        before(GatewayFeed, "_on_user_event", "feed", lambda *a, **k: True, after="loop")
        before(Engine, "submit", "submit", lambda _s, event: is_breach_event(event))
        before(EventRouter, "handle", "route", lambda *a, **k: True, after="submit")
        before(EventRouter, "dispatch", "dispatch", lambda *a, **k: True, after="route")
        before(RestClient, "partial_close_contract", "rest", lambda *a, **k: True, after="dispatch")
        before(
            RestClient,
            "_post",
            "post",
            lambda _s, url, *a, **k: str(url).endswith("partialCloseContract"),
            after="rest",
        )
