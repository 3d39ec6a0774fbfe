"""httpx's API on lean HTTP/1.1 connections: the REST client's transport.

The REST client keeps httpx (its requests, responses, timeouts and errors); the wire work under
it is h11 (the HTTP/1.1 state machine httpcore is built on) over plain asyncio protocols, with
keep-alive connections. A close's request is written to the socket in the same step that hands
it over, with no task, stream or buffer layer in between: on this kind of machine that takes a
fifth of the time aiohttp's client needs for the same POST (issue 16, benchmarks/README.md).
A request that must go through an HTTP(S) proxy from the environment is handed to
`AiohttpTransport`, which knows CONNECT tunnels.

What matters for enforcement is the mapping of failures, because the REST client decides from
the exception type whether a close may be sent again (`riskman.gateway.rest._NOT_SENT`): only
a failure to *connect* (refused, DNS, TLS handshake, connect or pool timeout) says that no
byte of the request left this machine. Everything after the request was written (the server
hanging up, a reset, a read timeout, a broken reply) leaves the outcome unknown and is raised
as a read error, a read timeout or a protocol error, never as a connect error.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import h11
import httpx

from riskman.gateway.aiohttp_transport import (
    KEEPALIVE,
    MAX_CONNECTIONS,
    AiohttpTransport,
    environment_proxy,
)
from riskman.gateway.sched import yield_cpu

_Key = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Closed(Exception):
    """The connection ended before the reply did."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: h11 reads what the socket brings and the reply
    (head and whole body) completes a future."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reply: asyncio.Future[tuple[h11.Response, bytes]] | None = None
        self._head: h11.Response | None = None
        self._body: list[bytes] = []

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._reply is None:
            # Bytes nobody asked for (a server talking out of turn): never reuse this one.
            self.close()
            return
        self._feed(data)

    def eof_received(self) -> bool:
        if self._reply is not None:
            self._feed(b"")  # a reply delimited by the close ends here; any other is cut off
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_Closed(f"connection lost ({exc})" if exc else "server closed the connection"))

    # --- one exchange ---------------------------------------------------------------------

    def send(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> asyncio.Future[tuple[h11.Response, bytes]]:
        """Write the whole request in one go (no await before the bytes reach the socket),
        yield the CPU once (`riskman.gateway.sched.yield_cpu`) and return the future of its reply.

        A plain request (the REST client's: its headers checked, its length given) is written
        as the bytes h11 would write, and h11 is told of it just after, so that it reads the
        reply; its own checks run then, off the path of a close (issue 16). Anything else goes
        through h11 first."""
        assert self.transport is not None
        data = _plain_request(method, target, headers, body)
        reply: asyncio.Future[tuple[h11.Response, bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        if data is None:
            data = self._through_h11(method, target, headers, body)
            self._reply, self._head, self._body = reply, None, []
            self.transport.write(data)
            yield_cpu()
            return reply
        self._reply, self._head, self._body = reply, None, []
        self.transport.write(data)
        yield_cpu()
        try:
            self._through_h11(method, target, headers, body)
        except h11.LocalProtocolError:
            # Written already: the outcome is unknown and this connection is not reused.
            self._reply = None
            self.close()
            raise
        return reply

    def _through_h11(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        data = self.h11.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            data += self.h11.send(h11.Data(data=body)) or b""
        return data + (self.h11.send(h11.EndOfMessage()) or b"")

    def reusable(self) -> bool:
        """After a complete exchange: ready for the next request on the same connection."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            return False
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _feed(self, data: bytes) -> None:
        try:
            self.h11.receive_data(data)
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    self._head = event
                elif isinstance(event, h11.Data):
                    self._body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    reply, self._reply = self._reply, None
                    if reply is not None and not reply.done() and self._head is not None:
                        reply.set_result((self._head, b"".join(self._body)))
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    raise _Closed("server closed the connection before its reply ended")
        except h11.RemoteProtocolError as exc:
            # At the end of the stream it is a hang-up (no reply, or half of one), else a
            # reply h11 cannot read.
            self._fail(_Closed(f"server closed the connection: {exc}") if not data else exc)
            self.close()
        except _Closed as exc:
            self._fail(exc)
            self.close()

    def _fail(self, exc: Exception) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_exception(exc)


class H11Transport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per host (at most `max_connections` open at once,
    idle ones dropped after `keepalive` seconds). Bodies are read whole (the gateway's replies
    are small JSON documents)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = MAX_CONNECTIONS,
        keepalive: float = KEEPALIVE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # httpx's default context (certifi's CA bundle), so TLS trust does not change.
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._clock = clock
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._proxied: AiohttpTransport | None = None

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {url.scheme!r}", request=request
            )
        if environment_proxy(url, self._proxies) is not None:
            if self._proxied is None:
                self._proxied = AiohttpTransport(ssl_context=self._ssl_context)
            return await self._proxied.handle_async_request(request)
        limits: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        key: _Key = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        connection = self._take_idle(key)
        slots = self._semaphore()
        if connection is None:
            await self._acquire(slots, limits.get("pool"), request)
            try:
                connection = await self._connect(key, limits.get("connect"), request)
            except BaseException:
                slots.release()
                raise
        try:
            reply = connection.send(
                request.method.encode(), url.raw_path, request.headers.raw, body
            )
            response, content = await _within(reply, limits.get("read"))
        except TimeoutError as exc:
            self._discard(connection)
            raise httpx.ReadTimeout("no reply within the read timeout", request=request) from exc
        except h11.RemoteProtocolError as exc:
            self._discard(connection)
            raise httpx.RemoteProtocolError(f"broken reply: {exc}", request=request) from exc
        except h11.LocalProtocolError as exc:
            self._discard(connection)
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        except _Closed as exc:
            self._discard(connection)
            raise httpx.ReadError(str(exc), request=request) from exc
        except BaseException:  # cancelled mid-exchange: the reply would arrive out of turn
            self._discard(connection)
            raise
        if connection.reusable():
            connection.idle_since = self._now()
            self._idle.setdefault(key, []).append(connection)
        else:
            self._discard(connection)
        extensions: dict[str, object] = {
            "http_version": b"HTTP/" + response.http_version,
            "reason_phrase": bytes(response.reason),
        }
        return httpx.Response(
            response.status_code,
            headers=list(response.headers),
            content=content,
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        proxied, self._proxied = self._proxied, None
        if proxied is not None:
            await proxied.aclose()

    # --- the pool -------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        return self._slots

    def _take_idle(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = self._now()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            if not connection.closed and now - connection.idle_since < self._keepalive:
                return connection
            self._discard(connection)
        return None

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        if connection in self._open:
            self._open.discard(connection)
            self._semaphore().release()

    async def _acquire(
        self, slots: asyncio.Semaphore, timeout: float | None, request: httpx.Request
    ) -> None:
        if not slots.locked():
            await slots.acquire()  # free: returns without suspending
            return
        # Every connection busy: an idle one that expired frees its slot first.
        for key in list(self._idle):
            for connection in list(self._idle[key]):
                if self._now() - connection.idle_since >= self._keepalive:
                    self._idle[key].remove(connection)
                    self._discard(connection)
        try:
            await asyncio.wait_for(slots.acquire(), timeout)
        except TimeoutError as exc:
            raise httpx.PoolTimeout("every connection is busy", request=request) from exc

    async def _connect(
        self, key: _Key, timeout: float | None, request: httpx.Request
    ) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._ssl() if scheme == "https" else None
        try:
            _transport, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(key),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                ),
                timeout,
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"connect to {host}:{port} timed out", request=request
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(_describe(exc), request=request) from exc
        self._open.add(connection)
        return connection


_UNSAFE = (b"\r", b"\n", b"\0")


def _plain_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes | None:
    """The request as HTTP/1.1 bytes, or None when it is not plain: a value with a line
    break, a name that is not a simple token, no Host, a body without its exact length."""
    if not method.isalpha() or b" " in target or any(c in target for c in _UNSAFE):
        return None
    lines = [method + b" " + target + b" HTTP/1.1"]
    host = False
    length: bytes | None = None
    for name, value in headers:
        lowered = name.lower()
        if not name or not name.replace(b"-", b"").isalnum() or any(c in value for c in _UNSAFE):
            return None
        if lowered == b"host":
            host = True
        elif lowered == b"content-length":
            length = value
        elif lowered == b"transfer-encoding":
            return None
        lines.append(name + b": " + value)
    if not host or ((body or length is not None) and length != str(len(body)).encode()):
        return None
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _within(
    reply: asyncio.Future[tuple[h11.Response, bytes]], timeout: float | None
) -> tuple[h11.Response, bytes]:
    """Await the reply, at most `timeout` seconds (a timer, not a task per request)."""
    if timeout is None:
        return await reply
    loop = asyncio.get_running_loop()
    timer = loop.call_later(timeout, _expire, reply)
    try:
        return await reply
    finally:
        timer.cancel()


def _expire(reply: asyncio.Future[Any]) -> None:
    if not reply.done():
        reply.set_exception(TimeoutError())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
