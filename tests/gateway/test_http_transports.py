"""The REST client's transports (httpx's API on h11's connections, the default, and on aiohttp's,
for proxies), against real sockets on loopback: what they send and return, and above all how
they report failures, since the REST client sends a close again only when the request surely
never left (a connect failure)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from riskman.config import GatewayConfig
from riskman.core.enums import OrderSide
from riskman.gateway.aiohttp_transport import AiohttpTransport
from riskman.gateway.errors import GatewayUnavailable, OutcomeUnknown
from riskman.gateway.h11_transport import H11Transport
from riskman.gateway.rest import _NOT_SENT, RestClient, RetryPolicy
from riskman.sim import Simulator
from tests.gateway.support import wait_until

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A raw HTTP server on loopback that runs `handler` for each connection."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


TRANSPORTS = {"h11": H11Transport, "aiohttp": AiohttpTransport}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> type[httpx.AsyncBaseTransport]:
    return TRANSPORTS[request.param]


@pytest.fixture
async def client(
    transport: type[httpx.AsyncBaseTransport],
) -> AsyncIterator[httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=transport(), timeout=httpx.Timeout(2.0))
    yield http
    await http.aclose()


async def test_a_post_goes_out_and_its_answer_comes_back_as_httpx_gives_it(
    client: httpx.AsyncClient,
) -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):  # two requests on one kept-alive connection
            seen.append(await read_request(reader))
            body = gzip.compress(b'{"success":true,"errorCode":0}')
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip\r\nX-Answer: yes\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    async with serve(answer) as url:
        for _ in range(2):
            reply = await client.post(
                url + "/api/Position/partialCloseContract",
                content=json.dumps({"accountId": 1, "size": 1}),
                headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
            )
            assert reply.status_code == 200
            assert reply.json() == {"success": True, "errorCode": 0}  # gzip decoded once
            assert reply.headers["x-answer"] == "yes"
            assert reply.http_version == "HTTP/1.1"
    assert len(seen) == 2, "both requests came over the one kept-alive connection"
    line, headers, body = seen[0]
    assert line == "POST /api/Position/partialCloseContract HTTP/1.1"
    assert headers["authorization"] == "Bearer t"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"accountId": 1, "size": 1}


async def test_a_refused_connection_is_a_connect_error_the_client_may_send_again(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(httpx.ConnectError) as info:
        await client.post(f"http://127.0.0.1:{free_port()}/api/x", content=b"{}")
    assert isinstance(info.value, _NOT_SENT)


async def test_a_server_hanging_up_after_the_request_is_not_a_connect_error(
    client: httpx.AsyncClient,
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with serve(hang_up) as url:
        with pytest.raises(httpx.TransportError) as info:
            await client.post(url + "/api/x", content=b"{}")
    assert isinstance(info.value, httpx.ReadError)
    assert not isinstance(info.value, _NOT_SENT), "a close that may have been done is not resent"


async def test_no_answer_within_the_read_timeout_is_a_read_timeout(
    transport: type[httpx.AsyncBaseTransport],
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    http = httpx.AsyncClient(transport=transport(), timeout=httpx.Timeout(0.3))
    try:
        async with serve(silent) as url:
            with pytest.raises(httpx.ReadTimeout) as info:
                await http.post(url + "/api/x", content=b"{}")
        assert not isinstance(info.value, _NOT_SENT)
    finally:
        await http.aclose()


def _config(url: str) -> GatewayConfig:
    return GatewayConfig(api_url=url, username="demo", request_timeout=2.0)


async def test_the_rest_client_uses_it_by_default_and_enforces_through_it() -> None:
    async with Simulator(seed=7, quote_interval=None) as sim:
        rest = RestClient(_config(sim.base_url), sim.api_key)
        try:
            assert isinstance(rest._transport, H11Transport)
            await rest.login()
            account_id = sim.account_ids[0]
            contract_id = sim.contract_ids[0]
            sim.submit_order(account_id, contract_id, OrderSide.BID, 2)
            await rest.partial_close_contract(account_id, contract_id, 1)
            assert [p.size for p in sim.positions(account_id)] == [1]
        finally:
            await rest.aclose()


async def test_a_close_whose_connection_drops_after_sending_is_outcome_unknown_not_resent() -> None:
    requests = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await read_request(reader)
        requests += 1
        writer.close()

    async with serve(hang_up) as url:
        rest = RestClient(_config(url), "key", retry=RetryPolicy(base_delay=0.0))
        rest._set_token("token", how="test")
        try:
            with pytest.raises(OutcomeUnknown):
                await rest.partial_close_contract(1, "CON.F.US.MNQ.Z26", 1)
        finally:
            await rest.aclose()
    assert requests == 1


async def test_a_close_that_cannot_connect_is_retried_then_unavailable() -> None:
    rest = RestClient(
        _config(f"http://127.0.0.1:{free_port()}"), "key", retry=RetryPolicy(base_delay=0.0)
    )
    rest._set_token("token", how="test")
    try:
        with pytest.raises(GatewayUnavailable):
            await rest.partial_close_contract(1, "CON.F.US.MNQ.Z26", 1)
    finally:
        await rest.aclose()


# --- the h11 transport's own connection handling -----------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client on the h11 transport alone."""
    client = httpx.AsyncClient(transport=H11Transport(), timeout=httpx.Timeout(2.0))
    yield client
    await client.aclose()


ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}'


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    http: httpx.AsyncClient,
) -> None:
    connections = 0

    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(ANSWER)
        await writer.drain()
        writer.close()  # keep-alive refused after the reply: the idle connection dies

    async with serve(once_then_close) as url:
        first = await http.post(url + "/api/x", content=b"{}")
        transport = http._transport
        assert isinstance(transport, H11Transport)
        await wait_until(lambda: all(c.closed for c in transport._open), what="the server's close")
        second = await http.post(url + "/api/x", content=b"{}")
    assert first.json() == second.json() == {"success": True}
    assert connections == 2


