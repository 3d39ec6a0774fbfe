"""The hub's WebSocket on the event loop (`riskman.gateway.websocket`), against a gateway
written by hand on real loopback sockets: the bytes on the wire are RFC 6455's, not ours."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from riskman.gateway.websocket import HubSocket, WebSocketRefused, open_hub_socket
from tests.gateway.support import wait_until

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def frame(payload: bytes | str, opcode: int = 0x1, fin: bool = True, mask: bool = False) -> bytes:
    """A server frame (unmasked unless `mask`, which a server must never do)."""
    data = payload.encode() if isinstance(payload, str) else payload
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(data)
    if n < 126:
        head += bytes([(0x80 if mask else 0) | n])
    else:
        head += bytes([(0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    if mask:
        key = b"\x01\x02\x03\x04"
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return head + data


@dataclass
class Gateway:
    """Accepts one connection at a time; answers the upgrade as told."""

    status: bytes = b"101 Switching Protocols"
    bad_accept: bool = False
    silent: bool = False
    after_upgrade: bytes = b""
    request: bytes = b""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.request = await reader.readuntil(b"\r\n\r\n")
        if self.silent:
            self.connected.set()
            return
        key = next(
            line.split(b":", 1)[1].strip()
            for line in self.request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if self.bad_accept:
            accept = base64.b64encode(b"not the right answer")
        writer.write(
            b"HTTP/1.1 " + self.status + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\nContent-Length: 0\r\n\r\n"
        )
        writer.write(self.after_upgrade)
        await writer.drain()
        self.connected.set()

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def read_frame(self) -> tuple[int, bytes]:
        """The client's next frame: (opcode, unmasked payload); clients must mask."""
        assert self.reader is not None
        head = await self.reader.readexactly(2)
        assert head[1] & 0x80, "a client frame must be masked"
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        key = await self.reader.readexactly(4)
        data = await self.reader.readexactly(n)
        return head[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))


@dataclass
class Client:
    socket: HubSocket
    batches: list[list[str]]
    lost: list[str]


async def serve(gateway: Gateway, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(gateway.handle, "127.0.0.1", 0, ssl=tls)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def connect(url: str, *, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> Client:
    batches: list[list[str]] = []
    lost: list[str] = []
    sock = await open_hub_socket(url, batches.append, lost.append, timeout=timeout, ssl_context=tls)
    return Client(sock, batches, lost)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Gateway, Client]]:
    gateway = Gateway()
    server = await serve(gateway)
    client = await connect(f"ws://127.0.0.1:{port_of(server)}/hubs/user?access_token=t0k")
    await gateway.connected.wait()
    yield gateway, client
    if gateway.writer is not None:
        gateway.writer.close()
    await client.socket.close(1.0)
    server.close()
    await server.wait_closed()


async def test_the_upgrade_asks_for_the_hub_path_with_its_query(
    pair: tuple[Gateway, Client],
) -> None:
    gateway, _ = pair
    line = gateway.request.split(b"\r\n")[0]
    assert line == b"GET /hubs/user?access_token=t0k HTTP/1.1"
    assert b"sec-websocket-version: 13" in gateway.request.lower()


async def test_the_whole_frames_of_one_read_come_in_one_call_in_order(
    pair: tuple[Gateway, Client],
) -> None:
    gateway, client = pair
    big = "x" * 300  # a 16-bit length
    gateway.send(frame("a\x1e") + frame(big + "\x1e") + frame("c\x1e"))
    await wait_until(lambda: bool(client.batches), what="the burst")
    assert client.batches == [["a\x1e", big + "\x1e", "c\x1e"]]
    # A frame not yet whole waits for the rest of its bytes.
    second = frame("e\x1e")
    gateway.send(frame("d\x1e") + second[:3])
    await wait_until(lambda: len(client.batches) == 2, what="the whole frame")
    gateway.send(second[3:])
    await wait_until(lambda: len(client.batches) == 3, what="the rest")
    assert client.batches[1:] == [["d\x1e"], ["e\x1e"]]
    assert client.lost == []


async def test_a_ping_is_answered_and_fragments_are_joined(pair: tuple[Gateway, Client]) -> None:
    gateway, client = pair
    gateway.send(
        frame("he", fin=False)
        + frame(b"", opcode=0x9)  # a ping between the fragments
        + frame("ll", opcode=0x0, fin=False)
        + frame("o\x1e", opcode=0x0)
    )
    assert await gateway.read_frame() == (0xA, b"")  # the pong
    await wait_until(lambda: bool(client.batches), what="the joined message")
    assert client.batches == [["hello\x1e"]]


async def test_a_bad_byte_costs_its_message_not_the_connection(
    pair: tuple[Gateway, Client],
) -> None:
    gateway, client = pair
    gateway.send(frame(b'{"a": "\xff"}\x1e') + frame("next\x1e"))
    await wait_until(lambda: bool(client.batches), what="both messages")
    assert client.batches == [['{"a": "\ufffd"}\x1e', "next\x1e"]]
    client.socket.send_text("still here\x1e")
    assert await gateway.read_frame() == (0x1, b"still here\x1e")


