"""Pydantic models and enums of the ProjectX Gateway payloads (PROJECTX_API.md §2-§4).

Every payload that crosses the gateway boundary is parsed here and nowhere else. Models are
frozen, ignore unknown fields, keep nullable fields nullable and carry prices as `Decimal`.
Anything that does not fit raises one typed error, :class:`PayloadError`, so a caller can log
and skip a bad event without knowing pydantic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from riskman.core.enums import OrderSide, OrderStatus, OrderType, PositionType, TradeLogType


class PayloadError(ValueError):
    """A gateway payload that cannot be understood (wrong shape, type or value)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


_MAX_PRICE = Decimal("1e12")
_MAX_SIZE = 1_000_000
_MAX_ID = 2**63 - 1


def _to_decimal(value: Any) -> Any:
    """JSON numbers arrive as floats: go through `str` so 0.1 stays 0.1, and refuse NaN/inf."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a price")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            parsed = Decimal(value)
        except InvalidOperation as exc:
            raise ValueError("not a number") from exc
        if not parsed.is_finite():
            raise ValueError("not a finite number")
        return parsed
    return value


def _check_money(value: Decimal) -> Decimal:
    if not value.is_finite() or abs(value) > _MAX_PRICE:
        raise ValueError("out of range")
    return value


_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _to_utc(value: datetime) -> datetime:
    # The gateway sends offsets; a naive timestamp is taken as UTC.
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # Trading-day arithmetic (a day either side, in the exchange's zone) must not overflow,
    # and no real fill is dated outside this range.
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError("timestamp out of range")
    return utc


def _optional_time(value: datetime | None) -> datetime | None:
    """An optional time out of any real range is absent: .NET sends `DateTime.MinValue`
    (0001-01-01) for "not set", and that must not reject an otherwise good event."""
    if value is None:
        return None
    try:
        return _to_utc(value)
    except (ValueError, OverflowError):
        return None


def _decimal_json(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


Money = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    AfterValidator(_check_money),
    PlainSerializer(_decimal_json, when_used="json"),
]
PositiveMoney = Annotated[Money, Field(gt=0)]
Timestamp = Annotated[datetime, AfterValidator(_to_utc)]
OptionalTimestamp = Annotated[datetime | None, AfterValidator(_optional_time)]
Size = Annotated[int, Field(ge=0, le=_MAX_SIZE, strict=False)]
Id = Annotated[int, Field(ge=0, le=_MAX_ID)]


class GatewayModel(BaseModel):
    """Base for payload models: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        str_max_length=512,
    )

    def to_wire(self) -> dict[str, Any]:
        """The payload as the gateway sends it (camelCase keys, JSON numbers)."""
        return self.model_dump(mode="json", by_alias=True)


# --- payloads -------------------------------------------------------------------------------


class Account(GatewayModel):
    id: Id
    name: str = ""
    balance: Money = Decimal(0)
    can_trade: bool = True
    is_visible: bool = True
    simulated: bool | None = None


class Position(GatewayModel):
    id: Id = 0
    account_id: Id
    contract_id: str = Field(min_length=1)
    contract_display_name: str | None = None
    creation_timestamp: OptionalTimestamp = None
    type: PositionType = PositionType.UNDEFINED
    size: Size = 0
    average_price: Money = Decimal(0)

    @property
    def is_closed(self) -> bool:
        """A position event with size 0 means the position closed (whatever `type` says)."""
        return self.size == 0

    @property
    def signed_size(self) -> int:
        return self.size * self.type.sign


class Order(GatewayModel):
    id: Id
    account_id: Id
    contract_id: str = Field(min_length=1)
    symbol_id: str | None = None
    creation_timestamp: OptionalTimestamp = None
    update_timestamp: OptionalTimestamp = None
    status: OrderStatus
    type: OrderType = OrderType.UNKNOWN
    side: OrderSide
    size: Size = 0
    limit_price: Money | None = None
    stop_price: Money | None = None
    fill_volume: Size = 0
    filled_price: Money | None = None
    custom_tag: str | None = None
    trail_distance: int | None = None
    trail_price: Money | None = None
    parent_order_id: Id | None = None
    linked_order_id: Id | None = None


class Trade(GatewayModel):
    """One fill (a half-turn). `profit_and_loss` is set only on closing fills, gross of fees."""

    id: Id
    account_id: Id
    contract_id: str = Field(min_length=1)
    creation_timestamp: Timestamp
    price: Money
    profit_and_loss: Money | None = None
    fees: Money = Decimal(0)
    commissions: Money | None = None
    side: OrderSide
    size: Size
    voided: bool = False
    order_id: Id = 0

    @property
    def is_closing(self) -> bool:
        return self.profit_and_loss is not None

    @property
    def net_pnl(self) -> Decimal:
        """Realized P&L of this fill net of its fees (0 for an opening fill, minus fees)."""
        return (self.profit_and_loss or Decimal(0)) - self.fees


