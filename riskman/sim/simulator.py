"""The embedded ProjectX gateway simulator: REST + SignalR hubs on loopback, and a control API.

The control API is synchronous and must be called on the event loop the simulator runs on
(tests and `riskman demo` are single-loop programs). It shares the payload models with the
client, never the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from riskman.core.enums import OrderSide, OrderType, PositionType
from riskman.core.models import LOGOUT_EVENT, Account, Contract, Order, Position, Quote, Trade

from .contracts import DEFAULT_CONTRACTS, ContractSpec, PriceLike, to_decimal
from .exchange import (
    ACCOUNT_EVENT,
    ACTION_DONE,
    ACTION_UPDATE,
    FILL_ORDER,
    ORDER_EVENT,
    POSITION_EVENT,
    TRADE_EVENT,
    BracketMode,
    BracketRequest,
    Exchange,
    SimAccount,
    UserEvent,
)
from .faults import Faults, endpoint_name
from .hubs import (
    MARKET_METHODS,
    USER_METHODS,
    EventLogEntry,
    Hub,
    HubConnection,
    HubName,
    SubscriptionKey,
    hub_name,
)
from .market import Market, QuoteState
from .rest import RecordedRequest, RestApi
from .tokens import TokenIssuer
from .waiting import Changed

log = logging.getLogger(__name__)

DEFAULT_USERNAME = "demo"
DEFAULT_API_KEY = "demo"
DEFAULT_BALANCE = Decimal(50000)

_USER_SUBSCRIPTIONS = {
    ORDER_EVENT: "SubscribeOrders",
    POSITION_EVENT: "SubscribePositions",
    TRADE_EVENT: "SubscribeTrades",
}
_QUOTES = "SubscribeContractQuotes"
_TRADES = "SubscribeContractTrades"
_DEPTH = "SubscribeContractMarketDepth"
# DomType values used in depth snapshots.
_DOM_ASK, _DOM_BID, _DOM_BEST_ASK, _DOM_BEST_BID = 1, 2, 3, 4
_DEPTH_LEVELS = 5
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def default_accounts() -> list[Account]:
    return [
        Account(id=1001, name="DEMO-50K-1", balance=DEFAULT_BALANCE, simulated=True),
        Account(id=1002, name="DEMO-50K-2", balance=DEFAULT_BALANCE, simulated=True),
    ]


class SimRejected(Exception):
    """A control-API request the simulated gateway refused, with the endpoint's error code.

    `order_id` is set when the gateway created the order it rejected (the bracket-mode error).
    """

    def __init__(self, code: int, message: str | None, order_id: int | None = None) -> None:
        super().__init__(f"rejected with code {code}: {message or 'no message'}")
        self.code = code
        self.message = message
        self.order_id = order_id


class _EmbeddedServer(uvicorn.Server):
    # The host program owns SIGINT/SIGTERM; uvicorn must neither take nor re-raise them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Simulator:
    """A ProjectX-compatible gateway on loopback.

    Prices given to the control API are rounded to the contract's tick (orders are not: an
    unaligned order price is rejected as the gateway does). `set_price(last)` without bid/ask
    quotes bid = last and ask = last + one tick, so a market buy then pays one tick more than a
    market sell gets.
    """

    def __init__(
        self,
        seed: int = 1,
        quote_interval: float | None = None,
        accounts: Sequence[Account] | None = None,
        token_lifetime: float = 86400.0,
        ping_interval: float | None = 10.0,
        *,
        contracts: Sequence[ContractSpec] | None = None,
        credentials: Mapping[str, str] | None = None,
        bracket_mode: BracketMode = "auto_oco",
        handshake_timeout: float = 15.0,
    ) -> None:
        if quote_interval is not None and quote_interval <= 0:
            raise ValueError("quote_interval must be positive (or None)")
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError("ping_interval must be positive (or None)")
        self.quote_interval = quote_interval
        self.ping_interval = ping_interval
        self.bracket_mode: BracketMode = bracket_mode
        # User events go out wrapped as {"action", "data"}, as TopstepX sends them; True sends
        # the bare objects the docs show.
        self.emit_bare = False
        self.requests: list[RecordedRequest] = []
        self.event_log: list[EventLogEntry] = []
        creds = credentials if credentials is not None else {DEFAULT_USERNAME: DEFAULT_API_KEY}
        if not creds:
            raise ValueError("at least one credential is needed")
        self._credentials = {user.lower(): (user, key) for user, key in creds.items()}
        self._market = Market(contracts if contracts is not None else DEFAULT_CONTRACTS, seed)
        self._depth_rng = random.Random(f"{seed}:depth")
        self._exchange = Exchange(self._market, self._on_user_event)
        for account in accounts if accounts is not None else default_accounts():
            self._exchange.add_account(
                SimAccount(
                    id=account.id,
                    name=account.name,
                    balance=account.balance,
                    can_trade=account.can_trade,
                    is_visible=account.is_visible,
                    simulated=account.simulated is not False,
                    bracket_mode=bracket_mode,
                )
            )
        self._tokens = TokenIssuer(token_lifetime)
        self._hubs: dict[HubName, Hub] = {
            "user": Hub("user", USER_METHODS, self.event_log, handshake_timeout=handshake_timeout),
            "market": Hub(
                "market", MARKET_METHODS, self.event_log, handshake_timeout=handshake_timeout
            ),
        }
        self._hubs["market"].on_subscribed = self._market_snapshot
        for hub in self._hubs.values():
            hub.abort = self._abort_socket
        self.faults = Faults(self._hubs)
        self._requests_changed = Changed()
        self._rest = RestApi(
            self._exchange,
            self._market,
            self._tokens,
            self.faults,
            check_credentials=self._check_credentials,
            record=self._record_request,
            hold=self._hold,
        )
        self._server: _EmbeddedServer | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Event | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    # --- life cycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on `host:port` (port 0: any free port, see :attr:`port`)."""
        if self._serve_task is not None:
            raise RuntimeError("the simulator is already running")
        listener = _listen(host, port)
        config = uvicorn.Config(
            self._app(),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            ws="websockets-sansio",
            # SignalR has its own pings; signalrcore cannot answer WebSocket-level ones.
            ws_ping_interval=None,
            ws_ping_timeout=None,
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=2,
        )
        server = _EmbeddedServer(config)
        self._stopping = asyncio.Event()
        self._server = server
        self._serve_task = asyncio.create_task(server.serve(sockets=[listener]), name="sim-uvicorn")
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                # uvicorn offers no start-up event; it flips `started` right after it starts
                # serving our already-listening socket, so this loop runs a few times at most.
                while not server.started:
                    if self._serve_task.done():
                        self._serve_task.result()
                        raise RuntimeError("the simulator's server exited during start-up")
                    await asyncio.sleep(0.005)
        except BaseException:
            await self._shutdown_server()
            listener.close()
            raise
        self._host = host
        self._port = listener.getsockname()[1]
        if self.quote_interval is not None:
            self._spawn(self._tick_quotes(self.quote_interval), "sim-quotes")
        if self.ping_interval is not None:
            self._spawn(self._ping(self.ping_interval), "sim-ping")

    async def stop(self) -> None:
        """Close every socket and stop serving; state (accounts, orders, ...) is kept."""
        if self._serve_task is None:
            return
        if self._stopping is not None:
            self._stopping.set()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self._shutdown_server()
        for hub in self._hubs.values():
            for connection in hub.connections:
                hub.detach(connection)
        self._port = None

    async def _shutdown_server(self) -> None:
        server, task = self._server, self._serve_task
        self._server = self._serve_task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), _STOP_TIMEOUT)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        except Exception:
            log.exception("simulator server failed")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._serve_task is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def user_hub_url(self) -> str:
        return f"{self.base_url}/hubs/user"

    @property
    def market_hub_url(self) -> str:
        return f"{self.base_url}/hubs/market"

    @property
    def username(self) -> str:
        return next(iter(self._credentials.values()))[0]

    @property
    def api_key(self) -> str:
        return next(iter(self._credentials.values()))[1]

    def _spawn(self, coro: Any, name: str) -> None:
        self._background.append(asyncio.create_task(coro, name=name))

    async def _tick_quotes(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                for contract_id in self._market.contracts:
                    if contract_id not in self._market.halted:
                        self._after_quote(self._market.step(contract_id))
            except Exception:
                # A bug here must not silently freeze the demo market.
                log.exception("simulator: quote tick failed")

    async def _ping(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for hub in self._hubs.values():
                hub.ping()

    async def _hold(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the simulator stops meanwhile."""
        stopping = self._stopping
        if stopping is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    # --- HTTP application -------------------------------------------------------------------

    def _app(self) -> Starlette:
        routes: list[Route | WebSocketRoute] = list(self._rest.routes())
        for name in self._hubs:
            routes.append(WebSocketRoute(f"/hubs/{name}", self._hub_endpoint(name)))
            routes.append(Route(f"/hubs/{name}/negotiate", self._negotiate, methods=["POST"]))
        return Starlette(routes=routes)

    def _hub_endpoint(self, name: HubName) -> Callable[[WebSocket], Any]:
        hub = self._hubs[name]

        async def endpoint(websocket: WebSocket) -> None:
            token = websocket.query_params.get("access_token")
            if self._tokens.check(token) is None:
                # Refuse before the upgrade: the client sees HTTP 401, as from the gateway.
                try:
                    await websocket.send_denial_response(Response(status_code=401))
                except RuntimeError:
                    await websocket.close(code=1008)
                return
            await websocket.accept()
            await HubConnection(hub, websocket).run()

        return endpoint

    async def _negotiate(self, request: Request) -> Response:
        token = request.query_params.get("access_token")
        if token is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        if self._tokens.check(token) is None:
            return Response(status_code=401)
        connection_id = secrets.token_hex(16)
        body: dict[str, Any] = {
            "connectionId": connection_id,
            "availableTransports": [
                {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}
            ],
        }
        if request.query_params.get("negotiateVersion") == "1":
            body["negotiateVersion"] = 1
            body["connectionToken"] = secrets.token_hex(16)
        else:
            body["negotiateVersion"] = 0
        return JSONResponse(body)

    def _abort_socket(self, websocket: WebSocket) -> bool:
        """Cut the TCP connection under `websocket` without a close frame (a network drop).

        uvicorn does not expose the transport through ASGI; its protocol objects do, matched
        here by the client's address. False when that is not possible.
        """
        server = self._server
        client = websocket.scope.get("client")
        if server is None or client is None:
            return False
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            address = getattr(connection, "client", None)
            if transport is not None and address is not None and tuple(address) == tuple(client):
                transport.abort()
                return True
        return False

    def _record_request(self, request: RecordedRequest) -> None:
        self.requests.append(request)
        self._requests_changed.notify()

    def _check_credentials(self, user_name: str, api_key: str) -> str | None:
        entry = self._credentials.get(user_name.lower())
        if entry is None or entry[1] != api_key:
            return None
        return entry[0]

    # --- events -----------------------------------------------------------------------------

    def _on_user_event(self, event: UserEvent) -> None:
        hub = self._hubs["user"]
        key: SubscriptionKey = (
            ("SubscribeAccounts", None)
            if event.target == ACCOUNT_EVENT
            else (_USER_SUBSCRIPTIONS[event.target], event.account_id)
        )
        if not hub.has_subscribers(key):
            return
        data = event.payload.to_wire()
        argument = data if self.emit_bare else {"action": event.action, "data": data}
        hub.broadcast(event.target, [argument], key)

    def _after_quote(self, state: QuoteState) -> None:
        """Publish a new quote, then let resting orders react to it."""
        contract_id = state.contract.id
        self._publish_quote(state)
        hub = self._hubs["market"]
        if hub.has_subscribers((_TRADES, contract_id)):
            trade = self._market.last_trade(contract_id).to_wire()
            hub.broadcast("GatewayTrade", [contract_id, [trade]], (_TRADES, contract_id))
        if hub.has_subscribers((_DEPTH, contract_id)):
            hub.broadcast("GatewayDepth", [contract_id, self._depth(state)], (_DEPTH, contract_id))
        self._exchange.on_quote(contract_id)

    def _publish_quote(self, state: QuoteState) -> None:
        hub = self._hubs["market"]
        key = (_QUOTES, state.contract.id)
        if hub.has_subscribers(key):
            hub.broadcast("GatewayQuote", [state.contract.id, state.model().to_wire()], key)

    def _depth(self, state: QuoteState) -> list[dict[str, Any]]:
        tick = state.contract.tick_size
        stamp = state.updated.isoformat()
        rows: list[dict[str, Any]] = []
        for level in range(_DEPTH_LEVELS):
            for side, best, price in (
                (_DOM_BID, _DOM_BEST_BID, state.bid - tick * level),
                (_DOM_ASK, _DOM_BEST_ASK, state.ask + tick * level),
            ):
                volume = self._depth_rng.randint(1, 40)
                rows.append(
                    {
                        "timestamp": stamp,
                        "type": best if level == 0 else side,
                        "price": float(price),
                        "volume": volume,
                        "currentVolume": volume,
                    }
                )
        return rows

    def _market_snapshot(self, connection: HubConnection, key: SubscriptionKey) -> None:
        # A new quote subscriber gets the current quote at once, so it has a price even when
        # the market is quiet.
        method, contract_id = key
        if method != _QUOTES or not isinstance(contract_id, str):
            return
        if contract_id not in self._market.contracts:
            return
        quote = self._market.quote(contract_id).model().to_wire()
        connection.hub.send_to(connection, "GatewayQuote", [contract_id, quote])

    # --- control API: accounts --------------------------------------------------------------

    @property
    def account_ids(self) -> list[int]:
        return sorted(self._exchange.accounts)

    def add_account(
        self, name: str, balance: Decimal = DEFAULT_BALANCE, can_trade: bool = True
    ) -> int:
        """Open another account; returns its id."""
        account_id = max(self._exchange.accounts, default=1000) + 1
        self._exchange.add_account(
            SimAccount(
                id=account_id,
                name=name,
                balance=Decimal(balance),
                can_trade=can_trade,
                bracket_mode=self.bracket_mode,
            )
        )
        # Like the gateway: an account opened during the day is announced on the user hub.
        self._exchange.set_can_trade(account_id, can_trade)
        return account_id

    def account(self, account_id: int) -> Account:
        return self._sim_account(account_id).model()

    def set_can_trade(self, account_id: int, value: bool) -> None:
        """Lock or unlock trading; streams `GatewayUserAccount`."""
        self._exchange.set_can_trade(account_id, value)

    def set_balance(self, account_id: int, balance: PriceLike) -> None:
        self._exchange.set_balance(account_id, to_decimal(balance))

    def set_fill_order(self, *kinds: str) -> None:
        """Send each fill's events in this order of "order", "trade", "position", "account"
        (default: the gateway's, in that order); e.g. `set_fill_order("position", "account",
        "trade", "order")`. The events of one fill still go out together."""
        if sorted(kinds) != sorted(FILL_ORDER):
            raise ValueError(f"give each of {', '.join(FILL_ORDER)} once")
        self._exchange.fill_order = tuple(kinds)

    def set_bracket_mode(self, account_id: int, mode: BracketMode) -> None:
        """ "auto_oco" accepts bracket fields on orders; "position" rejects them (code 2)."""
        if mode not in ("auto_oco", "position"):
            raise ValueError(f"unknown bracket mode {mode!r}")
        self._sim_account(account_id).bracket_mode = mode

    def balance(self, account_id: int) -> Decimal:
        return self._sim_account(account_id).balance

    def _sim_account(self, account_id: int) -> SimAccount:
        try:
            return self._exchange.accounts[account_id]
        except KeyError:
            raise KeyError(f"no account {account_id}") from None

    # --- control API: market ----------------------------------------------------------------

    @property
    def contract_ids(self) -> list[str]:
        return list(self._market.contracts)

    def contract(self, contract_id: str) -> Contract:
        return self._market.contract(contract_id).model()

    def quote(self, contract_id: str) -> Quote:
        return self._market.quote(contract_id).model()

    def set_price(
        self,
        contract_id: str,
        last: PriceLike,
        bid: PriceLike | None = None,
        ask: PriceLike | None = None,
    ) -> None:
        """Move the market: streams the quote, then triggers and fills resting orders."""
        self._after_quote(self._market.set_price(contract_id, last, bid, ask))

    def step_quotes(self, contract_id: str | None = None, steps: int = 1) -> None:
        """Advance the random walk (one contract, or all) by `steps`, as automatic ticking does."""
        ids = [contract_id] if contract_id is not None else list(self._market.contracts)
        for _ in range(steps):
            for cid in ids:
                self._after_quote(self._market.step(cid))

    def push_quote(
        self,
        contract_id: str,
        last: PriceLike,
        bid: PriceLike | None = None,
        ask: PriceLike | None = None,
    ) -> None:
        """Benchmark hook: update and stream a quote without matching (resting orders react
        only at the next `set_price`/tick) and without market trade or depth events."""
        self._publish_quote(self._market.set_price(contract_id, last, bid, ask))

    def push_position(
        self, account_id: int, contract_id: str, size: int, average_price: PriceLike
    ) -> None:
        """Benchmark hook: stream a `GatewayUserPosition` (signed `size`, 0 = closed) without
        touching the simulator's state."""
        existing = self._exchange.position(account_id, contract_id)
        spec = self._market.contract(contract_id)
        position = Position(
            id=existing.id if existing is not None else 0,
            account_id=account_id,
            contract_id=contract_id,
            contract_display_name=spec.name,
            creation_timestamp=existing.created if existing is not None else None,
            type=(
                PositionType.UNDEFINED
                if size == 0
                else PositionType.LONG
                if size > 0
                else PositionType.SHORT
            ),
            size=abs(size),
            average_price=to_decimal(average_price),
        )
        action = ACTION_DONE if size == 0 else ACTION_UPDATE
        self._on_user_event(UserEvent(POSITION_EVENT, account_id, position, action))

    def set_halted(self, halted: bool, contract_id: str | None = None) -> None:
        """Halt (or reopen) one contract or all: orders are refused (place code 5, close code 5,
        partial close code 6), quotes stop ticking and resting orders do not trigger."""
        ids = [contract_id] if contract_id is not None else list(self._market.contracts)
        for cid in ids:
            self._market.contract(cid)
            if halted:
                self._market.halted.add(cid)
            else:
                self._market.halted.discard(cid)

    # --- control API: orders and positions --------------------------------------------------

    def submit_order(
        self,
        account_id: int,
        contract_id: str,
        side: OrderSide,
        size: int,
        order_type: OrderType = OrderType.MARKET,
        limit_price: PriceLike | None = None,
        stop_price: PriceLike | None = None,
        trail_price: PriceLike | None = None,
        custom_tag: str | None = None,
        stop_loss_ticks: int | None = None,
        take_profit_ticks: int | None = None,
    ) -> int:
        """Place an order as the trader would at the broker (the same path as `Order/place`).

        Returns the order id; raises :class:`SimRejected` with the place error code.
        """
        outcome = self._exchange.place(
            account_id,
            contract_id,
            int(order_type),
            int(side),
            size,
            limit_price=_price(limit_price),
            stop_price=_price(stop_price),
            trail_price=_price(trail_price),
            custom_tag=custom_tag,
            stop_loss=(
                BracketRequest(stop_loss_ticks, OrderType.STOP)
                if stop_loss_ticks is not None
                else None
            ),
            take_profit=(
                BracketRequest(take_profit_ticks, OrderType.LIMIT)
                if take_profit_ticks is not None
                else None
            ),
        )
        if not outcome.ok or outcome.order_id is None:
            raise SimRejected(outcome.code, outcome.message, outcome.order_id)
        return outcome.order_id

    def cancel_order(self, account_id: int, order_id: int) -> None:
        """Cancel as the trader would (the same path as `Order/cancel`)."""
        outcome = self._exchange.cancel(account_id, order_id)
        if not outcome.ok:
            raise SimRejected(outcome.code, outcome.message)

    def modify_order(
        self, account_id: int, order_id: int, *, stop_price: PriceLike | None = None
    ) -> None:
        """Move an order's stop as the trader would (the same path as `Order/modify`)."""
        outcome = self._exchange.modify(
            account_id, order_id, stop_price=None if stop_price is None else to_decimal(stop_price)
        )
        if not outcome.ok:
            raise SimRejected(outcome.code, outcome.message)

    def close_position(self, account_id: int, contract_id: str) -> None:
        """Flatten as the trader would (the same path as `Position/closeContract`)."""
        outcome = self._exchange.close_contract(account_id, contract_id)
        if not outcome.ok:
            raise SimRejected(outcome.code, outcome.message)

    def positions(self, account_id: int) -> list[Position]:
        self._sim_account(account_id)
        return self._exchange.positions(account_id)

    def open_orders(self, account_id: int) -> list[Order]:
        """Working orders, suspended bracket legs included (unlike `Order/searchOpen`)."""
        self._sim_account(account_id)
        return self._exchange.working_orders(account_id)

    def orders(self, account_id: int) -> list[Order]:
        """Every order of the account, oldest first."""
        self._sim_account(account_id)
        return self._exchange.orders(account_id)

    def trades(self, account_id: int) -> list[Trade]:
        self._sim_account(account_id)
        return self._exchange.trades(account_id)

    # --- control API: sessions, requests, hubs ----------------------------------------------

    def issue_token(self, user_name: str | None = None) -> str:
        """A valid token without a login call (for raw hub tests)."""
        return self._tokens.issue(user_name or self.username)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired: REST answers 401, hubs refuse to connect."""
        self._tokens.expire_all()

    @property
    def token_lifetime(self) -> float:
        return self._tokens.lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("token lifetime must be positive")
        self._tokens.lifetime = seconds

    async def wait_for_request(
        self,
        endpoint: str,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: float | None = None,
    ) -> RecordedRequest:
        """The first recorded call of `endpoint` (received at or after `since`, a
        `time.monotonic()` value) that satisfies `predicate`, waiting for it if need be."""
        name = endpoint_name(endpoint)
        index = 0

        def check() -> RecordedRequest | None:
            nonlocal index
            if index > len(self.requests):
                index = 0
            while index < len(self.requests):
                request = self.requests[index]
                index += 1
                if request.endpoint != name or (since is not None and request.received < since):
                    continue
                if predicate is None or predicate(request):
                    return request
            return None

        return await self._requests_changed.wait_for(check, timeout, f"a {name} request")

    def subscriptions(self, hub: str) -> set[tuple[str, object]]:
        """Active (method, argument) pairs over all open sockets of the hub, e.g.
        `("SubscribeOrders", 1001)` or `("SubscribeAccounts", None)`."""
        return self._hubs[hub_name(hub)].subscriptions()

    def connection_count(self, hub: str) -> int:
        """Open sockets of the hub that completed the SignalR handshake."""
        return len(self._hubs[hub_name(hub)].connections)

    async def wait_for_subscription(
        self,
        hub: str,
        method: str,
        arg: object = None,
        timeout: float = 5.0,
        *,
        present: bool = True,
    ) -> None:
        """Wait until some socket of `hub` holds the subscription (or none does, with
        `present=False`). `method` is the Subscribe* name, matched case-insensitively."""
        target = self._hubs[hub_name(hub)]
        spec = target.methods.get(method.lower())
        if spec is None:
            raise ValueError(f"{hub} hub has no method {method!r}")
        key: SubscriptionKey = (spec.subscription, arg)

        def check() -> bool | None:
            return True if target.has_subscribers(key) == present else None

        await target.changed.wait_for(check, timeout, f"{key} on the {hub} hub")

    async def wait_for_connections(self, hub: str, count: int, timeout: float = 5.0) -> None:
        """Wait until exactly `count` sockets of `hub` are connected."""
        target = self._hubs[hub_name(hub)]

        def check() -> bool | None:
            return True if len(target.connections) == count else None

        await target.changed.wait_for(check, timeout, f"{count} {hub} hub connection(s)")

    def send_logout(self, hub: str) -> int:
        """Send `GatewayLogout` to every socket of the hub; returns how many got it."""
        return self._hubs[hub_name(hub)].broadcast(LOGOUT_EVENT, [], None)


def _price(value: PriceLike | None) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket bound before uvicorn starts, so a bad address fails here (uvicorn
    would `sys.exit`) and port 0 is resolved at once."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
        listener.setblocking(False)
    except OSError:
        listener.close()
        raise
    return listener