async def test_text_is_sent_masked_as_one_frame(pair: tuple[Gateway, Client]) -> None:
    gateway, client = pair
    client.socket.send_text('{"type":6}\x1e')
    client.socket.send_text("y" * 200)
    assert await gateway.read_frame() == (0x1, b'{"type":6}\x1e')
    assert await gateway.read_frame() == (0x1, b"y" * 200)


async def test_a_close_frame_is_answered_and_reported_once(pair: tuple[Gateway, Client]) -> None:
    gateway, client = pair
    gateway.send(frame(b"\x03\xe8bye", opcode=0x8))
    opcode, payload = await gateway.read_frame()
    assert opcode == 0x8 and payload[:2] == b"\x03\xe8"
    await wait_until(lambda: bool(client.lost), what="the report")
    assert client.lost == ["connection closed by the gateway (1000 bye)"]
    with pytest.raises(ConnectionError):
        client.socket.send_text("too late")


async def test_the_end_of_the_stream_is_reported(pair: tuple[Gateway, Client]) -> None:
    gateway, client = pair
    assert gateway.writer is not None
    gateway.writer.close()
    await wait_until(lambda: bool(client.lost), what="the report")
    assert client.lost == ["connection closed by the gateway"]


async def test_a_masked_server_frame_is_a_protocol_error(pair: tuple[Gateway, Client]) -> None:
    gateway, client = pair
    gateway.send(frame("masked", mask=True))
    await wait_until(lambda: bool(client.lost), what="the report")
    assert client.lost == ["websocket protocol error (ProtocolError)"]
    assert client.batches == []


async def test_closing_ourselves_sends_a_close_frame_and_reports_nothing(
    pair: tuple[Gateway, Client],
) -> None:
    gateway, client = pair
    closing = asyncio.ensure_future(client.socket.close(1.0))
    opcode, payload = await gateway.read_frame()
    assert opcode == 0x8 and payload[:2] == (1000).to_bytes(2, "big")
    gateway.send(frame(payload, opcode=0x8))
    await asyncio.wait_for(closing, 2.0)
    assert client.lost == []


async def test_a_close_against_a_gateway_that_never_answers_is_bounded() -> None:
    gateway = Gateway()
    server = await serve(gateway)
    client = await connect(f"ws://127.0.0.1:{port_of(server)}/hubs/user")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await client.socket.close(0.2)
    assert loop.time() - began < 1.0
    assert client.lost == []
    server.close()


async def test_messages_sent_with_the_upgrade_answer_are_not_lost() -> None:
    gateway = Gateway(after_upgrade=frame("{}\x1e"))
    server = await serve(gateway)
    client = await connect(f"ws://127.0.0.1:{port_of(server)}/hubs/user")
    await wait_until(lambda: bool(client.batches), what="the first message")
    assert client.batches == [["{}\x1e"]]
    await client.socket.close(0.2)
    server.close()


@pytest.mark.parametrize(
    ("gateway", "status"),
    [
        (Gateway(status=b"401 Unauthorized"), 401),
        (Gateway(status=b"404 Not Found"), 404),
        (Gateway(bad_accept=True), None),
    ],
    ids=["unauthorized", "no such hub", "wrong accept key"],
)
async def test_an_upgrade_refused_says_why(gateway: Gateway, status: int | None) -> None:
    server = await serve(gateway)
    with pytest.raises(WebSocketRefused) as refused:
        await connect(f"ws://127.0.0.1:{port_of(server)}/hubs/user")
    assert refused.value.status == status
    server.close()


async def test_a_gateway_that_never_answers_the_upgrade_times_out() -> None:
    gateway = Gateway(silent=True)
    server = await serve(gateway)
    with pytest.raises(TimeoutError):
        await connect(f"ws://127.0.0.1:{port_of(server)}/hubs/user", timeout=0.3)
    server.close()


async def test_nothing_listening_is_a_connection_error(unused_tcp_port: int) -> None:
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{unused_tcp_port}/hubs/user")


async def test_wss_speaks_tls() -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    authority.configure_trust(client_tls)
    gateway = Gateway()
    server = await serve(gateway, server_tls)
    client = await connect(f"wss://localhost:{port_of(server)}/hubs/user", tls=client_tls)
    await gateway.connected.wait()
    gateway.send(frame("over tls\x1e") + frame("twice\x1e"))
    await wait_until(lambda: sum(map(len, client.batches)) == 2, what="both messages")
    assert [m for batch in client.batches for m in batch] == ["over tls\x1e", "twice\x1e"]
    client.socket.send_text("back\x1e")
    assert await gateway.read_frame() == (0x1, b"back\x1e")
    await client.socket.close(1.0)
    server.close()
    # An untrusted certificate is refused before a byte of the upgrade leaves.
    gateway2 = Gateway()
    server2 = await serve(gateway2, server_tls)
    with pytest.raises(ssl.SSLError):
        await connect(
            f"wss://localhost:{port_of(server2)}/hubs/user", tls=ssl.create_default_context()
        )
    assert gateway2.request == b""
    server2.close()