class Quote(GatewayModel):
    symbol: str | None = None
    symbol_name: str | None = None
    last_price: Money | None = None
    best_bid: Money | None = None
    best_ask: Money | None = None
    change: Money | None = None
    change_percent: Money | None = None
    open: Money | None = None
    high: Money | None = None
    low: Money | None = None
    volume: Annotated[int, Field(ge=0)] | None = None
    last_updated: OptionalTimestamp = None
    timestamp: OptionalTimestamp = None


class MarketTrade(GatewayModel):
    symbol_id: str | None = None
    price: Money
    timestamp: OptionalTimestamp = None
    type: TradeLogType | None = None
    volume: Annotated[int, Field(ge=0)] = 0


class Contract(GatewayModel):
    id: str = Field(min_length=1)
    name: str = ""
    description: str = ""
    tick_size: PositiveMoney
    tick_value: PositiveMoney
    active_contract: bool = True
    symbol_id: str = ""


# --- realtime events ------------------------------------------------------------------------

USER_EVENT_MODELS: dict[str, type[GatewayModel]] = {
    "GatewayUserAccount": Account,
    "GatewayUserOrder": Order,
    "GatewayUserPosition": Position,
    "GatewayUserTrade": Trade,
}
MARKET_EVENTS = frozenset({"GatewayQuote", "GatewayTrade", "GatewayDepth"})
LOGOUT_EVENT = "GatewayLogout"

UserPayload: TypeAlias = Account | Order | Position | Trade


def _validate(model: type[GatewayModel], data: Any, what: str) -> Any:
    if not isinstance(data, Mapping):
        raise PayloadError(what, f"expected an object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise PayloadError(what, f"{where}: {first.get('msg', 'invalid')}") from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise PayloadError(what, str(exc) or type(exc).__name__) from None


def unwrap_user_payload(arg: Any) -> Any:
    """TopstepX wraps user events as `{"action": n, "data": {...}}`; the docs show them bare."""
    if isinstance(arg, Mapping) and "data" in arg and "action" in arg:
        return arg["data"]
    return arg


def parse_user_event(name: str, arguments: Any) -> UserPayload:
    """Parse one user-hub event (`GatewayUserOrder`, ...) from its SignalR argument list."""
    model = USER_EVENT_MODELS.get(name)
    if model is None:
        raise PayloadError(name, "unknown user event")
    if isinstance(arguments, Sequence) and not isinstance(arguments, str | bytes):
        if not arguments:
            raise PayloadError(name, "no arguments")
        arg = arguments[0]
    else:
        arg = arguments
    result: UserPayload = _validate(model, unwrap_user_payload(arg), name)
    return result


def parse_quote(arguments: Any) -> tuple[str, Quote]:
    """Parse a `GatewayQuote` event: `(contractId, data)`."""
    contract_id, data = _market_args("GatewayQuote", arguments)
    quote: Quote = _validate(Quote, data, "GatewayQuote")
    return contract_id, quote


def parse_market_trades(arguments: Any) -> tuple[str, list[MarketTrade]]:
    """Parse a `GatewayTrade` event; its payload is one object or an array of them."""
    contract_id, data = _market_args("GatewayTrade", arguments)
    items = data if isinstance(data, list) else [data]
    return contract_id, [_validate(MarketTrade, item, "GatewayTrade") for item in items]


def _market_args(name: str, arguments: Any) -> tuple[str, Any]:
    if not isinstance(arguments, Sequence) or isinstance(arguments, str | bytes):
        raise PayloadError(name, "expected (contractId, data)")
    if len(arguments) < 2:
        raise PayloadError(name, "expected (contractId, data)")
    contract_id, data = arguments[0], arguments[1]
    if not isinstance(contract_id, str) or not contract_id or len(contract_id) > 128:
        raise PayloadError(name, "contractId must be a non-empty string")
    return contract_id, data


def parse_model(model: type[GatewayModel], data: Any, what: str) -> Any:
    """Parse one REST payload object into `model`, raising :class:`PayloadError`."""
    return _validate(model, data, what)


def parse_list(model: type[GatewayModel], data: Any, what: str) -> list[Any]:
    """Parse a REST payload list, raising :class:`PayloadError` on the first bad item."""
    if not isinstance(data, list):
        raise PayloadError(what, f"expected a list, got {type(data).__name__}")
    return [_validate(model, item, what) for item in data]
