"""The user and market hubs: SignalR JSON hub protocol over Starlette WebSockets.

One :class:`HubConnection` per socket. Its subscriptions belong to it and vanish when it
closes, which is what forces a reconnecting client to subscribe again. Events are encoded once
per broadcast and queued on each subscribed socket; a writer task per socket drains the queue,
packing whatever has piled up into one WebSocket message (so several records per message occur
naturally under load, as with ASP.NET).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from . import protocol
from .protocol import RS, MessageType
from .waiting import Changed

log = logging.getLogger(__name__)

HubName = Literal["user", "market"]
HUB_NAMES: tuple[HubName, ...] = ("user", "market")
SubscriptionKey = tuple[str, object]
EventLogEntry = tuple[float, str, str, list[Any]]

# One WebSocket message carries at most this many queued records / characters.
_BATCH_RECORDS = 256
_BATCH_CHARS = 64 * 1024
# A client that lets this many records pile up is not reading; it gets dropped.
_MAX_OUTBOX = 200_000
# Longest unterminated record accepted from a client.
_MAX_RECORD_CHARS = 1024 * 1024
CLOSED_WITH_ERROR = "Connection closed with an error."


def hub_name(hub: str) -> HubName:
    if hub == "user":
        return "user"
    if hub == "market":
        return "market"
    raise ValueError(f"unknown hub {hub!r}: expected 'user' or 'market'")


@dataclass(frozen=True, slots=True)
class HubMethod:
    """A hub method a client may invoke: which subscription it adds or removes, and the type of
    its single argument (None: no argument)."""

    name: str
    subscription: str
    subscribe: bool
    arg: type[int] | type[str] | None

    def bind(self, args: Any) -> tuple[object, str | None]:
        """(argument, None) or (None, the completion error ASP.NET would send)."""
        prefix = f"Failed to invoke '{self.name}' due to an error on the server."
        if not isinstance(args, list):
            return None, f"{prefix} InvalidDataException: Invocation arguments must be an array."
        expected = 0 if self.arg is None else 1
        if len(args) != expected:
            return None, (
                f"{prefix} InvalidDataException: Invocation provides {len(args)} argument(s) "
                f"but target expects {expected}."
            )
        if self.arg is None:
            return None, None
        value = args[0]
        wrong_int = self.arg is int and (isinstance(value, bool) or not isinstance(value, int))
        if wrong_int or (self.arg is str and not isinstance(value, str)):
            return None, (
                f"{prefix} InvalidDataException: Error binding arguments. Make sure that the types "
                "of the provided values match the types of the hub method being invoked."
            )
        return value, None


def _methods(
    pairs: tuple[tuple[str, type[int] | type[str] | None], ...],
) -> dict[str, HubMethod]:
    # ASP.NET matches hub method names case-insensitively.
    table: dict[str, HubMethod] = {}
    for name, arg in pairs:
        table[name.lower()] = HubMethod(name, name, True, arg)
        unsubscribe = "Un" + name[0].lower() + name[1:]
        table[unsubscribe.lower()] = HubMethod(unsubscribe, name, False, arg)
    return table


USER_METHODS = _methods(
    (
        ("SubscribeAccounts", None),
        ("SubscribeOrders", int),
        ("SubscribePositions", int),
        ("SubscribeTrades", int),
    )
)
MARKET_METHODS = _methods(
    (
        ("SubscribeContractQuotes", str),
        ("SubscribeContractTrades", str),
        ("SubscribeContractMarketDepth", str),
    )
)


@dataclass(frozen=True, slots=True)
class _Alone:
    """A record sent as its own WebSocket message (malformed frames, for instance)."""

    text: str


@dataclass(frozen=True, slots=True)
class _Close:
    """End of the connection: optionally one last record, then a WebSocket close frame."""

    record: str | None
    code: int


_Item = str | _Alone | _Close


class Hub:
    def __init__(
        self,
        name: HubName,
        methods: dict[str, HubMethod],
        event_log: list[EventLogEntry],
        *,
        handshake_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.methods = methods
        self.event_log = event_log
        self.handshake_timeout = handshake_timeout
        self.changed = Changed()
        # Called after a successful Subscribe* (the market hub sends a snapshot).
        self.on_subscribed: Callable[[HubConnection, SubscriptionKey], None] | None = None
        # Cuts a socket's TCP connection without a close frame; False when it cannot.
        self.abort: Callable[[WebSocket], bool] | None = None
        self._connections: dict[HubConnection, None] = {}
        self._subscribers: dict[SubscriptionKey, dict[HubConnection, None]] = {}
        # Sockets that connect from now on are frozen at once (a lasting silent outage).
        self.freeze_new = False

    # --- membership -------------------------------------------------------------------------

    @property
    def connections(self) -> list[HubConnection]:
        return list(self._connections)

    def attach(self, connection: HubConnection) -> None:
        self._connections[connection] = None
        if self.freeze_new:
            connection.frozen = True
        self.changed.notify()

    def detach(self, connection: HubConnection) -> None:
        if connection not in self._connections:
            return
        del self._connections[connection]
        for key in connection.subscriptions:
            subscribers = self._subscribers.get(key)
            if subscribers is not None:
                subscribers.pop(connection, None)
                if not subscribers:
                    del self._subscribers[key]
        connection.subscriptions.clear()
        self.changed.notify()

    def subscribe(self, connection: HubConnection, key: SubscriptionKey) -> None:
        if connection not in self._connections:
            return
        connection.subscriptions.add(key)
        self._subscribers.setdefault(key, {})[connection] = None
        self.changed.notify()

    def unsubscribe(self, connection: HubConnection, key: SubscriptionKey) -> None:
        connection.subscriptions.discard(key)
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.pop(connection, None)
            if not subscribers:
                del self._subscribers[key]
        self.changed.notify()

    def subscriptions(self) -> set[SubscriptionKey]:
        return set(self._subscribers)

    def has_subscribers(self, key: SubscriptionKey) -> bool:
        return key in self._subscribers

    # --- sending ----------------------------------------------------------------------------

    def broadcast(self, target: str, arguments: list[Any], key: SubscriptionKey | None) -> int:
        """Send an event to the sockets subscribed to `key` (every socket when None)."""
        targets = self._connections if key is None else self._subscribers.get(key)
        if not targets:
            return 0
        record = protocol.invocation(target, arguments)
        sent = sum(1 for connection in list(targets) if connection.push(record))
        if sent:
            self.event_log.append((time.monotonic(), self.name, target, arguments))
        return sent

    def send_to(self, connection: HubConnection, target: str, arguments: list[Any]) -> bool:
        """Send an event to one socket."""
        sent = connection.push(protocol.invocation(target, arguments))
        if sent:
            self.event_log.append((time.monotonic(), self.name, target, arguments))
        return sent

    def send_alone(self, text: str) -> int:
        """Send `text` as one WebSocket message to every socket."""
        return sum(1 for connection in list(self._connections) if connection.push(_Alone(text)))

    def ping(self) -> None:
        for connection in list(self._connections):
            connection.push(protocol.PING)

    def set_frozen(self, frozen: bool, *, new_sockets: bool = False) -> None:
        self.freeze_new = new_sockets
        for connection in self._connections:
            connection.frozen = frozen

    def drop_all(self, close_message: bool) -> int:
        connections = list(self._connections)
        for connection in connections:
            connection.drop(close_message)
        return len(connections)


class HubConnection:
    def __init__(self, hub: Hub, websocket: WebSocket) -> None:
        self.hub = hub
        self.websocket = websocket
        self.id = secrets.token_hex(8)
        self.subscriptions: set[SubscriptionKey] = set()
        # A frozen socket stays open but sends nothing (the silent-feed fault).
        self.frozen = False
        self._closing = False
        self._outbox: deque[_Item] = deque()
        self._wakeup = asyncio.Event()

    def __repr__(self) -> str:
        return f"<HubConnection {self.hub.name} {self.id}>"

    def push(self, item: _Item) -> bool:
        """Queue something to send; False when the socket is frozen or closing."""
        if self.frozen or self._closing:
            return False
        if len(self._outbox) >= _MAX_OUTBOX:
            log.warning("%s hub: client is not reading; dropping its connection", self.hub.name)
            self.drop(close_message=False)
            return False
        self._outbox.append(item)
        self._wakeup.set()
        return True

    def drop(self, close_message: bool) -> None:
        """Close this socket now. Its subscriptions are forgotten at once, before the socket is
        actually gone, so a test never sees a stale subscription after asking for a drop."""
        if self._closing:
            return
        self.hub.detach(self)
        self._closing = True
        self._outbox.clear()
        if close_message:
            record = protocol.close(CLOSED_WITH_ERROR, allow_reconnect=True)
            self._outbox.append(_Close(record, 1000))
        elif self.hub.abort is None or not self.hub.abort(self.websocket):
            self._outbox.append(_Close(None, 1011))
        self._wakeup.set()

    # --- life cycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until either side closes it (the socket is already accepted)."""
        rest = await self._handshake()
        if rest is None:
            return
        self._outbox.append(protocol.HANDSHAKE_OK)
        self._wakeup.set()
        self.hub.attach(self)
        reader = asyncio.create_task(self._read_loop(rest), name=f"sim-hub-read-{self.id}")
        writer = asyncio.create_task(self._write_loop(), name=f"sim-hub-write-{self.id}")
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not writer.done() and not reader.cancelled():
                ending = reader.result()
                if ending is not None:
                    # Let the writer flush what is queued plus the close record.
                    self._closing = True
                    self._outbox.append(ending)
                    self._wakeup.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(writer), 5.0)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            self._closing = True
            self.hub.detach(self)
            await self._close_quietly(1000)

    async def _handshake(self) -> str | None:
        """The text after the handshake record, or None when the handshake failed."""
        buffer = ""
        try:
            async with asyncio.timeout(self.hub.handshake_timeout):
                while RS not in buffer:
                    text = await self._receive()
                    if text is None:
                        return None
                    buffer += text
                    if len(buffer) > _MAX_RECORD_CHARS:
                        break
        except TimeoutError:
            await self._close_quietly(1000)
            return None
        record, separator, rest = buffer.partition(RS)
        error = protocol.check_handshake(record) if separator else "Handshake request too large."
        if error is not None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.send_text(protocol.handshake_error(error))
            await self._close_quietly(1000)
            return None
        return rest

    async def _receive(self) -> str | None:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            text = data.decode("utf-8", errors="replace")
        return str(text)

    async def _read_loop(self, buffer: str) -> _Close | None:
        """Handle client records; returns how to end the connection (None: it is gone)."""
        while True:
            records, buffer = protocol.split_records(buffer)
            for record in records:
                if not record:
                    continue
                ending = self._on_record(record)
                if ending is not None:
                    return ending
            if len(buffer) > _MAX_RECORD_CHARS:
                return _Close(protocol.close(CLOSED_WITH_ERROR), 1000)
            text = await self._receive()
            if text is None:
                return None
            buffer += text

    def _on_record(self, record: str) -> _Close | None:
        try:
            message = json.loads(record)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return _Close(protocol.close(CLOSED_WITH_ERROR), 1000)
        kind = message.get("type")
        if kind == MessageType.INVOCATION:
            self._invoke(message)
        elif kind == MessageType.STREAM_INVOCATION:
            invocation_id = message.get("invocationId")
            if invocation_id is not None:
                self.push(protocol.completion(invocation_id, error="Streaming is not supported."))
        elif kind == MessageType.CLOSE:
            return _Close(None, 1000)
        # Pings, completions, cancels and unknown types need no answer.
        return None

    def _invoke(self, message: dict[str, Any]) -> None:
        target = message.get("target")
        invocation_id = message.get("invocationId")
        method = self.hub.methods.get(target.lower()) if isinstance(target, str) else None
        value: object = None
        if method is None:
            error: str | None = (
                f"Failed to invoke '{target}' due to an error on the server. "
                "HubException: Method does not exist."
            )
        else:
            value, error = method.bind(message.get("arguments", []))
        key: SubscriptionKey | None = None
        if method is not None and error is None:
            key = (method.subscription, value)
            if method.subscribe:
                self.hub.subscribe(self, key)
            else:
                self.hub.unsubscribe(self, key)
        if invocation_id is not None:
            self.push(protocol.completion(invocation_id, error=error))
        if key is not None and method is not None and method.subscribe and self.hub.on_subscribed:
            self.hub.on_subscribed(self, key)

    async def _write_loop(self) -> None:
        outbox = self._outbox
        websocket = self.websocket
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while outbox:
                    item = outbox.popleft()
                    if isinstance(item, _Close):
                        if item.record is not None:
                            await websocket.send_text(item.record)
                        await self._close_quietly(item.code)
                        return
                    if isinstance(item, _Alone):
                        await websocket.send_text(item.text)
                        continue
                    parts = [item]
                    size = len(item)
                    while (
                        outbox
                        and isinstance(outbox[0], str)
                        and len(parts) < _BATCH_RECORDS
                        and size < _BATCH_CHARS
                    ):
                        record = outbox.popleft()
                        assert isinstance(record, str)
                        parts.append(record)
                        size += len(record)
                    await websocket.send_text(parts[0] if len(parts) == 1 else "".join(parts))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    async def _close_quietly(self, code: int) -> None:
        # The peer may be gone already; closing is best effort.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.websocket.close(code)
