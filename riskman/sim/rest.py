"""The gateway's REST API (PROJECTX_API.md §1-§2) as Starlette routes.

Every call is POST with a JSON body (ping is GET) and answers HTTP 200 with the envelope
`{success, errorCode, errorMessage, <payload key>}` even when it fails, with the endpoint's own
error codes. HTTP 401 means no valid bearer token; HTTP 400 a body the gateway cannot bind
(missing required field, wrong type), answered like ASP.NET with an RFC 7807 body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from riskman.gateway.codes import (
    LoginErrorCode,
    LogoutErrorCode,
    RetrieveBarErrorCode,
    SearchAccountErrorCode,
    SearchContractByIdErrorCode,
    SearchOrderErrorCode,
    SearchPositionErrorCode,
    SearchTradeErrorCode,
    ValidateErrorCode,
)

from .exchange import BracketRequest, Exchange, Outcome
from .faults import ENDPOINTS, Faults
from .market import Market
from .tokens import TokenIssuer

log = logging.getLogger(__name__)

# The payload key each endpoint adds to the envelope (None: envelope only).
PAYLOAD_KEYS: dict[str, str | None] = {
    "Auth/loginKey": "token",
    "Auth/validate": "newToken",
    "Auth/logout": None,
    "Account/search": "accounts",
    "Position/searchOpen": "positions",
    "Position/closeContract": None,
    "Position/partialCloseContract": None,
    "Order/searchOpen": "orders",
    "Order/search": "orders",
    "Order/searchById": "order",
    "Order/v2/query": "orders",
    "Order/cancel": None,
    "Order/modify": None,
    "Order/place": "orderId",
    "Trade/search": "trades",
    "Contract/searchById": "contract",
    "Contract/search": "contracts",
    "Contract/available": "contracts",
    "History/retrieveBars": "bars",
    "Status/ping": None,
}
assert set(PAYLOAD_KEYS) == set(ENDPOINTS)

MAX_BARS = 20_000
MAX_CONTRACT_RESULTS = 20

Kind = Literal["int", "str", "bool", "decimal", "datetime", "bracket", "object"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One REST call as the simulator received and answered it."""

    endpoint: str
    body: dict[str, Any]
    received: float
    status: int
    response: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: Kind
    required: bool = True


def _f(name: str, kind: Kind, required: bool = True) -> _Field:
    return _Field(name, kind, required)


class _BadRequest(Exception):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("validation failed")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: dict[str, Any] | None = None
    text: str | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class _Caller:
    """Who made an authorised call: the user and the bearer token used."""

    user: str
    token: str


Handler = Callable[[dict[str, Any], _Caller | None], dict[str, Any]]


def envelope(code: int, message: str | None = None, **payload: Any) -> dict[str, Any]:
    return {"success": code == 0, "errorCode": int(code), "errorMessage": message, **payload}


def _problem(errors: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": errors,
    }


