"""The engine's boundary with the gateway: what it calls, and what it is fed.

The engine knows no URL, JSON key or transport. `riskman.gateway` implements `GatewayPort`
over REST and feeds events (parsed payload models) into an `EventSink` (the engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from riskman.core.enums import OrderSide, OrderType
from riskman.core.models import Account, Contract, Order, Position, Quote, Trade
from riskman.core.views import FeedHealth

# --- events fed to the engine ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountEvent:
    account: Account
    received: float = 0.0
    """`Clock.monotonic()` when the event reached riskman (for event-lag figures)."""


@dataclass(frozen=True, slots=True)
class OrderEvent:
    order: Order
    received: float = 0.0


@dataclass(frozen=True, slots=True)
class PositionEvent:
    position: Position
    received: float = 0.0


@dataclass(frozen=True, slots=True)
class TradeEvent:
    trade: Trade
    received: float = 0.0


@dataclass(frozen=True, slots=True)
class QuoteEvent:
    contract_id: str
    quote: Quote
    received: float = 0.0
    source: Literal["hub", "rest"] = "hub"
    """"rest": a last price read over REST because the hub's quotes stopped (no bid/ask)."""


GatewayEvent = AccountEvent | OrderEvent | PositionEvent | TradeEvent | QuoteEvent


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The gateway's REST view of one account, read after a (re)connect or while stale.

    `positions` and `orders` are complete (every open position, every working order that
    `Order/searchOpen` shows, which excludes suspended bracket children); `trades` are the
    fills of the current trading day. `trades` is None when only positions/orders were read.
    """

    account: Account
    positions: Sequence[Position]
    orders: Sequence[Order]
    trades: Sequence[Trade] | None = None
    requested: float = 0.0
    """`Clock.monotonic()` when the REST reads were sent."""


class EventSink(Protocol):
    """What the gateway feed pushes into (the engine). Called on the event loop's thread."""

    def submit(self, event: GatewayEvent) -> None:
        """Queue one parsed event for the router (never blocks)."""
        ...

    async def reconcile(self, snapshot: AccountSnapshot) -> None:
        """Queue the REST truth for one account; differences go through the router."""
        ...

    def feed_health(self, health: FeedHealth) -> None: ...

    def trading_day_start(self) -> datetime:
        """Start of the current trading day (UTC)."""
        ...

    def fills_since(self) -> datetime:
        """Where `Trade/search` reads fills from after a (re)connect (UTC): the previous
        trading day's start, so fills made while riskman was down across a reset count."""
        ...

    def quote_contracts(self) -> frozenset[str]:
        """Contracts whose quotes the engine needs (every contract with a position)."""
        ...


class QuoteSubscriptions(Protocol):
    """The market side of the feed: the engine says which contracts it needs quotes for."""

    def want_quotes(self, contract_ids: frozenset[str]) -> None: ...


# --- what the engine calls ------------------------------------------------------------------


class GatewayPort(Protocol):
    """The gateway operations the engine uses. Implemented for real by `riskman.gateway.rest`.

    Failures raise `riskman.gateway.errors` types: `NotFound` (e.g. closing a flat position),
    `OutcomeUnknown` (a mutation timed out: re-read, then decide), `RateLimited`,
    `GatewayUnavailable`, `GatewayRejected`. Mutations are never retried by the client.
    """

    async def close_contract(self, account_id: int, contract_id: str) -> None: ...

    async def partial_close_contract(
        self, account_id: int, contract_id: str, size: int
    ) -> None: ...

    async def cancel_order(self, account_id: int, order_id: int) -> None: ...

    async def modify_order(
        self,
        account_id: int,
        order_id: int,
        *,
        size: int | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail_price: Decimal | None = None,
    ) -> None: ...

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
    ) -> int: ...

    async def search_accounts(self, only_active: bool = True) -> list[Account]: ...

    async def search_open_positions(
        self, account_id: int, *, urgent: bool = False
    ) -> list[Position]: ...

    async def search_open_orders(self, account_id: int, *, urgent: bool = False) -> list[Order]: ...

    async def search_orders(
        self, account_id: int, start: datetime, end: datetime | None = None
    ) -> list[Order]: ...

    async def search_trades(
        self, account_id: int, start: datetime, end: datetime | None = None
    ) -> list[Trade]: ...

    async def get_contract(self, contract_id: str) -> Contract: ...
