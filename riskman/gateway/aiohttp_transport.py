"""httpx's API on aiohttp's HTTP/1.1 connections: the REST client's transport.

The REST client keeps httpx (its requests, responses, timeouts and errors); only the wire work
under it is aiohttp's, which does the same keep-alive POST in about half the time of httpx's
own transport on this kind of machine (issue 16, benchmarks/README.md: the httpx floor
against the httpx-on-aiohttp floor).

What matters for enforcement is the mapping of failures, because the REST client decides from
the exception type whether a close may be sent again (`riskman.gateway.rest._NOT_SENT`): only
a failure to *connect* (refused, DNS, TLS handshake, connect or pool timeout) says that no
byte of the request left this machine. Everything after that (the server hanging up, a reset,
a read timeout, a broken reply) leaves the outcome unknown and is raised as a read error or a
read timeout, never as a connect error.
"""

from __future__ import annotations

import ssl
import urllib.request

import aiohttp
import httpx

KEEPALIVE = 60.0
MAX_CONNECTIONS = 16


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One `aiohttp.ClientSession` (keep-alive, HTTP/1.1), made on first use on the running
    loop. Bodies are read whole (the gateway's replies are small JSON documents)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = MAX_CONNECTIONS,
        keepalive: float = KEEPALIVE,
    ) -> None:
        # httpx's default context (certifi's CA bundle), so TLS trust does not change.
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=self._ssl, limit=self._max_connections, keepalive_timeout=self._keepalive
        )
        # Bodies stay as sent: httpx decodes a Content-Encoding itself, as it always did.
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def _proxy(self, url: httpx.URL) -> str | None:
        return environment_proxy(url, self._proxies)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None or session.closed:
            session = self._open()
        limits = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=limits.get("pool"),
            sock_connect=limits.get("connect"),
            sock_read=limits.get("read"),
        )
        body = await request.aread()
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                proxy=self._proxy(request.url),
            ) as reply:
                content = await reply.read()
                status = reply.status
                headers = [(bytes(k), bytes(v)) for k, v in reply.raw_headers]
                reason = reply.reason
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(_describe(exc), request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(_describe(exc), request=request) from exc
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise httpx.UnsupportedProtocol(_describe(exc), request=request) from exc
        except TimeoutError as exc:  # aiohttp's read timeout (SocketTimeoutError) and others
            raise httpx.ReadTimeout(_describe(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # Sent (or maybe sent): the server hung up, reset, or answered something broken.
            raise httpx.ReadError(_describe(exc), request=request) from exc
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("ascii", "replace")
        return httpx.Response(
            status, headers=headers, content=content, request=request, extensions=extensions
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def environment_proxy(url: httpx.URL, seen: dict[tuple[str, str], str | None]) -> str | None:
    """HTTP(S)_PROXY / NO_PROXY from the environment, as httpx honours them (looked up once
    per scheme and host in `seen`, not on every call)."""
    key = (url.scheme, url.host)
    if key not in seen:
        proxy = urllib.request.getproxies().get(url.scheme)
        if proxy and urllib.request.proxy_bypass(url.host):
            proxy = None
        seen[key] = proxy or None
    return seen[key]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
