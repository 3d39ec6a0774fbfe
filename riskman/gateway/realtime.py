"""SignalR hubs (PROJECTX_API.md §3): a small transport interface, its implementation, and a
supervisor per hub that never trusts a connection to heal itself.

One thread. The hub's WebSocket is read and written on the event loop
(`riskman.gateway.websocket`: the `websockets` library's Sans-I/O protocol driven by an asyncio
protocol). The frames one read of the socket brings are cut, decoded and routed in the
callback the loop runs when the socket is readable: a fill reaches the engine without a hop
between threads (issue 16: signalrcore's receive thread and its hand-over cost a breach ~0.1 ms
at p50, more at p99, and competed with the loop for the interpreter lock). Sends never block:
they are queued on the socket, and a gateway that stops reading is a lost connection.

What is taken from signalrcore and what is not. Its JSON hub protocol (handshake, 0x1E-separated
records, the message types and their encoding) does the talking. Its websocket client (a
blocking socket and a receive thread) and its hub *connection* object are not used: the
connection's automatic reconnect stalls silently, one undecodable record kills the whole
connection, it does not surface pings, and it logs the URL (with the token) at debug level. So
the records are dispatched here, on the loop, one at a time (a bad one costs only itself), and
the supervisor below decides when a connection is dead.

Secrets. The hub URL carries the token (``?access_token=``). signalrcore's logger and the
WebSocket protocol's are kept at WARNING with the redaction filter; nothing here logs a URL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from signalrcore.messages.close_message import CloseMessage
from signalrcore.messages.completion_message import CompletionMessage
from signalrcore.messages.invocation_message import InvocationMessage
from signalrcore.messages.ping_message import PingMessage
from signalrcore.protocol.json_hub_protocol import JsonHubProtocol

from riskman.core.backoff import Backoff
from riskman.core.clock import Clock, SystemClock
from riskman.core.enums import OrderStatus
from riskman.core.models import LOGOUT_EVENT
from riskman.core.redaction import install_redaction, redact
from riskman.core.views import FeedHealth, FeedState
from riskman.gateway.errors import GatewayError
from riskman.gateway.websocket import WEBSOCKET_LOG, HubSocket, WebSocketRefused, open_hub_socket

log = logging.getLogger(__name__)
install_redaction(log)

_QUIET_LOGGERS = (logging.getLogger("SignalRCoreClient"), WEBSOCKET_LOG)


def quiet_hub_loggers() -> None:
    """Keep signalrcore's logger and the WebSocket protocol's below WARNING: at debug they log
    the hub URL (token included) and every frame. Their records are redacted all the same."""
    for logger in _QUIET_LOGGERS:
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
        install_redaction(logger)


quiet_hub_loggers()

PROTOCOL = JsonHubProtocol(version=1)
RECORD_SEPARATOR: str = PROTOCOL.record_separator

TRADE = "GatewayUserTrade"
POSITION = "GatewayUserPosition"
FIRST = frozenset({TRADE, POSITION})
"""The events of a fill that can breach a rule: parsed and routed before the others."""
OVERTAKEN = frozenset({"GatewayUserOrder"})
"""What they may overtake: order updates only move the order book."""
DEFERRED = frozenset({"GatewayUserOrder", "GatewayUserAccount"})
"""Handed over a little later (after the fill's trade and position update)."""
SEND_BUFFER_LIMIT = 1024 * 1024
"""Bytes waiting to be sent beyond which the gateway counts as no longer reading (a ping goes
out every 10 s; nothing riskman sends is large)."""
HANDSHAKE: str = PROTOCOL.encode(PROTOCOL.handshake_message())
PING: str = PROTOCOL.encode(PingMessage())

HubName = Literal["user", "market"]


# --- the transport interface ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubEvent:
    """A server-to-client invocation: `target` is the event name (`GatewayUserOrder`, ...)."""

    target: str
    arguments: list[Any]


@dataclass(frozen=True, slots=True)
class HubClosed:
    """The connection is gone (close message, socket error, closed by us). Always the last."""

    reason: str


HubMessage = HubEvent | HubClosed


class HubError(Exception):
    """A hub connection failed (connect, handshake, send) or is gone."""


class HubConnectError(HubError):
    def __init__(self, message: str, *, unauthorized: bool = False) -> None:
        super().__init__(message)
        self.unauthorized = unauthorized


class HubInvokeError(HubError):
    """The server completed an invocation with an error (the connection itself is fine)."""


class HubTransport(Protocol):
    """One hub connection. Built fresh for every (re)connect; never reused after `close`."""

    async def connect(self, url: str, token: str) -> None:
        """Open the socket and finish the SignalR handshake; raise :class:`HubConnectError`."""
        ...

    async def invoke(self, method: str, arguments: Sequence[Any]) -> Any:
        """Invoke a hub method and wait for its completion; raise :class:`HubError`."""
        ...

    async def receive(self) -> HubMessage:
        """The next inbound event; :class:`HubClosed` once the connection is gone."""
        ...

    def messages(self) -> AsyncIterator[HubMessage]:
        """Inbound events as an async stream, ending after the :class:`HubClosed`."""
        ...

    async def close(self) -> None:
        """Drop the connection; bounded in time, safe to call more than once."""
        ...

    @property
    def last_inbound(self) -> float | None:
        """`Clock.monotonic()` of the last inbound frame (events and pings alike)."""
        ...


TransportFactory = Callable[[], HubTransport]


def hub_url_with_token(url: str, token: str) -> str:
    """`url` as a websocket URL with `access_token` in its query (never log the result)."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "access_token"]
    query.append(("access_token", token))
    return urllib.parse.urlunsplit(
        (scheme, parts.netloc, parts.path, urllib.parse.urlencode(query), "")
    )


def _payload(arguments: object) -> dict[str, Any]:
    """A user event's object, unwrapped as `riskman.core.models` does ({} when unreadable)."""
    data = arguments[0] if isinstance(arguments, list) and arguments else None
    if isinstance(data, dict) and "data" in data and "action" in data:
        data = data["data"]
    return data if isinstance(data, dict) else {}


def _position_of(arguments: object) -> tuple[object, object]:
    data = _payload(arguments)
    return data.get("accountId"), data.get("contractId")


def _its_position_follows(trade: HubEvent, batch: list[dict[str, Any]], at: int) -> bool:
    """Is a position update of the trade's account and contract among `batch[at + 1:]`?"""
    mine = _position_of(trade.arguments)
    return any(
        message.get("type") == 1
        and message.get("target") == POSITION
        and _position_of(message.get("arguments")) == mine
        for message in itertools.islice(batch, at + 1, None)
    )


def _passable(waiting: HubEvent, event: HubEvent) -> bool:
    """May `event` (a trade or position update) go before `waiting`? An order update, but not
    a working order of the same contract (the market order a fill fills: routed after the
    fill, the lockout gate would cancel it as placed under the fill's lock); and, for a
    position update, its own trade, which waits for it."""
    if waiting.target == TRADE:
        return event.target == POSITION and (
            _position_of(waiting.arguments) == _position_of(event.arguments)
        )
    if waiting.target not in OVERTAKEN:
        return False
    order, mine = _payload(waiting.arguments), _payload(event.arguments)
    if order.get("contractId") != mine.get("contractId"):
        return True
    status = order.get("status")
    try:
        return isinstance(status, int) and not OrderStatus(status).is_working
    except ValueError:
        return False


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    """Fail `future` without asyncio's "exception never retrieved" noise if nobody awaits it."""
    if not future.done():
        future.set_exception(error)
        future.exception()


class SignalRCoreTransport:
    """A :class:`HubTransport`: signalrcore's JSON hub protocol over a WebSocket read and
    written on the event loop (`riskman.gateway.websocket`)."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        connect_timeout: float = 10.0,
        send_buffer_limit: int = SEND_BUFFER_LIMIT,
        invoke_timeout: float = 10.0,
        close_timeout: float = 5.0,
        keep_alive_interval: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._connect_timeout = connect_timeout
        self._send_buffer_limit = send_buffer_limit
        self._invoke_timeout = invoke_timeout
        self._close_timeout = close_timeout
        self._keep_alive_interval = keep_alive_interval
        self._ssl_context = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket: HubSocket | None = None
        self._queue: asyncio.Queue[HubMessage] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._handshake: asyncio.Future[None] | None = None
        self._ids = itertools.count(1)
        self._last_inbound: float | None = None
        self._lost = False
        self._closed = False
        self._keep_alive: asyncio.Task[None] | None = None
        self._bad_frames = 0
        self._deliver: Callable[[HubEvent], None] | None = None
        self._later: list[HubEvent] = []
        self._later_due = False

    def __repr__(self) -> str:
        return f"SignalRCoreTransport(lost={self._lost}, closed={self._closed})"

    @property
    def last_inbound(self) -> float | None:
        return self._last_inbound

    async def connect(self, url: str, token: str) -> None:
        quiet_hub_loggers()
        self._loop = asyncio.get_running_loop()
        self._handshake = self._loop.create_future()
        try:
            await self._open(hub_url_with_token(url, token))
        except TimeoutError:
            raise HubConnectError("connect timed out") from None
        except HubError:
            raise
        except WebSocketRefused as exc:
            raise HubConnectError(
                f"connect failed ({exc})", unauthorized=exc.status in (401, 403)
            ) from None
        except Exception as exc:
            text = redact(str(exc))
            first_line = text.splitlines()[0] if text else ""
            raise HubConnectError(
                f"connect failed ({type(exc).__name__}: {first_line[:120]})"
            ) from None
        self._keep_alive = self._loop.create_task(self._ping_loop(), name="riskman-hub-ping")

    async def _open(self, url: str) -> None:
        """The WebSocket, then SignalR's handshake, within the connect timeout."""
        assert self._handshake is not None
        started = self._clock.monotonic()
        self._socket = await open_hub_socket(
            url,
            self._on_messages,
            self._lose,
            timeout=self._connect_timeout,
            ssl_context=self._ssl_context,
        )
        try:
            self._socket.send_text(HANDSHAKE)
            left = max(0.1, self._connect_timeout - (self._clock.monotonic() - started))
            await asyncio.wait_for(asyncio.shield(self._handshake), left)
        except BaseException:
            self._socket.abort()  # no half-open connection outlives a failed connect
            raise

    async def invoke(self, method: str, arguments: Sequence[Any]) -> Any:
        if self._lost or self._loop is None:
            raise HubError("not connected")
        invocation_id = str(next(self._ids))
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[invocation_id] = future
        message = InvocationMessage(invocation_id, method, list(arguments), headers={})
        try:
            await self._send(PROTOCOL.encode(message))
            return await asyncio.wait_for(future, self._invoke_timeout)
        except TimeoutError:
            raise HubError(f"{method}: no completion in {self._invoke_timeout:g} s") from None
        finally:
            self._pending.pop(invocation_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # consumed here or above: no "never retrieved" noise

    async def receive(self) -> HubMessage:
        return await self._queue.get()

    def deliver_to(self, handler: Callable[[HubEvent], None] | None) -> None:
        """Hand events to `handler` as their frame is read, on the loop, instead of through
        `receive` (one turn of the loop less between a fill and the engine; issue 16). Events
        already queued are still received first, so the order never changes; the end of the
        connection is always received."""
        self._deliver = handler
        if handler is None:
            self._hand_over_later()  # what waited goes to the queue, in order

    async def messages(self) -> AsyncIterator[HubMessage]:
        while True:
            message = await self._queue.get()
            yield message
            if isinstance(message, HubClosed):
                return

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lose("closed by riskman")
        if self._keep_alive is not None:
            self._keep_alive.cancel()
        sock = self._socket
        if sock is not None:
            await sock.close(self._close_timeout)

    # --- internals ------------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        """Queue `text` on the socket: it leaves in this call unless the kernel's buffer is
        full, and a peer that has stopped reading (the buffer past its limit) is a lost one."""
        sock = self._socket
        if sock is None or self._lost:
            raise HubError("not connected")
        try:
            sock.send_text(text)
        except Exception as exc:
            self._lose(f"send failed ({type(exc).__name__})")
            raise HubError(f"send failed ({type(exc).__name__})") from None
        if sock.write_buffer_size > self._send_buffer_limit:
            self._lose("send buffer full: the gateway is not reading")
            raise HubError("send buffer full")

    async def _ping_loop(self) -> None:
        # The server drops a client it has not heard from in 30 s (SignalR's client timeout);
        # signalrcore pings only together with its own reconnect, which we do not use.
        while not self._lost:
            await self._clock.sleep(self._keep_alive_interval)
            try:
                await self._send(PING)
            except HubError:
                return

    def _on_messages(self, texts: list[str]) -> None:
        """The whole messages one read of the socket brought (`HubSocket`), on the loop."""
        if self._lost:
            return
        self._last_inbound = self._clock.monotonic()
        messages: list[dict[str, Any]] = []
        for text in texts:
            for record in text.split(RECORD_SEPARATOR):
                if record.strip():
                    try:
                        message = json.loads(record)
                    except ValueError:
                        self._bad_frame("not JSON", len(record))
                        continue
                    if not isinstance(message, dict):
                        self._bad_frame("not an object", len(record))
                        continue
                    messages.append(message)
        for index, message in enumerate(messages):
            self._on_message(message, messages, index)
        if self._later and not self._later_due and self._loop is not None:
            # Counted from the end of the read, when the burst's position update has been
            # handed over: one turn of the loop for the engine's consumer to route it, one for
            # the action it dispatches to put its request on the socket; then what waited.
            # (Counted from the first deferred event, the order update ahead of the position
            # update, the hand-over ran before the action's first step.)
            self._later_due = True
            self._loop.call_soon(self._loop.call_soon, self._hand_over_later)

    def _on_message(self, message: dict[str, Any], batch: list[dict[str, Any]], at: int) -> None:
        """One record of `batch` (the messages handed over together), `batch[at]`."""
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            error = message.get("error")
            if error:
                _fail(handshake, HubConnectError(f"handshake refused: {str(error)[:200]}"))
            else:
                handshake.set_result(None)
            return
        if message.get("type") == 1:
            # An invocation: every gateway event. Its two fields are read here directly
            # (signalrcore's decoder builds a message object first: a third of the decode).
            target, arguments = message.get("target"), message.get("arguments")
            if not isinstance(target, str) or not isinstance(arguments, list):
                self._bad_frame("invocation without target/arguments", len(str(message)))
                return
            event = HubEvent(target, arguments)
            if target == TRADE and _its_position_follows(event, batch, at):
                # Its position update, in the same hand-over, decides a breach with less
                # work: the trade waits for it (the engine's view is the same in either order).
                self._defer(event)
            else:
                self._hand_over(event)
            return
        try:
            decoded = PROTOCOL.get_message(message)
        except (ValueError, TypeError, KeyError) as exc:
            self._bad_frame(f"not a hub message ({type(exc).__name__})", len(str(message)))
            return
        if isinstance(decoded, CompletionMessage):
            future = self._pending.get(str(decoded.invocation_id))
            if future is not None and not future.done():
                if decoded.error:
                    _fail(future, HubInvokeError(str(decoded.error)[:200]))
                else:
                    future.set_result(decoded.result)
        elif isinstance(decoded, CloseMessage):
            error = decoded.error
            self._lose(f"close message ({str(error)[:120]})" if error else "close message")
        # Pings only count as traffic; stream messages and acks are not used by the gateway.

    def _hand_over(self, event: HubEvent) -> None:
        """To the handler at once, or after what waits; order and account updates a little
        later, so that the rest of the frame (the trade and position update of a fill) is
        parsed and routed first, and the close it may need is on the socket before they are
        parsed (issue 16). A trade or a position update overtakes waiting order updates (and a
        position update its own trade, which waits for it), never an account update, as the
        engine's queue does (`riskman.engine.engine.BurstQueue`)."""
        deliver = self._deliver
        if deliver is None or not self._queue.empty():
            self._queue.put_nowait(event)
            return
        later = self._later
        now = not later and event.target not in DEFERRED
        if now or (event.target in FIRST and all(_passable(e, event) for e in later)):
            deliver(event)
        else:
            self._defer(event)

    def _defer(self, event: HubEvent) -> None:
        self._later.append(event)  # handed over after the read (`_on_messages`)

    def _hand_over_later(self) -> None:
        later, self._later = self._later, []
        self._later_due = False
        deliver = self._deliver
        for event in later:
            if deliver is not None and self._queue.empty():
                deliver(event)
            else:
                self._queue.put_nowait(event)

    def _bad_frame(self, why: str, size: int) -> None:
        self._bad_frames += 1
        if self._bad_frames == 1 or self._bad_frames % 100 == 0:
            log.warning(
                "hub frame skipped: %s (%d chars; %d skipped so far)", why, size, self._bad_frames
            )

    def _lose(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        if self._handshake is not None:
            _fail(self._handshake, HubConnectError(f"connection lost ({reason})"))
        for future in self._pending.values():
            _fail(future, HubError(f"connection lost ({reason})"))
        self._hand_over_later()
        self._queue.put_nowait(HubClosed(reason))


# --- the supervisor ---------------------------------------------------------------------------


class TokenSource(Protocol):
    """Where a hub gets its token (the REST client)."""

    @property
    def token_version(self) -> int: ...

    async def access_token(self) -> str: ...

    async def renew_token(self, stale_version: int | None = None) -> str: ...

    def add_token_listener(self, listener: Callable[[], None]) -> Callable[[], None]: ...


Setup = Callable[[HubTransport], Awaitable[None]]
EventHandler = Callable[[HubEvent], None]
HealthHandler = Callable[[FeedHealth], None]

STABLE_AFTER = 10.0
"""Seconds of trusted service after which a dropped connection is rebuilt without backoff."""
DOWN_AFTER_FAILURES = 3
"""Consecutive failed attempts after which the hub is reported DOWN (not just reconnecting)."""


class HubSupervisor:
    """Keeps one hub connected: connect, set up (subscribe, reconcile), watch, rebuild.

    A connection is discarded and a fresh one built (with backoff) when: no inbound frame for
    `silence_timeout`; the connect or the setup fails or stalls; the server closes it or the
    socket breaks; a `GatewayLogout` arrives (the token is renewed first); the token changes;
    or someone calls :meth:`rebuild`. The hub is CONNECTED (trusted) only once `setup` has
    finished on the current connection.
    """

    def __init__(
        self,
        hub: HubName,
        url: str,
        tokens: TokenSource,
        *,
        setup: Setup,
        ready_detail: str = "ready",
        on_event: EventHandler,
        on_health: HealthHandler,
        clock: Clock | None = None,
        transport_factory: TransportFactory | None = None,
        silence_timeout: float = 30.0,
        max_backoff: float = 30.0,
        connect_timeout: float = 15.0,
        setup_timeout: float = 90.0,
        close_timeout: float = 5.0,
        stable_after: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.hub: HubName = hub
        self._url = url
        self._tokens = tokens
        self._setup = setup
        self._ready_detail = ready_detail
        self._on_event = on_event
        self._on_health = on_health
        self._clock: Clock = clock or SystemClock()
        self._factory: TransportFactory = transport_factory or (
            lambda: SignalRCoreTransport(self._clock)
        )
        self._silence_timeout = silence_timeout
        self._connect_timeout = connect_timeout
        self._setup_timeout = setup_timeout
        self._close_timeout = close_timeout
        # A connection that dies sooner than this after its setup counts as a failure, so a
        # gateway that accepts and then drops us is retried with growing delays. Ten seconds of
        # trusted service is not flapping: a later drop is rebuilt at once, because every
        # second of backoff is a second the stream is not watched.
        self._stable_after = (
            stable_after if stable_after is not None else min(silence_timeout, STABLE_AFTER)
        )
        self._check_interval = max(0.05, min(1.0, silence_timeout / 4))
        self._backoff = Backoff(self._clock, base=0.5, maximum=max_backoff, rng=rng)

        self._state = FeedState.DOWN
        self._detail = "not started"
        self._since = self._clock.now()
        self._reconnects = 0
        self._last_inbound: float | None = None
        self._transport: HubTransport | None = None
        self._ready = False
        self._rebuild_reason: str | None = None
        self._renew_next = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._conn_version = -1
        self._current: HubTransport | None = None
        """The transport being built or used, until it is closed (stop() closes a leftover)."""

    def __repr__(self) -> str:
        return f"HubSupervisor({self.hub}, {self._state.value})"

    # --- public ---------------------------------------------------------------------------

    @property
    def state(self) -> FeedState:
        return self._state

    @property
    def trusted(self) -> bool:
        return self._state is FeedState.CONNECTED

    @property
    def reconnects(self) -> int:
        return self._reconnects

    def health(self) -> FeedHealth:
        return FeedHealth(
            hub=self.hub,
            state=self._state,
            last_event_age=self._event_age(),
            reconnects=self._reconnects,
            detail=self._detail,
            since=self._since,
        )

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._remove_listener = self._tokens.add_token_listener(self._on_token)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"riskman-hub-{self.hub}"
        )

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        leftover, self._current = self._current, None
        if leftover is not None:
            await self._discard(leftover)
        self._set_state(FeedState.DOWN, "stopped")

    def rebuild(self, reason: str, *, renew_token: bool = False) -> None:
        """Discard the current connection and build a fresh one."""
        if renew_token:
            self._renew_next = True
        if self._rebuild_reason is None:
            self._rebuild_reason = reason
        self._wake.set()

    async def invoke(self, method: str, arguments: Sequence[Any]) -> Any:
        """Invoke on the current connection (raise :class:`HubError` if there is none)."""
        transport = self._transport
        if transport is None:
            raise HubError(f"{self.hub} hub not connected")
        return await transport.invoke(method, arguments)

    @property
    def ready(self) -> bool:
        """Connected and set up (same as `trusted`, but usable inside state callbacks)."""
        return self._ready and self._transport is not None

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        first = True
        while not self._stopping:
            if first:
                self._set_state(FeedState.CONNECTING, "connecting")
            elif self._state is not FeedState.DOWN:
                self._set_state(FeedState.RECONNECTING, self._detail)
            first = False
            reason, stable = await self._session()
            if self._stopping:
                return
            failures = 0 if stable else failures + 1
            self._reconnects += 1
            delay = self._backoff.delay(failures)
            log.warning(
                "%s hub: %s; reconnecting in %.1f s (attempt %d)",
                self.hub,
                reason,
                delay,
                self._reconnects,
            )
            if failures >= DOWN_AFTER_FAILURES:
                self._set_state(FeedState.DOWN, reason)
            elif self._state is not FeedState.STALE:
                self._set_state(FeedState.RECONNECTING, reason)
            else:
                self._detail = reason
            await self._pause(delay)

    async def _session(self) -> tuple[str, bool]:
        """One connection's life: returns why it ended and whether it had been stable."""
        self._ready = False
        self._rebuild_reason = None
        self._wake.clear()
        transport = self._factory()
        self._current = transport
        reader: asyncio.Task[str] | None = None
        setup: asyncio.Task[None] | None = None
        try:
            try:
                if self._renew_next:
                    self._renew_next = False
                    # The version this hub was refused with: if another hub renewed since,
                    # its token is used instead of forcing yet another one.
                    token = await self._tokens.renew_token(self._conn_version)
                else:
                    token = await self._tokens.access_token()
            except GatewayError as exc:
                return f"no token ({exc})", False
            self._conn_version = self._tokens.token_version
            try:
                await asyncio.wait_for(transport.connect(self._url, token), self._connect_timeout)
            except TimeoutError:
                return "connect timed out", False
            except HubConnectError as exc:
                if exc.unauthorized:
                    self._renew_next = True
                return str(exc), False
            self._transport = transport
            connected_at = self._clock.monotonic()
            loop = asyncio.get_running_loop()
            reader = loop.create_task(self._read(transport), name=f"riskman-hub-{self.hub}-read")
            setup = loop.create_task(
                self._run_setup(transport), name=f"riskman-hub-{self.hub}-setup"
            )
            return await self._watch(transport, reader, setup, connected_at)
        except (HubError, GatewayError, OSError) as exc:
            return f"{type(exc).__name__}: {redact(str(exc))}", False
        except Exception as exc:  # never let the supervisor die
            log.exception("%s hub: unexpected error", self.hub)
            return f"unexpected {type(exc).__name__}", False
        finally:
            self._ready = False
            self._transport = None
            if setup is not None:
                setup.cancel()
                await asyncio.gather(setup, return_exceptions=True)
            await self._discard(transport)
            self._current = None
            if reader is not None:
                # Closing queued a HubClosed behind whatever had already arrived: let the
                # reader hand those events over instead of dropping them with the connection.
                await asyncio.wait({reader}, timeout=self._close_timeout)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _watch(
        self,
        transport: HubTransport,
        reader: asyncio.Task[str],
        setup: asyncio.Task[None],
        connected_at: float,
    ) -> tuple[str, bool]:
        ready_at: float | None = None

        def stable() -> bool:
            return ready_at is not None and self._clock.monotonic() - ready_at >= self._stable_after

        while True:
            self._note_inbound(transport)
            if self._stopping:
                return "stopping", stable()
            if self._rebuild_reason is not None:
                return self._rebuild_reason, stable()
            if reader.done():
                return reader.result(), stable()
            if ready_at is None and setup.done():
                error = setup.exception()
                if error is not None:
                    what = "timed out" if isinstance(error, TimeoutError) else _describe(error)
                    return f"setup failed: {what}", False
                ready_at = self._clock.monotonic()
                self._ready = True
                self._set_state(FeedState.CONNECTED, self._ready_detail)
            if self._tokens.token_version != self._conn_version:
                return "token refreshed", stable()
            last = transport.last_inbound or connected_at
            silent = self._clock.monotonic() - last
            if silent > self._silence_timeout:
                reason = f"silent for {silent:.1f} s"
                self._set_state(FeedState.STALE, reason)
                return reason, stable()
            waiters: list[asyncio.Future[Any]] = [reader]
            if ready_at is None:
                waiters.append(setup)
            await self._wait_any(waiters, self._check_interval)

    async def _run_setup(self, transport: HubTransport) -> None:
        # The setup coroutine is made here, inside the task: a task cancelled before it ever
        # ran (a quick rebuild) then leaves no "coroutine was never awaited" warning on stderr,
        # which would also break the one-JSON-object-per-line log.
        await asyncio.wait_for(self._setup(transport), self._setup_timeout)

    async def _read(self, transport: HubTransport) -> str:
        deliver_to = getattr(transport, "deliver_to", None)
        if deliver_to is not None:
            deliver_to(self._deliver)
        try:
            while True:
                message = await transport.receive()
                if isinstance(message, HubClosed):
                    return f"connection lost: {message.reason}"
                self._deliver(message)
        finally:
            if deliver_to is not None:
                deliver_to(None)

    def _deliver(self, message: HubEvent) -> None:
        if message.target == LOGOUT_EVENT:
            log.warning("%s hub: GatewayLogout received; re-authenticating", self.hub)
            self.rebuild("GatewayLogout", renew_token=True)
            return
        try:
            self._on_event(message)
        except Exception:  # one event must never stop the stream
            log.exception("%s hub: handler failed for %s", self.hub, message.target)

    async def _discard(self, transport: HubTransport) -> None:
        try:
            await asyncio.wait_for(transport.close(), self._close_timeout + 1.0)
        except Exception as exc:
            log.warning("%s hub: close did not finish (%s)", self.hub, type(exc).__name__)

    async def _wait_any(self, waiters: list[asyncio.Future[Any]], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        wake = loop.create_task(self._wake.wait())
        sleep = loop.create_task(self._clock.sleep(timeout))
        try:
            await asyncio.wait([*waiters, wake, sleep], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (wake, sleep):
                task.cancel()
            await asyncio.gather(wake, sleep, return_exceptions=True)
        self._wake.clear()

    async def _pause(self, delay: float) -> None:
        # stop() cancels the task; a rebuild request while down does not shorten the backoff.
        if delay > 0:
            await self._clock.sleep(delay)

    # --- state ----------------------------------------------------------------------------

    def _on_token(self) -> None:
        self._wake.set()

    def _note_inbound(self, transport: HubTransport) -> None:
        last = transport.last_inbound
        if last is not None and (self._last_inbound is None or last > self._last_inbound):
            self._last_inbound = last

    def _event_age(self) -> float | None:
        transport = self._transport
        if transport is not None:
            self._note_inbound(transport)
        if self._last_inbound is None:
            return None
        return max(0.0, self._clock.monotonic() - self._last_inbound)

    def _set_state(self, state: FeedState, detail: str) -> None:
        if state is self._state and detail == self._detail:
            return
        changed = state is not self._state
        self._state = state
        self._detail = detail
        if changed:
            self._since = self._clock.now()
            # Stale or down is an outage the operator must see; the rest is routine.
            level = logging.WARNING if state in (FeedState.STALE, FeedState.DOWN) else logging.INFO
            if state is FeedState.DOWN and detail == "stopped":
                level = logging.INFO
            log.log(level, "%s hub: %s (%s)", self.hub, state.value, detail)
        try:
            self._on_health(self.health())
        except Exception:
            log.exception("%s hub: health handler failed", self.hub)


def _describe(error: BaseException) -> str:
    text = redact(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = [
    "Backoff",
    "HubClosed",
    "HubConnectError",
    "HubError",
    "HubEvent",
    "HubInvokeError",
    "HubMessage",
    "HubName",
    "HubSupervisor",
    "HubTransport",
    "SignalRCoreTransport",
    "TokenSource",
    "TransportFactory",
    "hub_url_with_token",
    "quiet_hub_loggers",
]
