"""Test doubles for the gateway tests: a recording EventSink and a scripted REST gateway."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from riskman.core.clock import FakeClock
from riskman.core.ports import AccountSnapshot, GatewayEvent
from riskman.core.views import FeedHealth

API_KEY = "test-api-key-0123456789"


def make_jwt(exp: datetime | None, subject: str = "demo", salt: str = "") -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims: dict[str, Any] = {"sub": subject, "salt": salt}
    if exp is not None:
        claims["exp"] = int(exp.timestamp())
    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2lnbmF0dXJl{salt}"


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Await a condition with a deadline (no sleep-and-hope)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class RecordingSink:
    """An EventSink that records everything it is given."""

    day_start: datetime = field(default_factory=lambda: datetime(2026, 11, 17, 23, 0, tzinfo=UTC))
    quotes: frozenset[str] = frozenset()
    events: list[GatewayEvent] = field(default_factory=list)
    snapshots: list[AccountSnapshot] = field(default_factory=list)
    health: list[FeedHealth] = field(default_factory=list)

    def submit(self, event: GatewayEvent) -> None:
        self.events.append(event)

    async def reconcile(self, snapshot: AccountSnapshot) -> None:
        self.snapshots.append(snapshot)

    def feed_health(self, health: FeedHealth) -> None:
        self.health.append(health)

    def trading_day_start(self) -> datetime:
        return self.day_start

    def fills_since(self) -> datetime:
        return self.day_start

    def quote_contracts(self) -> frozenset[str]:
        return self.quotes

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def states(self, hub: str) -> list[str]:
        return [h.state.value for h in self.health if h.hub == hub]


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    authorization: str | None


Reply = httpx.Response | dict[str, Any] | Exception


class ScriptedGateway:
    """A REST gateway for httpx.MockTransport: default answers, plus scripted ones per path."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.requests: list[Recorded] = []
        self.script: dict[str, list[Reply]] = {}
        self.token_seq = 0
        self.valid_tokens: set[str] = set()
        self.token_lifetime = timedelta(hours=24)

    def issue(self) -> str:
        self.token_seq += 1
        token = make_jwt(self.clock.now() + self.token_lifetime, salt=str(self.token_seq))
        self.valid_tokens.add(token)
        return token

    def push(self, path: str, *replies: Reply) -> None:
        self.script.setdefault(path, []).extend(replies)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/")
        body = json.loads(request.content or b"{}")
        auth = request.headers.get("Authorization")
        self.requests.append(Recorded(path, body, auth))
        queue = self.script.get(path)
        if queue:
            reply = queue.pop(0)
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, httpx.Response):
                return reply
            return httpx.Response(200, json=reply)
        if path == "Auth/loginKey":
            if body.get("apiKey") != API_KEY:
                return httpx.Response(
                    200, json={"success": False, "errorCode": 3, "errorMessage": None}
                )
            return httpx.Response(200, json=ok(token=self.issue()))
        token = (auth or "").removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return httpx.Response(401)
        if path == "Auth/validate":
            return httpx.Response(200, json=ok(newToken=self.issue()))
        return httpx.Response(200, json=ok(**DEFAULT_PAYLOADS.get(path, {})))


def ok(**payload: Any) -> dict[str, Any]:
    return {"success": True, "errorCode": 0, "errorMessage": None, **payload}


def refused(code: int, message: str | None = None, **payload: Any) -> dict[str, Any]:
    return {"success": False, "errorCode": code, "errorMessage": message, **payload}


