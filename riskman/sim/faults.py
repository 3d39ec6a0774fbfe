"""Scenario hooks that make the simulator misbehave the way the real gateway does.

REST faults are queued per endpoint and consumed one call at a time; hub faults act at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import protocol
from .hubs import HUB_NAMES, Hub, HubName, hub_name

if TYPE_CHECKING:
    from collections.abc import Mapping

MalformedKind = Literal["not_json", "bad_payload", "unknown_type", "truncated"]

# Every REST endpoint the simulator serves, by the name faults and recorded requests use.
ENDPOINTS: tuple[str, ...] = (
    "Auth/loginKey",
    "Auth/validate",
    "Auth/logout",
    "Account/search",
    "Position/searchOpen",
    "Position/closeContract",
    "Position/partialCloseContract",
    "Order/searchOpen",
    "Order/search",
    "Order/searchById",
    "Order/v2/query",
    "Order/cancel",
    "Order/modify",
    "Order/place",
    "Trade/search",
    "Contract/searchById",
    "Contract/search",
    "Contract/available",
    "History/retrieveBars",
    "Status/ping",
)
_BY_LOWER = {name.lower(): name for name in ENDPOINTS}


def endpoint_name(endpoint: str) -> str:
    """`"/api/Order/place"`, `"order/place"` -> `"Order/place"`; unknown names raise."""
    name = endpoint.strip().lstrip("/")
    if name.lower().startswith("api/"):
        name = name[4:]
    try:
        return _BY_LOWER[name.lower()]
    except KeyError:
        raise ValueError(f"unknown endpoint {endpoint!r}") from None


@dataclass(frozen=True, slots=True)
class Failure:
    http_status: int | None
    error_code: int | None
    error_message: str | None


_BAD_PAYLOADS = {
    "user": protocol.invocation(
        "GatewayUserPosition",
        [{"action": 1, "data": {"id": "not-a-number", "accountId": None, "size": "big"}}],
    ),
    "market": protocol.invocation("GatewayQuote", [12345, {"lastPrice": "n/a", "bestBid": []}]),
}


def malformed_frame(hub: str, kind: str) -> str:
    if kind == "not_json":
        return "this is not json" + protocol.RS
    if kind == "bad_payload":
        return _BAD_PAYLOADS[hub]
    if kind == "unknown_type":
        return protocol.encode({"type": 42, "target": "GatewayMystery", "arguments": []})
    if kind == "truncated":
        whole = protocol.invocation("GatewayQuote", ["CON.F.US.MNQ.Z26", {"lastPrice": 1}])
        return whole[: len(whole) // 2] + protocol.RS
    raise ValueError(f"unknown malformed kind {kind!r}")


class Faults:
    def __init__(self, hubs: Mapping[HubName, Hub]) -> None:
        self._hubs = hubs
        # Every login is refused with errorCode 3 (InvalidCredentials) while set.
        self.reject_logins = False
        self._failures: dict[str, deque[Failure]] = {}
        self._delays: dict[str, deque[float]] = {}
        self._hangs: dict[str, deque[float]] = {}

    # --- hubs -------------------------------------------------------------------------------

    def drop_connections(self, hub: str | None = None, close_message: bool = False) -> int:
        """Cut every socket of `hub` (both hubs when None); returns how many were cut.

        Without `close_message` the TCP connection is aborted with no close frame at all;
        with it the client first gets `{"type":7,"error":"Connection closed with an error.",
        "allowReconnect":true}` and a normal close. Subscriptions are forgotten at once.
        """
        names = HUB_NAMES if hub is None else (hub_name(hub),)
        return sum(self._hubs[name].drop_all(close_message) for name in names)

    def silence(self, hub: str, silent: bool = True, *, new_sockets: bool = False) -> None:
        """Freeze (or thaw) every socket open on `hub` now: it stays connected but sends nothing,
        no events, no pings, no completions. Sockets opened later are healthy, so a client that
        reconnects on a stale feed recovers, as with the real gateway; with `new_sockets` they
        are frozen too once their handshake is answered (an outage that outlasts reconnects),
        until `silence(hub, False)`."""
        self._hubs[hub_name(hub)].set_frozen(silent, new_sockets=silent and new_sockets)

    def send_malformed(self, hub: str, kind: MalformedKind | str) -> int:
        """Send one broken record to every socket of `hub`, alone in its WebSocket message."""
        name = hub_name(hub)
        return self._hubs[name].send_alone(malformed_frame(name, kind))

    # --- REST -------------------------------------------------------------------------------

    def fail(
        self,
        endpoint: str,
        *,
        http_status: int | None = None,
        error_code: int | None = None,
        error_message: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `endpoint` answer HTTP `http_status` (429, 500, ...) with
        no body, or HTTP 200 `success: false` with `error_code`; nothing is done either way."""
        if (http_status is None) == (error_code is None):
            raise ValueError("give exactly one of http_status and error_code")
        if times < 1:
            raise ValueError("times must be at least 1")
        queue = self._failures.setdefault(endpoint_name(endpoint), deque())
        queue.extend([Failure(http_status, error_code, error_message)] * times)

    def delay(self, endpoint: str, seconds: float, times: int = 1) -> None:
        """Hold the reply of the next `times` calls for `seconds`; the action still happens at
        once, so a client that times out does not know whether it did."""
        if seconds < 0 or times < 1:
            raise ValueError("seconds must be >= 0 and times >= 1")
        self._delays.setdefault(endpoint_name(endpoint), deque()).extend([seconds] * times)

    def hang(self, endpoint: str, seconds: float, times: int = 1) -> None:
        """The next `times` calls of `endpoint` hang for `seconds` before anything is done;
        then the call acts (on the account as it is by then) and answers, if the client still
        waits. A client that gives up early does not know whether, or when, it will act."""
        if seconds < 0 or times < 1:
            raise ValueError("seconds must be >= 0 and times >= 1")
        self._hangs.setdefault(endpoint_name(endpoint), deque()).extend([seconds] * times)

    def next_hang(self, endpoint: str) -> float | None:
        queue = self._hangs.get(endpoint)
        return queue.popleft() if queue else None

    def clear(self) -> None:
        """Forget queued REST faults and accept logins again (hub faults are not undone)."""
        self.reject_logins = False
        self._failures.clear()
        self._delays.clear()
        self._hangs.clear()

    def next_failure(self, endpoint: str, *, http: bool) -> Failure | None:
        """Consume the endpoint's next failure if it is of the asked kind."""
        queue = self._failures.get(endpoint)
        if not queue or (queue[0].http_status is not None) != http:
            return None
        return queue.popleft()

    def next_delay(self, endpoint: str) -> float | None:
        queue = self._delays.get(endpoint)
        return queue.popleft() if queue else None
