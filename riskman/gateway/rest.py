"""The ProjectX Gateway REST client (PROJECTX_API.md §1-§2, §7.1).

One :class:`RestClient` per process: one ``httpx.AsyncClient`` (keep-alive, explicit timeouts),
a token manager, a client-side rate limiter that lets enforcement calls jump the queue, and
``GatewayPort`` implemented over the documented endpoints.

Failure policy (the engine reacts to the error *kind*, see ``riskman.gateway.errors``):

* Every reply's ``success`` is checked; error codes are mapped per endpoint (the same integer
  means different things on different endpoints), each endpoint with its own ``IntEnum``.
* Reads retry with exponential backoff and jitter on HTTP 429, 5xx and network errors, a few
  times, then raise ``RateLimited`` / ``GatewayUnavailable``.
* Mutations are never retried blindly. They are retried only when the gateway provably did
  nothing: the connection could not be opened (refused, DNS, TLS, connect or pool timeout: no
  byte of the request left this machine), HTTP 429 (the gateway refused to process it) or
  HTTP 401 (rejected before it was looked at; retried once after a token refresh). A timeout or
  a broken connection after the request was written, a 5xx, or a reply that cannot be read
  raise ``OutcomeUnknown``: the caller must re-read the state and decide.
* Tokens and the API key never appear in a log line, an exception message or a repr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr

from riskman.config import GatewayConfig
from riskman.core.backoff import Backoff
from riskman.core.clock import Clock, SystemClock, TimerHandle
from riskman.core.enums import OrderSide, OrderType
from riskman.core.models import (
    Account,
    Contract,
    GatewayModel,
    Money,
    OptionalTimestamp,
    Order,
    PayloadError,
    Position,
    Trade,
    parse_list,
    parse_model,
)
from riskman.core.redaction import Secret, install_redaction, redact
from riskman.gateway.endpoints import (
    ACCOUNT_SEARCH,
    CONTRACT_SEARCH,
    CONTRACT_SEARCH_BY_ID,
    HISTORY_BARS,
    LOGIN,
    ORDER_CANCEL,
    ORDER_MODIFY,
    ORDER_PLACE,
    ORDER_SEARCH,
    ORDER_SEARCH_OPEN,
    POSITION_CLOSE,
    POSITION_PARTIAL_CLOSE,
    POSITION_SEARCH_OPEN,
    TRADE_SEARCH,
    VALIDATE,
    BarUnit,
    Endpoint,
)
from riskman.gateway.errors import (
    AuthError,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    NotFound,
    OutcomeUnknown,
    ProtocolError,
    RateLimited,
)
from riskman.gateway.h11_transport import H11Transport
from riskman.gateway.jwt import jwt_expiry
from riskman.gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)
install_redaction(log)

# --- retries ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for reads (and for mutations that provably did nothing)."""

    read_attempts: int = 4
    mutation_attempts: int = 3
    """Attempts for a mutation refused before anything happened (connect error, 429)."""
    base_delay: float = 0.25
    max_delay: float = 4.0
    """Waits are `base_delay` x 2^(attempt - 1), at most `max_delay`, jittered in [50 %, 100 %]
    (spreads clients that failed together); a longer Retry-After is honoured."""


ENFORCEMENT_TIMEOUT = 2.0
"""Seconds an enforcement call (closeContract, partialCloseContract, Order/cancel) may take
before its outcome is unknown (the general `gateway.request_timeout` is for everything else)."""
_HEADERS = (
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate"),
    ("User-Agent", "riskman"),
    ("Content-Type", "application/json"),
)
"""Sent with every request (httpx adds Host and Content-Length)."""
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
"""Transport errors raised before any byte of the request left this machine."""


# --- the client -------------------------------------------------------------------------------

DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)
REFRESH_BEFORE = timedelta(hours=1)
"""Renew in the background when less than this is left."""
REFRESH_NOW_BEFORE = timedelta(minutes=5)
"""Renew before a call (the call waits) when less than this is left."""