def _parse_body(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        # Decimal for every JSON number with a fraction: prices stay exact.
        body = json.loads(raw, parse_float=Decimal)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _as_sent(raw: bytes) -> dict[str, Any]:
    """The body as plain JSON (floats, not the Decimals used to act on it), for the record."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _coerce(kind: Kind, value: Any) -> Any:
    """`value` as `kind`, or ValueError (binding is as strict as System.Text.Json)."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("an integer")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError("a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("a boolean")
        return value
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise ValueError("a number")
        return Decimal(value)
    if kind == "datetime":
        if not isinstance(value, str):
            raise ValueError("a date-time string")
        return _parse_time(value)
    if kind == "bracket":
        if not isinstance(value, dict):
            raise ValueError("an object")
        ticks = _coerce("int", _lookup(value, "ticks"))
        order_type = _coerce("int", _lookup(value, "type"))
        return BracketRequest(ticks=ticks, type=order_type)
    if not isinstance(value, dict):
        raise ValueError("an object")
    return value


def _lookup(body: Mapping[str, Any], name: str) -> Any:
    # ASP.NET binds JSON property names case-insensitively.
    lowered = name.lower()
    for key, value in body.items():
        if key.lower() == lowered:
            return value
    return None


def _bind(body: Mapping[str, Any], fields: tuple[_Field, ...]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for field in fields:
        value = _lookup(body, field.name)
        if value is None:
            if field.required:
                errors[field.name] = [f"The {field.name} field is required."]
            args[field.name] = None
            continue
        try:
            args[field.name] = _coerce(field.kind, value)
        except (ValueError, ArithmeticError) as exc:
            errors[field.name] = [f"The JSON value could not be converted: expected {exc}."]
    if errors:
        raise _BadRequest(errors)
    return args


class RestApi:
    """The REST routes over the simulator's state.

    `check_credentials` maps (userName, apiKey) to the canonical user name (None: refused);
    `record` receives every call once answered; `hold` sleeps for a delay fault.
    """

    def __init__(
        self,
        exchange: Exchange,
        market: Market,
        tokens: TokenIssuer,
        faults: Faults,
        *,
        check_credentials: Callable[[str, str], str | None],
        record: Callable[[RecordedRequest], None],
        hold: Callable[[float], Awaitable[None]],
    ) -> None:
        self._exchange = exchange
        self._market = market
        self._tokens = tokens
        self._faults = faults
        self._check_credentials = check_credentials
        self._record = record
        self._hold = hold
        self._schemas: dict[str, tuple[_Field, ...]] = {
            "Auth/loginKey": (_f("userName", "str"), _f("apiKey", "str")),
            "Auth/validate": (),
            "Auth/logout": (),
            "Account/search": (_f("onlyActiveAccounts", "bool"),),
            "Position/searchOpen": (_f("accountId", "int"),),
            "Position/closeContract": (_f("accountId", "int"), _f("contractId", "str")),
            "Position/partialCloseContract": (
                _f("accountId", "int"),
                _f("contractId", "str"),
                _f("size", "int"),
            ),
            "Order/searchOpen": (_f("accountId", "int"),),
            "Order/search": (
                _f("accountId", "int"),
                _f("startTimestamp", "datetime"),
                _f("endTimestamp", "datetime", required=False),
            ),
            "Order/searchById": (_f("accountId", "int"), _f("orderId", "int")),
            "Order/v2/query": (
                _f("filter", "object"),
                _f("pageSize", "int", required=False),
                _f("pageOffset", "int", required=False),
                _f("sortBy", "int", required=False),
                _f("sortDirection", "int", required=False),
                _f("includeTotalCount", "bool", required=False),
            ),
            "Order/cancel": (_f("accountId", "int"), _f("orderId", "int")),
            "Order/modify": (
                _f("accountId", "int"),
                _f("orderId", "int"),
                _f("size", "int", required=False),
                _f("limitPrice", "decimal", required=False),
                _f("stopPrice", "decimal", required=False),
                _f("trailPrice", "decimal", required=False),
            ),
            "Order/place": (
                _f("accountId", "int"),
                _f("contractId", "str"),
                _f("type", "int"),
                _f("side", "int"),
                _f("size", "int"),
                _f("limitPrice", "decimal", required=False),
                _f("stopPrice", "decimal", required=False),
                _f("trailPrice", "decimal", required=False),
                _f("customTag", "str", required=False),
                _f("stopLossBracket", "bracket", required=False),
                _f("takeProfitBracket", "bracket", required=False),
            ),
            "Trade/search": (
                _f("accountId", "int"),
                _f("startTimestamp", "datetime"),
                _f("endTimestamp", "datetime", required=False),
            ),
            "Contract/searchById": (_f("contractId", "str"),),
            "Contract/search": (_f("searchText", "str", required=False), _f("live", "bool")),
            "Contract/available": (_f("live", "bool"),),
            "History/retrieveBars": (
                _f("contractId", "str"),
                _f("live", "bool"),
                _f("startTime", "datetime"),
                _f("endTime", "datetime"),
                _f("unit", "int"),
                _f("unitNumber", "int"),
                _f("limit", "int"),
                _f("includePartialBar", "bool"),
            ),
        }
        self._handlers: dict[str, Handler] = {
            "Auth/loginKey": self._login,
            "Auth/validate": self._validate,
            "Auth/logout": self._logout,
            "Account/search": self._account_search,
            "Position/searchOpen": self._position_search_open,
            "Position/closeContract": self._close_contract,
            "Position/partialCloseContract": self._partial_close,
            "Order/searchOpen": self._order_search_open,
            "Order/search": self._order_search,
            "Order/searchById": self._order_search_by_id,
            "Order/v2/query": self._order_query,
            "Order/cancel": self._order_cancel,
            "Order/modify": self._order_modify,
            "Order/place": self._order_place,
            "Trade/search": self._trade_search,
            "Contract/searchById": self._contract_by_id,
            "Contract/search": self._contract_search,
            "Contract/available": self._contract_available,
            "History/retrieveBars": self._bars,
        }

    def routes(self) -> list[Route]:
        routes = [
            Route(f"/api/{name}", self._view(name), methods=["POST"]) for name in self._handlers
        ]
        routes.append(Route("/api/Status/ping", self._view("Status/ping"), methods=["GET"]))
        return routes

    # --- plumbing ---------------------------------------------------------------------------

    def _view(self, endpoint: str) -> Callable[[Request], Any]:
        async def view(request: Request) -> Response:
            received = time.monotonic()
            raw = await request.body()
            body = _parse_body(raw)
            hang = self._faults.next_hang(endpoint)
            if hang:
                await self._hold(hang)  # nothing is done until it ends
            try:
                reply = self._answer(request, endpoint, body)
            except Exception:
                log.exception("simulator: %s failed", endpoint)
                reply = _Reply(500, text="Internal Server Error")
            self._record(
                RecordedRequest(endpoint, _as_sent(raw), received, reply.status, reply.body)
            )
            delay = self._faults.next_delay(endpoint)
            if delay:
                await self._hold(delay)
            if reply.body is not None:
                return JSONResponse(reply.body, reply.status, headers=reply.headers)
            return PlainTextResponse(reply.text or "", reply.status, headers=reply.headers)

        return view

    def _answer(self, request: Request, endpoint: str, body: dict[str, Any] | None) -> _Reply:
        faults = self._faults
        failure = faults.next_failure(endpoint, http=True)
        if failure is not None and failure.http_status is not None:
            return _Reply(failure.http_status, text="")
        if endpoint == "Status/ping":
            return _Reply(200, text="pong")
        caller: _Caller | None = None
        if endpoint != "Auth/loginKey":
            token = _bearer(request)
            user = self._tokens.check(token)
            if user is None or token is None:
                challenge = 'Bearer error="invalid_token"'
                if self._tokens.is_expired(token):
                    challenge += ', error_description="The token is expired"'
                return _Reply(401, text="", headers={"WWW-Authenticate": challenge})
            caller = _Caller(user, token)
        schema = self._schemas[endpoint]
        if body is None and schema:
            return _Reply(400, _problem({"$": ["A non-empty request body is required."]}))
        try:
            args = _bind(body or {}, schema)
        except _BadRequest as exc:
            return _Reply(400, _problem(exc.errors))
        failure = faults.next_failure(endpoint, http=False)
        if failure is not None and failure.error_code is not None:
            key = PAYLOAD_KEYS[endpoint]
            payload = {key: None} if key else {}
            return _Reply(200, envelope(failure.error_code, failure.error_message, **payload))
        try:
            return _Reply(200, self._handlers[endpoint](args, caller))
        except _BadRequest as exc:
            # Nested objects are checked by their handler, before it changes anything.
            return _Reply(400, _problem(exc.errors))

    # --- auth -------------------------------------------------------------------------------

    def _login(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        user = self._check_credentials(args["userName"], args["apiKey"])
        if user is None or self._faults.reject_logins:
            return envelope(LoginErrorCode.InvalidCredentials, None, token=None)
        return envelope(LoginErrorCode.Success, None, token=self._tokens.issue(user))

    def _validate(self, _: dict[str, Any], caller: _Caller | None) -> dict[str, Any]:
        assert caller is not None
        return envelope(ValidateErrorCode.Success, None, newToken=self._tokens.issue(caller.user))

    def _logout(self, _: dict[str, Any], caller: _Caller | None) -> dict[str, Any]:
        assert caller is not None
        self._tokens.revoke(caller.token)
        return envelope(LogoutErrorCode.Success)

    # --- accounts and positions -------------------------------------------------------------

    def _account_search(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        accounts = sorted(self._exchange.accounts.values(), key=lambda a: a.id)
        return envelope(
            SearchAccountErrorCode.Success, accounts=[a.model().to_wire() for a in accounts]
        )

    def _position_search_open(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        exchange = self._exchange
        if args["accountId"] not in exchange.accounts:
            return envelope(
                SearchPositionErrorCode.AccountNotFound, "Account not found.", positions=None
            )
        positions = [p.to_wire() for p in exchange.positions(args["accountId"])]
        return envelope(SearchPositionErrorCode.Success, positions=positions)

    def _close_contract(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        outcome = self._exchange.close_contract(args["accountId"], args["contractId"])
        return _plain(outcome)

    def _partial_close(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        outcome = self._exchange.partial_close(args["accountId"], args["contractId"], args["size"])
        return _plain(outcome)

    # --- orders -----------------------------------------------------------------------------

    def _order_search_open(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        exchange = self._exchange
        if args["accountId"] not in exchange.accounts:
            return envelope(SearchOrderErrorCode.AccountNotFound, "Account not found.", orders=None)
        # Suspended bracket legs are invisible here until their entry fills.
        orders = exchange.working_orders(args["accountId"], include_suspended=False)
        return envelope(SearchOrderErrorCode.Success, orders=[o.to_wire() for o in orders])

    def _order_search(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        exchange = self._exchange
        if args["accountId"] not in exchange.accounts:
            return envelope(SearchOrderErrorCode.AccountNotFound, "Account not found.", orders=None)
        start: datetime = args["startTimestamp"]
        end: datetime | None = args["endTimestamp"]

        def in_window(at: datetime | None) -> bool:
            return at is not None and at >= start and (end is None or at <= end)

        # An order belongs to the window if it was created or last changed inside it, so a
        # client reconciling a gap also sees older orders that filled during the gap.
        orders = [
            o.to_wire()
            for o in exchange.orders(args["accountId"])
            if in_window(o.creation_timestamp) or in_window(o.update_timestamp)
        ]
        return envelope(SearchOrderErrorCode.Success, orders=orders)

    def _order_search_by_id(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        order = self._exchange.order(args["orderId"])
        if order is None or order.account_id != args["accountId"]:
            return envelope(1, "Order not found.", order=None)
        return envelope(0, order=order.model().to_wire())

    def _order_query(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        query = args["filter"]
        try:
            account_id = _coerce("int", _lookup(query, "accountId"))
            raw_statuses = _lookup(query, "statuses")
            if raw_statuses is not None and not isinstance(raw_statuses, list):
                raise ValueError("an array of order statuses")
            statuses = None if raw_statuses is None else {_coerce("int", s) for s in raw_statuses}
            contract_id = _optional(query, "contractId", "str")
            after = _optional(query, "createdAfter", "datetime")
            before = _optional(query, "createdBefore", "datetime")
        except ValueError as exc:
            raise _BadRequest({"filter": [f"The filter is invalid: expected {exc}."]}) from None
        exchange = self._exchange
        if account_id not in exchange.accounts:
            return envelope(1, "Account not found.", orders=None)
        orders = [
            o
            for o in exchange.orders(account_id)
            if (statuses is None or o.status in statuses)
            and (contract_id is None or o.contract_id == contract_id)
            and (after is None or (o.creation_timestamp and o.creation_timestamp >= after))
            and (before is None or (o.creation_timestamp and o.creation_timestamp <= before))
        ]
        if args["sortBy"] == 1:
            orders.sort(key=lambda o: o.id)
        else:
            orders.sort(
                key=lambda o: (o.creation_timestamp or datetime.min.replace(tzinfo=UTC), o.id)
            )
        if args["sortDirection"] == 1:
            orders.reverse()
        offset = args["pageOffset"] or 0
        page = orders[offset : offset + args["pageSize"]] if args["pageSize"] else orders[offset:]
        payload: dict[str, Any] = {"orders": [o.to_wire() for o in page]}
        if args["includeTotalCount"]:
            payload["totalCount"] = len(orders)
        return envelope(0, **payload)

    def _order_cancel(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        return _plain(self._exchange.cancel(args["accountId"], args["orderId"]))

    def _order_modify(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        outcome = self._exchange.modify(
            args["accountId"],
            args["orderId"],
            size=args["size"],
            limit_price=args["limitPrice"],
            stop_price=args["stopPrice"],
            trail_price=args["trailPrice"],
        )
        return _plain(outcome)

    def _order_place(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        outcome = self._exchange.place(
            args["accountId"],
            args["contractId"],
            args["type"],
            args["side"],
            args["size"],
            limit_price=args["limitPrice"],
            stop_price=args["stopPrice"],
            trail_price=args["trailPrice"],
            custom_tag=args["customTag"],
            stop_loss=args["stopLossBracket"],
            take_profit=args["takeProfitBracket"],
        )
        return envelope(outcome.code, outcome.message, orderId=outcome.order_id)

    def _trade_search(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        exchange = self._exchange
        if args["accountId"] not in exchange.accounts:
            return envelope(SearchTradeErrorCode.AccountNotFound, "Account not found.", trades=None)
        start: datetime = args["startTimestamp"]
        end: datetime | None = args["endTimestamp"]
        trades = [
            t.to_wire()
            for t in exchange.trades(args["accountId"])
            if t.creation_timestamp >= start and (end is None or t.creation_timestamp <= end)
        ]
        return envelope(SearchTradeErrorCode.Success, trades=trades)

    # --- contracts and history --------------------------------------------------------------

    def _contract_by_id(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        spec = self._market.contracts.get(args["contractId"])
        if spec is None:
            return envelope(
                SearchContractByIdErrorCode.ContractNotFound, "Contract not found.", contract=None
            )
        return envelope(SearchContractByIdErrorCode.Success, contract=spec.model().to_wire())

    def _contract_search(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        text = (args["searchText"] or "").strip().lower()
        found = [
            spec.model().to_wire()
            for spec in self._market.contracts.values()
            if not text
            or text in spec.name.lower()
            or text in spec.description.lower()
            or text in spec.symbol_id.lower()
            or text in spec.id.lower()
        ]
        return envelope(SearchContractByIdErrorCode.Success, contracts=found[:MAX_CONTRACT_RESULTS])

    def _contract_available(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        contracts = [spec.model().to_wire() for spec in self._market.contracts.values()]
        return envelope(SearchContractByIdErrorCode.Success, contracts=contracts)

    def _bars(self, args: dict[str, Any], _: _Caller | None) -> dict[str, Any]:
        market = self._market
        if args["contractId"] not in market.contracts:
            return envelope(RetrieveBarErrorCode.ContractNotFound, "Contract not found.", bars=None)
        if not 1 <= args["unit"] <= 7:
            return envelope(RetrieveBarErrorCode.UnitInvalid, "Invalid unit.", bars=None)
        if args["unitNumber"] < 1:
            return envelope(
                RetrieveBarErrorCode.UnitNumberInvalid, "Invalid unit number.", bars=None
            )
        if not 1 <= args["limit"] <= MAX_BARS:
            return envelope(RetrieveBarErrorCode.LimitInvalid, "Invalid limit.", bars=None)
        bars = market.bars(
            args["contractId"],
            args["startTime"],
            args["endTime"],
            args["unit"],
            args["unitNumber"],
            args["limit"],
            args["includePartialBar"],
        )
        wire = [
            {
                "t": bar.start.isoformat(),
                "o": _number(bar.open),
                "h": _number(bar.high),
                "l": _number(bar.low),
                "c": _number(bar.close),
                "v": bar.volume,
            }
            for bar in bars
        ]
        return envelope(RetrieveBarErrorCode.Success, bars=wire)


def _plain(outcome: Outcome) -> dict[str, Any]:
    return envelope(outcome.code, outcome.message)


def _optional(body: Mapping[str, Any], name: str, kind: Kind) -> Any:
    value = _lookup(body, name)
    return None if value is None else _coerce(kind, value)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
