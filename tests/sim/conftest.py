"""Fixtures for the simulator tests: a running simulator, an HTTP client, a raw SignalR client."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from riskman.sim import Simulator

RS = "\x1e"
MNQ = "CON.F.US.MNQ.Z26"
ES = "CON.F.US.EP.Z26"
ACCOUNT = 1001
OTHER_ACCOUNT = 1002


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    # No automatic pings: protocol tests read exact record sequences.
    async with Simulator(seed=7, ping_interval=None) as running:
        yield running


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=5.0) as http:
        yield http


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    reply = await client.post("/api/Auth/loginKey", json={"userName": "demo", "apiKey": "demo"})
    value = reply.json()["token"]
    assert isinstance(value, str)
    return value


Api = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@pytest.fixture
def api(client: httpx.AsyncClient, token: str) -> Api:
    """POST an authorised call and return the JSON envelope (asserting HTTP 200)."""

    async def call(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await client.post(
            f"/api/{endpoint}", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    return call


def ws_url(sim: Simulator, hub: str, token: str | None) -> str:
    base = sim.user_hub_url if hub == "user" else sim.market_hub_url
    url = base.replace("http://", "ws://", 1)
    return url if token is None else f"{url}?access_token={token}"


class RawHub:
    """A minimal SignalR JSON-protocol client over `websockets`, to test the wire exactly."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.ws = websocket
        self.messages: list[str] = []
        self._records: deque[dict[str, Any]] = deque()

    @classmethod
    async def open(cls, sim: Simulator, hub: str, token: str, version: int = 1) -> RawHub:
        websocket = await websockets.connect(ws_url(sim, hub, token), compression=None)
        raw = cls(websocket)
        await websocket.send(json.dumps({"protocol": "json", "version": version}) + RS)
        reply = await raw.recv_message()
        assert reply == "{}" + RS
        return raw

    async def recv_message(self, timeout: float = 3.0) -> str:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        text = message if isinstance(message, str) else message.decode()
        self.messages.append(text)
        return text

    async def send(self, *records: dict[str, Any]) -> None:
        """All records in one WebSocket message."""
        await self.ws.send("".join(json.dumps(r) + RS for r in records))

    async def invoke(self, target: str, *args: Any, invocation_id: str | None = None) -> None:
        message: dict[str, Any] = {"type": 1, "target": target, "arguments": list(args)}
        if invocation_id is not None:
            message["invocationId"] = invocation_id
        await self.send(message)

    async def record(self, timeout: float = 3.0, *, skip_pings: bool = True) -> dict[str, Any]:
        """The next record from the server."""
        while True:
            while not self._records:
                text = await self.recv_message(timeout)
                assert text.endswith(RS), text
                self._records.extend(json.loads(r) for r in text.split(RS) if r)
            record = self._records.popleft()
            if not (skip_pings and record.get("type") == 6):
                return record

    async def event(self, target: str, timeout: float = 3.0) -> list[Any]:
        """Arguments of the next invocation of `target`, skipping anything else."""
        while True:
            record = await self.record(timeout)
            if record.get("type") == 1 and record.get("target") == target:
                arguments: list[Any] = record["arguments"]
                return arguments

    async def completion(self, invocation_id: str, timeout: float = 3.0) -> dict[str, Any]:
        """The completion of `invocation_id`; other records stay queued, in order."""
        skipped: list[dict[str, Any]] = []
        while True:
            record = await self.record(timeout, skip_pings=False)
            if record.get("type") == 3 and record.get("invocationId") == invocation_id:
                self._records.extendleft(reversed(skipped))
                return record
            skipped.append(record)

    async def subscribe(self, sim: Simulator, hub: str, method: str, *args: Any) -> None:
        invocation_id = f"sub-{method}-{args}"
        await self.invoke(method, *args, invocation_id=invocation_id)
        completion = await self.completion(invocation_id)
        assert "error" not in completion, completion
        await sim.wait_for_subscription(hub, method, args[0] if args else None)

    async def close(self) -> None:
        await self.ws.close()


HubFactory = Callable[..., Awaitable[RawHub]]


@pytest.fixture
async def hub_client(sim: Simulator) -> AsyncIterator[HubFactory]:
    opened: list[RawHub] = []

    async def factory(hub: str = "user", version: int = 1, token: str | None = None) -> RawHub:
        raw = await RawHub.open(sim, hub, token or sim.issue_token(), version)
        opened.append(raw)
        return raw

    yield factory
    for raw in opened:
        await raw.close()