async def test_chunked_and_close_delimited_replies_are_read_whole(http: httpx.AsyncClient) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'a\r\n{"success"\r\n6\r\n:true}\r\n0\r\n\r\n'
        )
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"success":false}')
        await writer.drain()
        writer.close()

    async with serve(chunked) as url:
        assert (await http.post(url + "/a", content=b"{}")).json() == {"success": True}
        assert (await http.post(url + "/a", content=b"{}")).json() == {"success": False}


async def test_a_broken_reply_is_a_protocol_error_not_a_connect_error(
    http: httpx.AsyncClient,
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SPAM SPAM SPAM\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with serve(garbage) as url:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await http.post(url + "/a", content=b"{}")
    assert not isinstance(info.value, _NOT_SENT)


async def test_a_request_cancelled_mid_exchange_leaves_no_reply_behind(
    http: httpx.AsyncClient,
) -> None:
    """The late reply of a cancelled request must never be read as the next one's."""
    answered = asyncio.Event()

    async def slow_then_fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _headers, _body = await read_request(reader)
        if line.startswith("POST /slow"):
            await answered.wait()
            writer.write(ANSWER.replace(b"true", b"ZZZZ"))
        else:
            writer.write(ANSWER)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            while await reader.read(1024):
                pass

    async with serve(slow_then_fast) as url:
        slow = asyncio.create_task(http.post(url + "/slow", content=b"{}"))
        await asyncio.sleep(0.05)
        slow.cancel()
        answered.set()
        with pytest.raises(asyncio.CancelledError):
            await slow
        reply = await http.post(url + "/fast", content=b"{}")
    assert reply.json() == {"success": True}


async def test_when_every_connection_is_busy_the_pool_timeout_says_not_sent() -> None:
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.write(ANSWER)
        await writer.drain()

    http = httpx.AsyncClient(
        transport=H11Transport(max_connections=1), timeout=httpx.Timeout(2.0, pool=0.2)
    )
    try:
        async with serve(hold) as url:
            first = asyncio.create_task(http.post(url + "/a", content=b"{}"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout) as info:
                await http.post(url + "/b", content=b"{}")
            release.set()
            assert (await first).json() == {"success": True}
    finally:
        await http.aclose()
    assert isinstance(info.value, _NOT_SENT)


async def test_tls_is_verified_against_the_trusted_authorities(tmp_path) -> None:  # type: ignore[no-untyped-def]
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            await read_request(reader)
            writer.write(ANSWER)
            await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/x"
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    good = httpx.AsyncClient(transport=H11Transport(ssl_context=trusting))
    default = httpx.AsyncClient(transport=H11Transport())
    try:
        assert (await good.post(url, content=b"{}")).json() == {"success": True}
        with pytest.raises(httpx.ConnectError) as info:  # a self-made authority: untrusted
            await default.post(url, content=b"{}")
        assert isinstance(info.value, _NOT_SENT)
    finally:
        await good.aclose()
        await default.aclose()
        server.close()
        await server.wait_closed()


async def test_a_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _headers, _body = await read_request(reader)
        lines.append(line)
        writer.write(ANSWER)
        await writer.drain()

    async with serve(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        http = httpx.AsyncClient(transport=H11Transport(), timeout=httpx.Timeout(2.0))
        try:
            reply = await http.post("http://gateway.invalid/api/x", content=b"{}")
        finally:
            await http.aclose()
    assert reply.json() == {"success": True}
    assert lines == ["POST http://gateway.invalid/api/x HTTP/1.1"]


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    http: httpx.AsyncClient,
) -> None:
    seen: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            line, _headers, _body = await read_request(reader)
            seen.append(line)
        writer.close()

    async with serve(record) as url:
        with pytest.raises(httpx.LocalProtocolError):
            await http.post(
                url + "/api/x",
                content=b"{}",
                headers={"Authorization": "Bearer t\r\nX-Evil: 1"},
            )
    assert seen == [], "nothing was sent"


def test_a_plain_request_is_written_as_h11_writes_it() -> None:
    import h11

    from riskman.gateway.h11_transport import _plain_request

    headers = [
        (b"Host", b"gateway.example:8443"),
        (b"Accept", b"application/json"),
        (b"Authorization", b"Bearer abc.def-ghi"),
        (b"Content-Length", b"2"),
    ]
    ours = _plain_request(b"POST", b"/api/Position/partialCloseContract?x=1", headers, b"{}")
    conn = h11.Connection(h11.CLIENT)
    theirs = (
        conn.send(h11.Request(method="POST", target="/api/Position/partialCloseContract?x=1",
                              headers=headers))
        + conn.send(h11.Data(data=b"{}"))
        + (conn.send(h11.EndOfMessage()) or b"")
    )  # fmt: skip
    assert ours is not None and ours.lower() == theirs.lower()
    for bad in (
        [(b"Host", b"h"), (b"X", b"a\r\nb")],  # a line break in a value
        [(b"Host", b"h"), (b"X Y", b"a")],  # not a token
        [(b"Accept", b"x"), (b"Content-Length", b"2")],  # no Host
        [(b"Host", b"h"), (b"Content-Length", b"3")],  # the wrong length
        [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")],
    ):
        assert _plain_request(b"POST", b"/x", bad, b"{}") is None


async def test_the_cpu_is_yielded_once_the_request_is_on_the_wire(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The yield after the write (issue 16) lets the reader of the request run: the request must
    # already be in the kernel, whole, when it happens. The server here is a plain socket read
    # from inside the yield itself.
    from riskman.gateway import h11_transport

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    seen: list[bytes] = []

    def yielded() -> None:
        conn, _ = listener.accept()  # connected already: the write came after the connect
        accepted.append(conn)
        conn.settimeout(0)
        seen.append(conn.recv(65536, socket.MSG_PEEK))
        conn.sendall(ANSWER)

    monkeypatch.setattr(h11_transport, "yield_cpu", yielded)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        reply = await http.post(url + "/api/Position/closeContract", content=b'{"accountId":7}')
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert reply.json() == {"success": True}
    assert len(seen) == 1
    assert seen[0].startswith(b"POST /api/Position/closeContract HTTP/1.1\r\n")
    assert seen[0].endswith(b'\r\n\r\n{"accountId":7}')