POSITION = {
    "id": 7,
    "accountId": 11,
    "contractId": "CON.F.US.MNQ.Z26",
    "creationTimestamp": "2026-11-18T14:00:00.123456+00:00",
    "type": 1,
    "size": 2,
    "averagePrice": 21000.25,
}
ORDER = {
    "id": 9001,
    "accountId": 11,
    "contractId": "CON.F.US.MNQ.Z26",
    "symbolId": "F.US.MNQ",
    "creationTimestamp": "2026-11-18T14:00:00Z",
    "updateTimestamp": "2026-11-18T14:00:01Z",
    "status": 1,
    "type": 4,
    "side": 1,
    "size": 2,
    "stopPrice": 20950.0,
    "fillVolume": 0,
}
TRADE = {
    "id": 5,
    "accountId": 11,
    "contractId": "CON.F.US.MNQ.Z26",
    "creationTimestamp": "2026-11-18T14:00:00Z",
    "price": 21000.25,
    "profitAndLoss": None,
    "fees": 0.74,
    "side": 0,
    "size": 2,
    "voided": False,
    "orderId": 9000,
}
CONTRACT = {
    "id": "CON.F.US.MNQ.Z26",
    "name": "MNQZ6",
    "description": "Micro E-mini Nasdaq-100",
    "tickSize": 0.25,
    "tickValue": 0.5,
    "activeContract": True,
    "symbolId": "F.US.MNQ",
}
ACCOUNT = {
    "id": 11,
    "name": "50K-COMBINE",
    "balance": 50000.0,
    "canTrade": True,
    "isVisible": True,
    "simulated": True,
}
DEFAULT_PAYLOADS: dict[str, dict[str, Any]] = {
    "Account/search": {"accounts": [ACCOUNT]},
    "Position/searchOpen": {"positions": [POSITION]},
    "Order/searchOpen": {"orders": [ORDER]},
    "Order/search": {"orders": [ORDER]},
    "Trade/search": {"trades": [TRADE]},
    "Contract/searchById": {"contract": CONTRACT},
    "Contract/search": {"contracts": [CONTRACT]},
    "Order/place": {"orderId": 4242},
    "History/retrieveBars": {
        "bars": [
            {"t": "2026-11-18T14:59:00+00:00", "o": 1, "h": 2, "l": 1, "c": 21001.5, "v": 10},
            {"t": "2026-11-18T14:58:00+00:00", "o": 1, "h": 2, "l": 1, "c": 21000.0, "v": 10},
        ]
    },
}


async def settle_until(
    clock: Any, predicate: Callable[[], bool], *, step: float = 0.0, rounds: int = 400
) -> None:
    """Run the loop (and move a FakeClock by `step` per round) until `predicate` holds."""
    for _ in range(rounds):
        if predicate():
            return
        if step:
            await clock.advance(step)
        else:
            await clock.settle()
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


class FakeTokens:
    """A TokenSource for the supervisor tests."""

    def __init__(self) -> None:
        self.token_version = 1
        self.renewals = 0
        self.fail_with: Exception | None = None
        self._listeners: list[Callable[[], None]] = []

    async def access_token(self) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        return f"token-{self.token_version}"

    async def renew_token(self, stale_version: int | None = None) -> str:
        self.renewals += 1
        self.bump()
        return f"token-{self.token_version}"

    def bump(self) -> None:
        self.token_version += 1
        for listener in list(self._listeners):
            listener()

    def add_token_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)


class FakeHub:
    """A HubTransport double: the test pushes events, drops it, or makes calls fail."""

    def __init__(self, clock: Any, *, connect_error: Exception | None = None) -> None:
        self.clock = clock
        self.connect_error = connect_error
        self.url: str | None = None
        self.token: str | None = None
        self.invocations: list[tuple[str, list[Any]]] = []
        self.refuse: dict[str, str] = {}
        self.closed = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._last: float | None = None
        self._lost = False

    @property
    def last_inbound(self) -> float | None:
        return self._last

    async def connect(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        if self.connect_error is not None:
            raise self.connect_error
        self._last = self.clock.monotonic()

    async def invoke(self, method: str, arguments: Any) -> Any:
        from riskman.gateway.realtime import HubError, HubInvokeError

        if self._lost:
            raise HubError("not connected")
        self.invocations.append((method, list(arguments)))
        if method in self.refuse:
            raise HubInvokeError(self.refuse[method])
        return None

    async def receive(self) -> Any:
        return await self._queue.get()

    async def messages(self) -> Any:
        from riskman.gateway.realtime import HubClosed

        while True:
            message = await self._queue.get()
            yield message
            if isinstance(message, HubClosed):
                return

    async def close(self) -> None:
        self.closed = True
        self.drop("closed by riskman")

    # test controls
    def push(self, target: str, *arguments: Any) -> None:
        from riskman.gateway.realtime import HubEvent

        self._last = self.clock.monotonic()
        self._queue.put_nowait(HubEvent(target, list(arguments)))

    def ping(self) -> None:
        self._last = self.clock.monotonic()

    def drop(self, reason: str = "dropped") -> None:
        from riskman.gateway.realtime import HubClosed

        if not self._lost:
            self._lost = True
            self._queue.put_nowait(HubClosed(reason))


class HubFactory:
    """Builds FakeHubs in order; `errors` makes the next connects fail."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.built: list[FakeHub] = []
        self.errors: list[Exception] = []

    def __call__(self) -> FakeHub:
        error = self.errors.pop(0) if self.errors else None
        hub = FakeHub(self.clock, connect_error=error)
        self.built.append(hub)
        return hub

    @property
    def last(self) -> FakeHub:
        return self.built[-1]