# 200 requests / 60 s documented (§1.5): keep a margin for clock skew between us and the
# gateway and for calls we cannot see (another riskman on the same key).
DEFAULT_LIMIT = 180
DEFAULT_WINDOW = 61.0
DEFAULT_RESERVE = 30
BARS_LIMIT = 45
BARS_WINDOW = 31.0


class _Bar(GatewayModel):
    t: OptionalTimestamp = None
    c: Money


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("timestamps sent to the gateway must be aware")
    return value.astimezone(UTC).isoformat()


def _price(value: Decimal | None) -> float | None:
    # json cannot write a Decimal; a price has far fewer than 15 significant digits, so the
    # float's shortest repr (what json writes) is exactly the decimal we started from.
    return None if value is None else float(value)


TokenListener = Callable[[], None]


class RestClient:
    """The gateway over REST: login, token upkeep, rate limit, and ``GatewayPort``."""

    def __init__(
        self,
        config: GatewayConfig,
        api_key: str | SecretStr | None = None,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        live: bool = False,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        bars_limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if api_key is None and config.api_key is not None:
            api_key = config.api_key
        if isinstance(api_key, SecretStr):
            api_key = api_key.get_secret_value()
        self._api_key = Secret(api_key) if api_key else None
        self._username = config.username
        self._base = config.api_url.rstrip("/") + "/api/"
        self._clock: Clock = clock or SystemClock()
        self._live = live
        self._retry = retry or RetryPolicy()
        self._retry_backoff = Backoff(
            self._clock, base=self._retry.base_delay, maximum=self._retry.max_delay, rng=rng
        )
        self.limiter = limiter or RateLimiter(
            self._clock, limit=DEFAULT_LIMIT, window=DEFAULT_WINDOW, reserve=DEFAULT_RESERVE
        )
        self.bars_limiter = bars_limiter or RateLimiter(
            self._clock, limit=BARS_LIMIT, window=BARS_WINDOW
        )
        timeout = config.request_timeout
        deadline = min(timeout, ENFORCEMENT_TIMEOUT)
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0)).as_dict()
        self._enforcement_timeout = httpx.Timeout(deadline, connect=deadline).as_dict()
        if transport is None:
            # httpx's API on lean h11 connections: a close reaches the socket in a fraction
            # of the time of httpx's own or aiohttp's client (issue 16; benchmarks/README.md).
            transport = H11Transport()
        self._transport = transport
        self._token: Secret | None = None
        self._token_expires: datetime | None = None
        self._token_version = 0
        self._auth_lock = asyncio.Lock()
        self._refresh_timer: TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._listeners: list[TokenListener] = []
        self._closed = False
        self._urls: dict[str, httpx.URL] = {}

    def __repr__(self) -> str:
        state = "authenticated" if self._token is not None else "not authenticated"
        return f"RestClient({self._base!r}, user={self._username!r}, {state})"

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._transport.aclose()

    # --- tokens ---------------------------------------------------------------------------

    @property
    def token_version(self) -> int:
        """Bumped every time the token changes (login, refresh)."""
        return self._token_version

    @property
    def token_expires(self) -> datetime | None:
        return self._token_expires

    def add_token_listener(self, listener: TokenListener) -> Callable[[], None]:
        """Call `listener` (on the loop) whenever the token changes; returns an unsubscribe."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    async def login(self) -> None:
        """Log in with the API key (`Auth/loginKey`); raises ``AuthError`` on refusal."""
        async with self._auth_lock:
            await self._login_locked()

    async def access_token(self) -> str:
        """A token valid for at least a few minutes (for the hubs' query string)."""
        return (await self._ensure_token()).reveal()

    async def renew_token(self, stale_version: int | None = None) -> str:
        """A new token now (`Auth/validate`, else a fresh login), unless the token already
        changed since `stale_version`, the version the gateway refused: two hubs refused
        together then share one renewal instead of each invalidating the other's token."""
        version = self._token_version if stale_version is None else stale_version
        await self._renew(version, reason="requested")
        assert self._token is not None
        return self._token.reveal()

    async def _ensure_token(self) -> Secret:
        token = self._token
        if token is None:
            async with self._auth_lock:
                if self._token is None:
                    await self._login_locked()
            assert self._token is not None
            return self._token
        left = self._time_left()
        if left < REFRESH_NOW_BEFORE:
            await self._renew(self._token_version, reason="about to expire")
        elif left < REFRESH_BEFORE:
            self._refresh_in_background()
        assert self._token is not None
        return self._token

    def _time_left(self) -> timedelta:
        if self._token_expires is None:
            return DEFAULT_TOKEN_LIFETIME
        return self._token_expires - self._clock.now()

    async def _login_locked(self) -> None:
        if not self._username or self._api_key is None:
            raise AuthError(LOGIN.path, "username and API key are required to log in")
        body = {"userName": self._username, "apiKey": self._api_key.reveal()}
        data = await self._call(LOGIN, body)
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise AuthError(LOGIN.path, "login succeeded without a token")
        self._set_token(token, how="login")

    async def _renew(self, seen_version: int, *, reason: str) -> None:
        """Renew once for callers that saw `seen_version` (single flight)."""
        async with self._auth_lock:
            if self._token_version != seen_version and self._token is not None:
                return  # someone renewed while we waited
            if self._token is not None:
                try:
                    data = await self._call(VALIDATE, None, renewing=True)
                    new = data.get("newToken") or data.get("token")
                    if isinstance(new, str) and new and new != self._token.reveal():
                        self._set_token(new, how=f"validate ({reason})")
                        return
                    # The same token keeps its old expiry: only a login gives a fresh one.
                    log.info("Auth/validate gave no new token; logging in")
                except GatewayError as exc:
                    log.warning("token refresh via Auth/validate failed (%s); logging in", exc)
            await self._login_locked()

    def _set_token(self, token: str, *, how: str) -> None:
        self._token = Secret(token)
        expires = jwt_expiry(token)
        if expires is None:
            expires = self._clock.now() + DEFAULT_TOKEN_LIFETIME
        self._token_expires = expires
        self._token_version += 1
        log.info("gateway session ready (%s); expires %s", how, expires.isoformat())
        self._schedule_refresh()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("token listener failed")

    def _schedule_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        if self._token_expires is None or self._closed:
            return
        when = self._token_expires - REFRESH_BEFORE
        now = self._clock.now()
        if when <= now:
            # A short-lived token: renew at half its remaining life, never in a tight loop.
            when = now + max(timedelta(seconds=5), (self._token_expires - now) / 2)
        try:
            self._refresh_timer = self._clock.call_at(when, self._refresh_in_background)
        except RuntimeError:  # no running loop (built outside asyncio): the lazy path covers it
            self._refresh_timer = None

    def _refresh_in_background(self) -> None:
        if self._closed or any(t.get_name() == "riskman-token-refresh" for t in self._background):
            return
        task = asyncio.get_running_loop().create_task(
            self._background_refresh(self._token_version), name="riskman-token-refresh"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _background_refresh(self, version: int) -> None:
        try:
            await self._renew(version, reason="scheduled")
        except GatewayError as exc:
            # Not fatal: the next call (or the lazy check before it) tries again.
            log.warning("scheduled token refresh failed: %s", exc)
            self._schedule_retry_refresh()

    def _schedule_retry_refresh(self) -> None:
        if self._closed:
            return
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        self._refresh_timer = self._clock.call_at(
            self._clock.now() + timedelta(seconds=60), self._refresh_in_background
        )

    # --- the request path -----------------------------------------------------------------

    async def _post(
        self,
        url: httpx.URL,
        content: bytes,
        headers: Mapping[str, str],
        timeout: Mapping[str, float | None],
    ) -> httpx.Response:
        """One POST: an `httpx.Request` handed to the transport, and its `httpx.Response`.

        httpx's client would add cookies, redirects, auth flows and event hooks, none of which
        the gateway's API uses, for about as long again as the transport takes to put the
        request on the socket (issue 16, benchmarks/README.md); its requests, responses,
        timeouts and errors are kept as they are.
        """
        request = httpx.Request(
            "POST",
            url,
            headers=[*_HEADERS, *headers.items()],
            content=content,
            extensions={"timeout": timeout},
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _url(self, endpoint: Endpoint) -> httpx.URL:
        """The endpoint's URL, parsed once (httpx parses a string on every request)."""
        url = self._urls.get(endpoint.path)
        if url is None:
            url = self._urls[endpoint.path] = httpx.URL(self._base + endpoint.path)
        return url

    async def _call(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any] | None,
        *,
        urgent: bool = False,
        renewing: bool = False,
    ) -> dict[str, Any]:
        """POST `body` to `endpoint`; return the envelope of a successful reply."""
        urgent = urgent or endpoint.urgent
        limit = self._retry.mutation_attempts if endpoint.mutation else self._retry.read_attempts
        attempt = 0
        reauthed = False
        while True:
            attempt += 1
            headers: dict[str, str] = {}
            version = self._token_version
            if endpoint.auth:
                token = self._token if renewing else await self._ensure_token()
                if token is None:
                    raise AuthError(endpoint.path, "no session")
                headers["Authorization"] = f"Bearer {token.reveal()}"
            await self.limiter.acquire(urgent=urgent)
            if endpoint.bars:
                await self.bars_limiter.acquire(urgent=urgent)
            started = self._clock.monotonic()
            try:
                response = await self._post(
                    self._url(endpoint),
                    json.dumps(body if body is not None else {}).encode(),
                    headers,
                    # An enforcement call (close, partial close, cancel) has its own short
                    # deadline: a hung one must not hold a position open; the caller re-reads
                    # the positions and decides again (OutcomeUnknown).
                    self._enforcement_timeout
                    if endpoint.mutation and endpoint.urgent
                    else self._timeout,
                )
            except httpx.TransportError as exc:
                what = f"{type(exc).__name__}: {redact(str(exc)) or 'no detail'}"
                if endpoint.mutation and not isinstance(exc, _NOT_SENT):
                    log.warning("%s: outcome unknown after %s", endpoint.path, what)
                    raise OutcomeUnknown(endpoint.path, f"no reply ({what})") from None
                if attempt < limit:
                    await self._backoff(endpoint, attempt, what)
                    continue
                raise GatewayUnavailable(endpoint.path, f"unreachable ({what})") from None
            elapsed = self._clock.monotonic() - started
            status = response.status_code

            if status == 401 and endpoint.auth and not renewing:
                if reauthed:
                    raise AuthError(
                        endpoint.path, "unauthorized after a token refresh", http_status=401
                    )
                # Nothing was done with a 401: refresh once and send again.
                reauthed = True
                attempt -= 1
                await self._renew(version, reason="HTTP 401")
                continue
            if status == 401:
                raise AuthError(endpoint.path, "unauthorized", http_status=401)
            if status == 429:
                if attempt < limit:
                    await self._backoff(endpoint, attempt, "HTTP 429", _retry_after(response))
                    continue
                raise RateLimited(endpoint.path, "rate limited", http_status=429)
            if status >= 500:
                if endpoint.mutation:
                    raise OutcomeUnknown(endpoint.path, "server error", http_status=status)
                if attempt < limit:
                    await self._backoff(endpoint, attempt, f"HTTP {status}")
                    continue
                raise GatewayUnavailable(endpoint.path, "server error", http_status=status)
            if status == 400 and not endpoint.auth:
                raise AuthError(endpoint.path, "login request refused", http_status=status)
            if status >= 400:
                # A 4xx other than 401/429 is a definite refusal: nothing was done.
                raise GatewayRejected(endpoint.path, "request refused", http_status=status)
            if status != 200:
                return self._unreadable(endpoint, f"unexpected HTTP {status}")

            try:
                data = response.json()
            except ValueError:
                return self._unreadable(endpoint, "reply is not JSON")
            if not isinstance(data, dict) or not isinstance(data.get("success"), bool):
                return self._unreadable(endpoint, "reply has no success flag")
            if data["success"]:
                # The enforcement log reports what an action achieved; this is plumbing.
                log.debug("%s ok (%.0f ms)", endpoint.path, elapsed * 1000)
                return data
            code = data.get("errorCode")
            if isinstance(code, bool) or not isinstance(code, int):
                code = -1
            message = data.get("errorMessage")
            message = redact(message)[:300] if isinstance(message, str) else ""
            error = endpoint.error_for(code, message)
            log.debug("%s refused: %s", endpoint.path, error)
            raise error

    def _unreadable(self, endpoint: Endpoint, why: str) -> dict[str, Any]:
        if endpoint.mutation:
            raise OutcomeUnknown(endpoint.path, why)
        raise ProtocolError(endpoint.path, why)

    async def _backoff(
        self, endpoint: Endpoint, attempt: int, why: str, retry_after: float | None = None
    ) -> None:
        delay = self._retry_backoff.delay(attempt, retry_after=retry_after)
        log.debug("%s: %s; retrying in %.2f s", endpoint.path, why, delay)
        await self._clock.sleep(delay)

    @staticmethod
    def _payload(endpoint: Endpoint, data: Mapping[str, Any], key: str) -> Any:
        if key not in data:
            raise ProtocolError(endpoint.path, f"reply has no {key!r}")
        return data[key]

    def _parse_list(self, endpoint: Endpoint, data: Mapping[str, Any], key: str, model: Any) -> Any:
        try:
            return parse_list(model, self._payload(endpoint, data, key), endpoint.path)
        except PayloadError as exc:
            # One bad row fails the whole read: a snapshot missing a position is worse than
            # no snapshot (the engine would take the position for closed).
            raise ProtocolError(endpoint.path, exc.reason) from None

    # --- GatewayPort: mutations ----------------------------------------------------------

    async def close_contract(self, account_id: int, contract_id: str) -> None:
        await self._call(POSITION_CLOSE, {"accountId": account_id, "contractId": contract_id})

    async def partial_close_contract(self, account_id: int, contract_id: str, size: int) -> None:
        await self._call(
            POSITION_PARTIAL_CLOSE,
            {"accountId": account_id, "contractId": contract_id, "size": size},
        )

    async def cancel_order(self, account_id: int, order_id: int) -> None:
        await self._call(ORDER_CANCEL, {"accountId": account_id, "orderId": order_id})

    async def modify_order(
        self,
        account_id: int,
        order_id: int,
        *,
        size: int | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail_price: Decimal | None = None,
    ) -> None:
        body: dict[str, Any] = {"accountId": account_id, "orderId": order_id}
        # Omitted fields are left unchanged by the gateway (§2.6): send only what changes.
        if size is not None:
            body["size"] = size
        if limit_price is not None:
            body["limitPrice"] = _price(limit_price)
        if stop_price is not None:
            body["stopPrice"] = _price(stop_price)
        if trail_price is not None:
            body["trailPrice"] = _price(trail_price)
        await self._call(ORDER_MODIFY, body)

    async def place_order(
        self,
        account_id: int,
        contract_id: str,
        order_type: OrderType,
        side: OrderSide,
        size: int,
        *,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail_price: Decimal | None = None,
        custom_tag: str | None = None,
    ) -> int:
        body: dict[str, Any] = {
            "accountId": account_id,
            "contractId": contract_id,
            "type": int(order_type),
            "side": int(side),
            "size": size,
            "limitPrice": _price(limit_price),
            "stopPrice": _price(stop_price),
            "trailPrice": _price(trail_price),
            "customTag": custom_tag,
        }
        data = await self._call(ORDER_PLACE, body)
        order_id = data.get("orderId")
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            # Accepted, but we cannot tell which order it is: reconcile by customTag.
            raise OutcomeUnknown(ORDER_PLACE.path, "accepted without an orderId")
        return order_id

    # --- GatewayPort: reads ----------------------------------------------------------------

    async def search_accounts(
        self, only_active: bool = True, *, urgent: bool = False
    ) -> list[Account]:
        data = await self._call(ACCOUNT_SEARCH, {"onlyActiveAccounts": only_active}, urgent=urgent)
        accounts: list[Account] = self._parse_list(ACCOUNT_SEARCH, data, "accounts", Account)
        return accounts

    async def search_open_positions(
        self, account_id: int, *, urgent: bool = False
    ) -> list[Position]:
        data = await self._call(POSITION_SEARCH_OPEN, {"accountId": account_id}, urgent=urgent)
        positions: list[Position] = self._parse_list(
            POSITION_SEARCH_OPEN, data, "positions", Position
        )
        return positions

    async def search_open_orders(self, account_id: int, *, urgent: bool = False) -> list[Order]:
        data = await self._call(ORDER_SEARCH_OPEN, {"accountId": account_id}, urgent=urgent)
        orders: list[Order] = self._parse_list(ORDER_SEARCH_OPEN, data, "orders", Order)
        return orders

    async def search_orders(
        self, account_id: int, start: datetime, end: datetime | None = None, *, urgent: bool = False
    ) -> list[Order]:
        body: dict[str, Any] = {"accountId": account_id, "startTimestamp": _iso(start)}
        if end is not None:
            body["endTimestamp"] = _iso(end)
        data = await self._call(ORDER_SEARCH, body, urgent=urgent)
        orders: list[Order] = self._parse_list(ORDER_SEARCH, data, "orders", Order)
        return orders

    async def search_trades(
        self, account_id: int, start: datetime, end: datetime | None = None, *, urgent: bool = False
    ) -> list[Trade]:
        body: dict[str, Any] = {"accountId": account_id, "startTimestamp": _iso(start)}
        if end is not None:
            body["endTimestamp"] = _iso(end)
        data = await self._call(TRADE_SEARCH, body, urgent=urgent)
        trades: list[Trade] = self._parse_list(TRADE_SEARCH, data, "trades", Trade)
        return trades

    async def get_contract(self, contract_id: str) -> Contract:
        data = await self._call(CONTRACT_SEARCH_BY_ID, {"contractId": contract_id})
        raw = self._payload(CONTRACT_SEARCH_BY_ID, data, "contract")
        if raw is None:
            raise NotFound(CONTRACT_SEARCH_BY_ID.path, f"no contract {contract_id!r}")
        try:
            contract: Contract = parse_model(Contract, raw, CONTRACT_SEARCH_BY_ID.path)
        except PayloadError as exc:
            raise ProtocolError(CONTRACT_SEARCH_BY_ID.path, exc.reason) from None
        return contract

    async def search_contracts(self, text: str, *, live: bool | None = None) -> list[Contract]:
        body = {"searchText": text, "live": self._live if live is None else live}
        data = await self._call(CONTRACT_SEARCH, body)
        contracts: list[Contract] = self._parse_list(CONTRACT_SEARCH, data, "contracts", Contract)
        return contracts

    async def last_price(
        self,
        contract_id: str,
        *,
        lookback: timedelta = timedelta(minutes=30),
        live: bool | None = None,
        urgent: bool = False,
    ) -> Decimal | None:
        """The close of the newest 1-minute bar (partial bar included), or None if no trade
        in `lookback`. A fallback mark for when the market hub is stale (§3.4, issue #97)."""
        now = self._clock.now()
        body = {
            "contractId": contract_id,
            "live": self._live if live is None else live,
            "startTime": _iso(now - lookback),
            "endTime": _iso(now + timedelta(minutes=1)),
            "unit": int(BarUnit.MINUTE),
            "unitNumber": 1,
            "limit": 1,
            "includePartialBar": True,
        }
        data = await self._call(HISTORY_BARS, body, urgent=urgent)
        bars: list[_Bar] = self._parse_list(HISTORY_BARS, data, "bars", _Bar)
        if not bars:
            return None
        # Bars come back newest first, but do not rely on it.
        newest = max(bars, key=lambda b: b.t or datetime.min.replace(tzinfo=UTC))
        return newest.c


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None


__all__ = ["RestClient", "RetryPolicy"]
