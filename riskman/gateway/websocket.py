"""A hub's WebSocket connection, read and written on the event loop (issue 16).

The WebSocket protocol itself (the HTTP upgrade and its checks, framing, masking, answering
pings, the closing handshake) is the `websockets` library's Sans-I/O client
(:class:`websockets.client.ClientProtocol`); here it is driven by an asyncio protocol, so a
frame is read, cut and handed on in the same callback that the loop runs when the socket is
readable: no receive thread, no hand-over between threads, no interpreter-lock contention with
the loop (signalrcore's websocket client reads on a thread of its own, and that hop cost a
breach ~0.1 ms at p50 and more at p99; the SignalR layer above is still signalrcore's JSON hub
protocol).

What is handed on: every whole message one read brought, in order, in one call
(`on_messages`): the four events of a fill arrive side by side. A text message's bytes are
decoded with replacement, so a bad byte costs one message (its record fails to parse and is
skipped), never the connection. Fragmented messages are joined. Binary messages are read as
text too (the gateway sends none).

The end: `on_lost` is called once with the reason (close frame, end of stream, socket error,
protocol error), unless riskman closed the connection itself.

Secrets: the URL carries the token. The protocol's own logger has the redaction filter and is
kept at WARNING (at debug it logs the upgrade request line); nothing here logs a URL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

from riskman.core.redaction import install_redaction


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """One TLS context for every hub connection. Building one loads the system's CA bundle:
    a few milliseconds and about a megabyte and a half of native memory each time, which a
    connection per reconnect turned into a slow climb of the resident memory."""
    return ssl.create_default_context()


MAX_MESSAGE = 16 * 1024 * 1024
"""Bytes of one message, at most (the gateway's are a few hundred; a larger one is a fault)."""
CLOSE_TIMEOUT = 5.0

WEBSOCKET_LOG = logging.getLogger("riskman.gateway.websocket")
"""The protocol's logger (kept at WARNING, redacted: `riskman.gateway.realtime`)."""
install_redaction(WEBSOCKET_LOG)


class WebSocketRefused(ConnectionError):
    """The server did not upgrade the connection (`status` is its HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HubSocket(asyncio.Protocol):
    """One client WebSocket connection on the loop. Build with :func:`open_hub_socket`."""

    def __init__(
        self,
        uri: WebSocketURI,
        on_messages: Callable[[list[str]], None],
        on_lost: Callable[[str], None],
        *,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self._ws = ClientProtocol(uri, max_size=max_message, logger=WEBSOCKET_LOG)
        self._on_messages = on_messages
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        """Done once the upgrade is accepted; its exception says why it was not."""
        self._gone: asyncio.Future[None] = loop.create_future()
        self._fragments: list[bytes] = []
        self._closing = False
        self._lost_reason: str | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._ws.send_request(self._ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data)
        events = ws.events_received()
        self._flush()  # pongs and the closing handshake's answer go out at once
        messages: list[str] = []
        for event in events:
            if isinstance(event, Frame):
                self._on_frame(event, messages)
            elif isinstance(event, Response):
                self._on_response()
        if messages and not self._closing:
            self._on_messages(messages)
        if ws.state is State.CLOSED or ws.close_rcvd is not None or ws.parser_exc is not None:
            self._end(self._why_closed())

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._gone.done():
            self._gone.set_result(None)
        reason = self._why_closed() if exc is None else f"socket error ({type(exc).__name__})"
        if not self.opened.done():
            error = ConnectionError(f"connection lost during upgrade ({reason})")
            self.opened.set_exception(error)
            self.opened.exception()  # read here if nobody waits any more
        self._report(reason)

    # --- the caller's side --------------------------------------------------------------------

    @property
    def write_buffer_size(self) -> int:
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def send_text(self, text: str) -> None:
        """Queue one text message (it leaves in this call when the socket can take it)."""
        if self._transport is None or self._closing or self._ws.state is not State.OPEN:
            raise ConnectionError("not connected")
        self._ws.send_text(text.encode("utf-8"))
        self._flush()

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """The closing handshake, then the socket; bounded by `timeout`. No `on_lost` call."""
        self._closing = True
        transport = self._transport
        if transport is None:
            return
        if self._ws.state is State.OPEN:
            self._ws.send_close(1000)
            self._flush()
        try:
            await asyncio.wait_for(asyncio.shield(self._gone), timeout)
        except TimeoutError:
            pass
        finally:
            if self._transport is not None:
                self._transport.abort()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    # --- internals ----------------------------------------------------------------------------

    def _on_response(self) -> None:
        if self.opened.done():
            return
        error = self._ws.handshake_exc
        if error is None:
            self.opened.set_result(None)
            return
        status = error.response.status_code if isinstance(error, InvalidStatus) else None
        text = f"HTTP {status}" if status is not None else str(error)[:200]
        self.opened.set_exception(WebSocketRefused(f"upgrade refused: {text}", status))
        self.opened.exception()

    def _on_frame(self, frame: Frame, messages: list[str]) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                messages.append(str(frame.data, "utf-8", "replace"))
            else:
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                whole = b"".join(self._fragments)
                self._fragments = []
                messages.append(str(whole, "utf-8", "replace"))
        # Pings are answered by the protocol, pongs need nothing, a close frame ends the
        # connection (below).

    def _why_closed(self) -> str:
        ws = self._ws
        if ws.parser_exc is not None and not isinstance(ws.parser_exc, EOFError):
            return f"websocket protocol error ({type(ws.parser_exc).__name__})"
        received = ws.close_rcvd
        if received is not None:
            detail = f"{received.code}" + (f" {received.reason[:80]}" if received.reason else "")
            return f"connection closed by the gateway ({detail})"
        return "connection closed by the gateway"

    def _end(self, reason: str) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()  # what is queued (the close frame's answer) still goes out
        self._report(reason)

    def _report(self, reason: str) -> None:
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        if not self._closing and self.opened.done() and self.opened.exception() is None:
            self._on_lost(reason)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()


async def open_hub_socket(
    url: str,
    on_messages: Callable[[list[str]], None],
    on_lost: Callable[[str], None],
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> HubSocket:
    """Connect to `url` (ws:// or wss://) and finish the upgrade within `timeout` seconds.

    Raises TimeoutError, :class:`WebSocketRefused` (not upgraded), or OSError/ConnectionError
    (no connection). `on_lost` is never called for a connection that did not open."""
    try:
        uri = parse_uri(url)
    except InvalidURI:
        raise WebSocketRefused("not a ws:// or wss:// URL") from None
    loop = asyncio.get_running_loop()
    sock = HubSocket(uri, on_messages, on_lost)
    secure = uri.secure
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: sock,
                uri.host,
                uri.port,
                ssl=(ssl_context or default_ssl_context()) if secure else None,
                server_hostname=uri.host if secure else None,
            )
            await asyncio.shield(sock.opened)
    except BaseException:
        sock.abort()
        raise
    return sock
