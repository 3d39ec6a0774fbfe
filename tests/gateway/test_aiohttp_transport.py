"""The REST client's transport (httpx's API on aiohttp's connections), against real sockets on
loopback: what it sends and returns, and above all how it reports failures, since the REST
client sends a close again only when the request surely never left (a connect failure)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from riskman.config import GatewayConfig
from riskman.core.enums import OrderSide
from riskman.gateway.aiohttp_transport import AiohttpTransport
from riskman.gateway.errors import GatewayUnavailable, OutcomeUnknown
from riskman.gateway.rest import _NOT_SENT, RestClient, RetryPolicy
from riskman.sim import Simulator

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


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(2.0))
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


async def test_no_answer_within_the_read_timeout_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    http = httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(0.3))
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
            assert isinstance(rest._http._transport, AiohttpTransport)
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
