"""The simulated broker: accounts, orders, matching, positions, fills and P&L.

Plain synchronous code with no I/O. Every state change is reported through `emit` as a
:class:`UserEvent`, in the order the gateway would stream it; the simulator turns those into
SignalR events. Methods answer with an :class:`Outcome` carrying the endpoint's own error code.

Matching rules (documented so tests can reason about prices):
- market orders fill at once, buys at the ask and sells at the bid;
- a limit order that is marketable when it arrives fills at the ask/bid (price improvement);
  once resting it fills at its limit price as soon as the last trade or the opposite side of
  the quote reaches it;
- stop, stop-limit and trailing-stop orders trigger on the last price; a triggered stop fills
  at the ask/bid, a triggered stop-limit becomes a limit order;
- every order fills in full, in order-id order within a contract.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from riskman.core.enums import OrderSide, OrderStatus, OrderType, PositionType
from riskman.core.models import Account, Order, Position, Trade, UserPayload
from riskman.gateway import codes
from riskman.gateway.codes import (
    CancelOrderErrorCode,
    ClosePositionErrorCode,
    ModifyOrderErrorCode,
    PartialClosePositionErrorCode,
    PlaceOrderErrorCode,
)

from .contracts import ContractSpec
from .market import Market, QuoteState, utc_now

BracketMode = Literal["auto_oco", "position"]

# The gateway prints averages with nine fractional digits.
AVERAGE_QUANTUM = Decimal("0.000000001")
MAX_TRAIL_TICKS = 1000
# Sanity limits, far beyond any real order; they keep payloads inside the models' ranges.
MAX_ORDER_SIZE = 1000
MAX_BRACKET_TICKS = 10_000
MAX_PRICE = Decimal(1_000_000_000)
MAX_TAG_LENGTH = 500
# A trigger can activate a bracket leg that is itself already marketable; the cascade is
# bounded so a pathological book cannot spin forever.
_MAX_MATCH_PASSES = 50

FILL_ORDER = ("order", "trade", "position", "account")
"""How TopstepX streams one fill (PROJECTX_API.md §3): the order update, the trade, the
position update(s), the account (balance) update."""
ORDER_EVENT = "GatewayUserOrder"
POSITION_EVENT = "GatewayUserPosition"
TRADE_EVENT = "GatewayUserTrade"
ACCOUNT_EVENT = "GatewayUserAccount"

# The `action` of the wrapped user events: 1 or 2 on orders and positions (2 once the order is
# done or the position closed), 0 on trades (PROJECTX_API.md §3.3).
ACTION_TRADE = 0
ACTION_UPDATE = 1
ACTION_DONE = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    message: str | None = None
    order_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True, slots=True)
class BracketRequest:
    """`stopLossBracket` / `takeProfitBracket`: a distance in ticks and the leg's order type."""

    ticks: int
    type: int


@dataclass(frozen=True, slots=True)
class UserEvent:
    target: str
    account_id: int
    payload: UserPayload
    action: int


@dataclass(slots=True)
class SimAccount:
    id: int
    name: str
    balance: Decimal
    can_trade: bool = True
    is_visible: bool = True
    simulated: bool = True
    bracket_mode: BracketMode = "auto_oco"
    used_tags: set[str] = field(default_factory=set)

    def model(self) -> Account:
        return Account(
            id=self.id,
            name=self.name,
            balance=self.balance,
            can_trade=self.can_trade,
            is_visible=self.is_visible,
            simulated=self.simulated,
        )


@dataclass(slots=True)
class SimOrder:
    id: int
    account_id: int
    contract: ContractSpec
    type: OrderType
    side: OrderSide
    size: int
    status: OrderStatus
    created: datetime
    updated: datetime
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_ticks: int | None = None
    # Best last price seen since a trailing stop started to trail.
    trail_anchor: Decimal | None = None
    triggered: bool = False
    fill_volume: int = 0
    filled_price: Decimal | None = None
    custom_tag: str | None = None
    parent_id: int | None = None
    # `linkedOrderId` as the gateway reports it: only the take-profit leg names its stop.
    linked_id: int | None = None
    # The other leg of an OCO pair, both ways round.
    oco_id: int | None = None
    # Bracket legs: distance from the entry fill, applied when the entry fills.
    bracket_ticks: int | None = None
    children: list[int] = field(default_factory=list)

    def model(self) -> Order:
        trail_price = (
            self.contract.tick_size * self.trail_ticks if self.trail_ticks is not None else None
        )
        return Order(
            id=self.id,
            account_id=self.account_id,
            contract_id=self.contract.id,
            symbol_id=self.contract.symbol_id,
            creation_timestamp=self.created,
            update_timestamp=self.updated,
            status=self.status,
            type=self.type,
            side=self.side,
            size=self.size,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            fill_volume=self.fill_volume,
            filled_price=self.filled_price,
            custom_tag=self.custom_tag,
            trail_distance=self.trail_ticks,
            trail_price=trail_price,
            parent_order_id=self.parent_id,
            linked_order_id=self.linked_id,
        )


@dataclass(slots=True)
class SimPosition:
    id: int
    account_id: int
    contract: ContractSpec
    size: int  # signed: positive long, negative short
    average_price: Decimal
    created: datetime

    def model(self) -> Position:
        return Position(
            id=self.id,
            account_id=self.account_id,
            contract_id=self.contract.id,
            contract_display_name=self.contract.name,
            creation_timestamp=self.created,
            type=PositionType.LONG if self.size > 0 else PositionType.SHORT,
            size=abs(self.size),
            average_price=self.average_price,
        )

    def closed_model(self) -> Position:
        # A close streams as size 0 with type 0 (Undefined), the id of the position it ends.
        return self.model().model_copy(update={"type": PositionType.UNDEFINED, "size": 0})


class _Rejected(Exception):
    def __init__(self, code: int, message: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Exchange:
    def __init__(
        self,
        market: Market,
        emit: Callable[[UserEvent], None],
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.market = market
        self._emit = emit
        self.fill_order: tuple[str, ...] = FILL_ORDER
        """The order a fill's events go out in (`FILL_ORDER`, TopstepX's, by default); a test
        sets another permutation of "order", "trade", "position", "account"."""
        self._now = now
        self.accounts: dict[int, SimAccount] = {}
        self._orders: dict[int, SimOrder] = {}
        self._orders_by_account: dict[int, list[SimOrder]] = {}
        # Orders that can fill (status Open), per contract, in id order.
        self._working: dict[str, dict[int, SimOrder]] = {cid: {} for cid in market.contracts}
        self._positions: dict[tuple[int, str], SimPosition] = {}
        self._trades: dict[int, list[Trade]] = {}
        self._order_ids = itertools.count(7_000_001)
        self._trade_ids = itertools.count(8_000_001)
        self._position_ids = itertools.count(9_001)

    # --- accounts ---------------------------------------------------------------------------

    def add_account(self, account: SimAccount) -> SimAccount:
        if account.id in self.accounts:
            raise ValueError(f"account {account.id} already exists")
        self.accounts[account.id] = account
        self._orders_by_account[account.id] = []
        self._trades[account.id] = []
        return account

    def set_can_trade(self, account_id: int, value: bool) -> None:
        account = self._account(account_id)
        account.can_trade = value
        self._emit_account(account)

    def set_balance(self, account_id: int, balance: Decimal) -> None:
        account = self._account(account_id)
        account.balance = balance
        self._emit_account(account)

    def _account(self, account_id: int) -> SimAccount:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise KeyError(f"no account {account_id}") from None

    # --- queries ----------------------------------------------------------------------------

    def positions(self, account_id: int) -> list[Position]:
        return [
            p.model()
            for (acct, _), p in self._positions.items()
            if acct == account_id and p.size != 0
        ]

    def position(self, account_id: int, contract_id: str) -> SimPosition | None:
        return self._positions.get((account_id, contract_id))

    def orders(self, account_id: int) -> list[Order]:
        return [o.model() for o in self._orders_by_account.get(account_id, [])]

    def working_orders(self, account_id: int, *, include_suspended: bool = True) -> list[Order]:
        return [
            o.model()
            for o in self._orders_by_account.get(account_id, [])
            if o.status.is_working and (include_suspended or o.status is not OrderStatus.SUSPENDED)
        ]

    def order(self, order_id: int) -> SimOrder | None:
        return self._orders.get(order_id)

    def trades(self, account_id: int) -> list[Trade]:
        return list(self._trades.get(account_id, []))

    # --- order entry ------------------------------------------------------------------------

    def place(
        self,
        account_id: int,
        contract_id: str,
        order_type: int,
        side: int,
        size: int,
        *,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail_price: Decimal | None = None,
        custom_tag: str | None = None,
        stop_loss: BracketRequest | None = None,
        take_profit: BracketRequest | None = None,
    ) -> Outcome:
        account = self.accounts.get(account_id)
        if account is None:
            return Outcome(PlaceOrderErrorCode.AccountNotFound, "Account not found.")
        contract = self.market.contracts.get(contract_id)
        if contract is None:
            return Outcome(PlaceOrderErrorCode.ContractNotFound, "Contract not found.")
        if not account.can_trade:
            return Outcome(PlaceOrderErrorCode.AccountViolation, "Account is not allowed to trade.")
        if contract_id in self.market.halted:
            return Outcome(PlaceOrderErrorCode.OutsideTradingHours, "Market is closed.")
        try:
            kind = OrderType(order_type)
            direction = OrderSide(side)
        except ValueError:
            return _rejected("Invalid order type or side.")
        if kind is OrderType.UNKNOWN:
            return _rejected("Invalid order type or side.")
        if not 0 < size <= MAX_ORDER_SIZE:
            return _rejected("Invalid order size.")
        if custom_tag is not None and len(custom_tag) > MAX_TAG_LENGTH:
            return _rejected("Invalid custom tag.")
        if custom_tag is not None and custom_tag in account.used_tags:
            return _rejected("An order with this custom tag already exists for this account.")
        wants_brackets = stop_loss is not None or take_profit is not None
        if wants_brackets and account.bracket_mode == "position":
            # The gateway still creates (and returns) the order it rejects here.
            order = self._new_order(
                account, contract, kind, direction, size, OrderStatus.REJECTED, custom_tag
            )
            order.limit_price, order.stop_price = limit_price, stop_price
            self._emit_order(order)
            return Outcome(
                PlaceOrderErrorCode.OrderRejected, codes.BRACKETS_NEED_AUTO_OCO, order.id
            )
        try:
            prices = self._entry_prices(
                contract, kind, direction, limit_price, stop_price, trail_price
            )
            legs = _bracket_legs(stop_loss, take_profit)
        except _Rejected as exc:
            return Outcome(exc.code, exc.message)

        order = self._new_order(
            account, contract, kind, direction, size, OrderStatus.OPEN, custom_tag
        )
        order.limit_price, order.stop_price, order.trail_ticks = prices
        if order.trail_ticks is not None:
            order.trail_anchor = self.market.quote(contract_id).last
        children = [
            self._new_child(account, order, leg_type, ticks, suffix)
            for leg_type, ticks, suffix in legs
        ]
        if len(children) == 2:
            stop_leg, target_leg = children
            stop_leg.oco_id, target_leg.oco_id = target_leg.id, stop_leg.id
            target_leg.linked_id = stop_leg.id
        self._emit_order(order)
        for child in children:
            self._emit_order(child)
        self._working[contract_id][order.id] = order
        self._match(contract_id, fresh={order.id})
        return Outcome(PlaceOrderErrorCode.Success, None, order.id)

    def _entry_prices(
        self,
        contract: ContractSpec,
        kind: OrderType,
        side: OrderSide,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        trail_price: Decimal | None,
    ) -> tuple[Decimal | None, Decimal | None, int | None]:
        """(limit, stop, trail ticks) of a new order, or `_Rejected` with a code-2 message."""
        quote = self.market.quote(contract.id)
        reject = PlaceOrderErrorCode.OrderRejected
        if kind is OrderType.MARKET:
            return None, None, None
        if kind is OrderType.JOIN_BID:
            return quote.bid, None, None
        if kind is OrderType.JOIN_ASK:
            return quote.ask, None, None
        if kind is OrderType.TRAILING_STOP:
            return None, *self._trail(contract, quote, side, trail_price, reject, guard=True)
        limit = stop = None
        if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            limit = _checked_price(contract, limit_price, "limit", reject)
        if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
            stop = _checked_price(contract, stop_price, "stop", reject)
            _check_stop_side(side, stop, quote, reject)
        return limit, stop, None

    def _trail(
        self,
        contract: ContractSpec,
        quote: QuoteState,
        side: OrderSide,
        trail_price: Decimal | None,
        reject: int,
        *,
        guard: bool,
    ) -> tuple[Decimal, int]:
        """(current stop, distance in ticks) from an absolute `trailPrice` (API §2.5)."""
        if trail_price is None:
            raise _Rejected(reject, codes.TRAIL_DISTANCE_NOT_SET)
        if not 0 < trail_price <= MAX_PRICE:
            raise _Rejected(reject, "Invalid trail price.")
        if not contract.is_aligned(trail_price):
            raise _Rejected(reject, codes.TRAIL_PRICE_NOT_ALIGNED)
        ticks = abs(contract.ticks_between(trail_price, quote.last))
        if ticks == 0:
            raise _Rejected(reject, codes.TRAIL_DISTANCE_NOT_SET)
        # Only place guards the distance; modify has no such limit.
        if guard and ticks > MAX_TRAIL_TICKS:
            raise _Rejected(reject, codes.TRAIL_DISTANCE_TOO_LARGE)
        return _trail_stop(contract, side, quote.last, ticks), ticks

    def _new_order(
        self,
        account: SimAccount,
        contract: ContractSpec,
        kind: OrderType,
        side: OrderSide,
        size: int,
        status: OrderStatus,
        custom_tag: str | None,
    ) -> SimOrder:
        now = self._now()
        order = SimOrder(
            id=next(self._order_ids),
            account_id=account.id,
            contract=contract,
            type=kind,
            side=side,
            size=size,
            status=status,
            created=now,
            updated=now,
            custom_tag=custom_tag,
        )
        if custom_tag is not None:
            account.used_tags.add(custom_tag)
        self._orders[order.id] = order
        self._orders_by_account[account.id].append(order)
        return order

    def _new_child(
        self, account: SimAccount, parent: SimOrder, kind: OrderType, ticks: int, suffix: str
    ) -> SimOrder:
        tag = f"{parent.custom_tag}-{suffix}" if parent.custom_tag is not None else None
        child = self._new_order(
            account,
            parent.contract,
            kind,
            OrderSide.ASK if parent.side is OrderSide.BID else OrderSide.BID,
            parent.size,
            OrderStatus.SUSPENDED,
            tag,
        )
        child.parent_id = parent.id
        child.bracket_ticks = ticks
        parent.children.append(child.id)
        return child

    # --- cancel / modify --------------------------------------------------------------------

    def cancel(self, account_id: int, order_id: int) -> Outcome:
        if account_id not in self.accounts:
            return Outcome(CancelOrderErrorCode.AccountNotFound, "Account not found.")
        order = self._orders.get(order_id)
        if order is None or order.account_id != account_id or not order.status.is_working:
            return Outcome(CancelOrderErrorCode.OrderNotFound, "Order not found.")
        self._cancel(order)
        return Outcome(CancelOrderErrorCode.Success)

    def _cancel(self, order: SimOrder) -> None:
        self._finish(order, OrderStatus.CANCELLED)
        # An entry that never filled takes its suspended legs with it.
        for child_id in order.children:
            child = self._orders[child_id]
            if child.status is OrderStatus.SUSPENDED:
                self._finish(child, OrderStatus.CANCELLED)
        if order.oco_id is not None:
            self._orders[order.oco_id].oco_id = None

    def _finish(self, order: SimOrder, status: OrderStatus) -> None:
        order.status = status
        order.updated = self._now()
        self._working[order.contract.id].pop(order.id, None)
        self._emit_order(order)

    def modify(
        self,
        account_id: int,
        order_id: int,
        *,
        size: int | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        trail_price: Decimal | None = None,
    ) -> Outcome:
        """Change a working order; omitted fields stay as they are."""
        if account_id not in self.accounts:
            return Outcome(ModifyOrderErrorCode.AccountNotFound, "Account not found.")
        order = self._orders.get(order_id)
        if order is None or order.account_id != account_id or not order.status.is_working:
            return Outcome(ModifyOrderErrorCode.OrderNotFound, "Order not found.")
        if order.status is OrderStatus.SUSPENDED:
            return Outcome(
                ModifyOrderErrorCode.Rejected, "A suspended bracket order cannot be modified."
            )
        contract = order.contract
        quote = self.market.quote(contract.id)
        reject = ModifyOrderErrorCode.Rejected
        try:
            if size is not None and not 0 < size <= MAX_ORDER_SIZE:
                raise _Rejected(reject, "Invalid order size.")
            uses_limit = order.type in (
                OrderType.LIMIT,
                OrderType.STOP_LIMIT,
                OrderType.JOIN_BID,
                OrderType.JOIN_ASK,
            )
            if limit_price is not None and not uses_limit:
                raise _Rejected(reject, "This order type has no limit price.")
            if stop_price is not None and order.type not in (OrderType.STOP, OrderType.STOP_LIMIT):
                raise _Rejected(reject, "This order type has no stop price.")
            if trail_price is not None and order.type is not OrderType.TRAILING_STOP:
                raise _Rejected(reject, "This order type has no trail price.")
            new_limit = (
                _checked_price(contract, limit_price, "limit", reject)
                if limit_price is not None
                else order.limit_price
            )
            new_stop = order.stop_price
            new_ticks = order.trail_ticks
            if stop_price is not None:
                new_stop = _checked_price(contract, stop_price, "stop", reject)
                if not order.triggered:
                    _check_stop_side(order.side, new_stop, quote, reject)
            if trail_price is not None:
                new_stop, new_ticks = self._trail(
                    contract, quote, order.side, trail_price, reject, guard=False
                )
        except _Rejected as exc:
            return Outcome(exc.code, exc.message)
        if size is not None:
            order.size = size
        order.limit_price, order.stop_price, order.trail_ticks = new_limit, new_stop, new_ticks
        if trail_price is not None:
            order.trail_anchor = quote.last
        order.updated = self._now()
        self._emit_order(order)
        self._match(contract.id, fresh={order.id})
        return Outcome(ModifyOrderErrorCode.Success)

    # --- position closes --------------------------------------------------------------------

    def close_contract(self, account_id: int, contract_id: str) -> Outcome:
        """Flatten one position at market. Resting stops and targets are left alone, as the
        gateway does."""
        account = self.accounts.get(account_id)
        if account is None:
            return Outcome(ClosePositionErrorCode.AccountNotFound, "Account not found.")
        if contract_id not in self.market.contracts:
            return Outcome(ClosePositionErrorCode.ContractNotFound, "Contract not found.")
        position = self._positions.get((account_id, contract_id))
        if position is None:
            return Outcome(ClosePositionErrorCode.PositionNotFound, "Position not found.")
        if contract_id in self.market.halted:
            return Outcome(ClosePositionErrorCode.OrderRejected, None)
        self._close(account, position, abs(position.size))
        return Outcome(ClosePositionErrorCode.Success)

    def partial_close(self, account_id: int, contract_id: str, size: int) -> Outcome:
        account = self.accounts.get(account_id)
        if account is None:
            return Outcome(PartialClosePositionErrorCode.AccountNotFound, "Account not found.")
        if contract_id not in self.market.contracts:
            return Outcome(PartialClosePositionErrorCode.ContractNotFound, "Contract not found.")
        position = self._positions.get((account_id, contract_id))
        if position is None:
            return Outcome(PartialClosePositionErrorCode.PositionNotFound, "Position not found.")
        if size <= 0 or size > abs(position.size):
            return Outcome(PartialClosePositionErrorCode.InvalidCloseSize, "Invalid close size.")
        if contract_id in self.market.halted:
            # Documented: market closed or no price, and no message either way.
            return Outcome(PartialClosePositionErrorCode.OrderRejected, None)
        self._close(account, position, size)
        return Outcome(PartialClosePositionErrorCode.Success)

    def _close(self, account: SimAccount, position: SimPosition, size: int) -> None:
        side = OrderSide.ASK if position.size > 0 else OrderSide.BID
        order = self._new_order(
            account, position.contract, OrderType.MARKET, side, size, OrderStatus.OPEN, None
        )
        self._emit_order(order)
        self._working[position.contract.id][order.id] = order
        self._match(position.contract.id, fresh={order.id})

    # --- matching ---------------------------------------------------------------------------

    def on_quote(self, contract_id: str) -> None:
        """The market moved: trail, trigger and fill whatever the new quote reaches."""
        self._match(contract_id, fresh=set())

    def _match(self, contract_id: str, fresh: set[int]) -> None:
        if contract_id in self.market.halted:
            return
        working = self._working[contract_id]
        quote = self.market.quote(contract_id)
        for _ in range(_MAX_MATCH_PASSES):
            filled = False
            for order in list(working.values()):
                if order.status is not OrderStatus.OPEN:
                    continue
                price = self._fill_price(order, quote, order.id in fresh)
                if price is not None:
                    fresh |= self._fill(order, price)
                    filled = True
            if not filled:
                return

    def _fill_price(self, order: SimOrder, quote: QuoteState, fresh: bool) -> Decimal | None:
        """The price `order` fills at on this quote, or None if it does not fill (yet)."""
        buy = order.side is OrderSide.BID
        market_price = quote.ask if buy else quote.bid
        kind = order.type
        if kind is OrderType.MARKET:
            return market_price
        if kind is OrderType.TRAILING_STOP:
            self._trail_update(order, quote.last)
        if kind in (OrderType.STOP, OrderType.TRAILING_STOP):
            return market_price if _stop_hit(order, quote.last) else None
        if kind is OrderType.STOP_LIMIT and not order.triggered:
            if not _stop_hit(order, quote.last):
                return None
            order.triggered = True
            # From now on it is a new limit order: marketable means the market price.
            fresh = True
        limit = order.limit_price
        if limit is None:
            return None
        if fresh:
            if buy and quote.ask <= limit:
                return quote.ask
            if not buy and quote.bid >= limit:
                return quote.bid
            return None
        if buy and min(quote.last, quote.ask) <= limit:
            return limit
        if not buy and max(quote.last, quote.bid) >= limit:
            return limit
        return None

    def _trail_update(self, order: SimOrder, last: Decimal) -> None:
        assert order.trail_ticks is not None
        anchor = order.trail_anchor if order.trail_anchor is not None else last
        # A sell stop trails the highest price, a buy stop the lowest.
        anchor = max(anchor, last) if order.side is OrderSide.ASK else min(anchor, last)
        order.trail_anchor = anchor
        stop = _trail_stop(order.contract, order.side, anchor, order.trail_ticks)
        if stop != order.stop_price:
            order.stop_price = stop
            order.updated = self._now()
            self._emit_order(order)

    def _fill(self, order: SimOrder, price: Decimal) -> set[int]:
        """Fill `order` in full at `price`; returns the ids of legs this fill activated.

        Its events go out in `fill_order` (the gateway's: order, trade, position, account).
        """
        if self.fill_order == FILL_ORDER:
            return self._fill_now(order, price)
        emit = self._emit
        held: list[UserEvent] = []
        self._emit = held.append
        try:
            activated = self._fill_now(order, price)
        finally:
            self._emit = emit
        kinds = {ORDER_EVENT: "order", TRADE_EVENT: "trade", POSITION_EVENT: "position"}
        rank = {kind: index for index, kind in enumerate(self.fill_order)}
        for event in sorted(held, key=lambda e: rank.get(kinds.get(e.target, "account"), 9)):
            emit(event)
        return activated

    def _fill_now(self, order: SimOrder, price: Decimal) -> set[int]:
        order.fill_volume = order.size
        order.filled_price = price
        self._finish(order, OrderStatus.FILLED)
        self._book(order, price)
        activated: set[int] = set()
        for child_id in order.children:
            child = self._orders[child_id]
            if child.status is OrderStatus.SUSPENDED:
                self._activate(child, price)
                activated.add(child.id)
        if order.oco_id is not None:
            other = self._orders[order.oco_id]
            other.oco_id = None
            if other.status.is_working:
                self._finish(other, OrderStatus.CANCELLED)
        return activated

    def _activate(self, leg: SimOrder, entry_fill: Decimal) -> None:
        """Give a suspended bracket leg its prices from the entry fill and start working it."""
        assert leg.bracket_ticks is not None
        contract = leg.contract
        # The leg's side is the opposite of the entry: a sell leg protects a long.
        away = -1 if leg.side is OrderSide.ASK else 1
        ticks = leg.bracket_ticks
        if leg.type is OrderType.LIMIT:
            leg.limit_price = contract.offset(entry_fill, -away * ticks)
        elif leg.type is OrderType.TRAILING_STOP:
            leg.trail_ticks = ticks
            leg.trail_anchor = entry_fill
            leg.stop_price = contract.offset(entry_fill, away * ticks)
        else:
            leg.stop_price = contract.offset(entry_fill, away * ticks)
        leg.status = OrderStatus.OPEN
        leg.updated = self._now()
        self._working[contract.id][leg.id] = leg
        self._emit_order(leg)

    def _book(self, order: SimOrder, price: Decimal) -> None:
        """Record the fill: position, trade with realised P&L and fees, balance."""
        account = self.accounts[order.account_id]
        contract = order.contract
        key = (account.id, contract.id)
        now = self._now()
        delta = order.side.sign * order.size
        position = self._positions.get(key)
        pnl: Decimal | None = None
        updates: list[Position] = []
        if position is None:
            position = self._open_position(account.id, contract, delta, price, now)
            updates.append(position.model())
        elif (position.size > 0) == (delta > 0):
            held = abs(position.size)
            total = held + order.size
            average = (position.average_price * held + price * order.size) / total
            position.average_price = average.quantize(AVERAGE_QUANTUM)
            position.size += delta
            updates.append(position.model())
        else:
            closed = min(abs(position.size), order.size)
            direction = 1 if position.size > 0 else -1
            pnl = contract.pnl(position.average_price, price, closed * direction)
            remaining = position.size + delta
            if remaining == 0 or (remaining > 0) != (position.size > 0):
                del self._positions[key]
                updates.append(position.closed_model())
                if remaining != 0:
                    # The fill crossed zero: the rest opens a new position the other way.
                    reversed_position = self._open_position(
                        account.id, contract, remaining, price, now
                    )
                    updates.append(reversed_position.model())
            else:
                position.size = remaining
                updates.append(position.model())
        fees = contract.fee * order.size
        trade = Trade(
            id=next(self._trade_ids),
            account_id=account.id,
            contract_id=contract.id,
            creation_timestamp=now,
            price=price,
            profit_and_loss=pnl,
            fees=fees,
            side=order.side,
            size=order.size,
            voided=False,
            order_id=order.id,
        )
        self._trades[account.id].append(trade)
        account.balance += (pnl if pnl is not None else Decimal(0)) - fees
        self._emit(UserEvent(TRADE_EVENT, account.id, trade, ACTION_TRADE))
        for update in updates:
            action = ACTION_DONE if update.size == 0 else ACTION_UPDATE
            self._emit(UserEvent(POSITION_EVENT, account.id, update, action))
        self._emit_account(account)

    def _open_position(
        self, account_id: int, contract: ContractSpec, size: int, price: Decimal, now: datetime
    ) -> SimPosition:
        position = SimPosition(
            id=next(self._position_ids),
            account_id=account_id,
            contract=contract,
            size=size,
            average_price=price,
            created=now,
        )
        self._positions[(account_id, contract.id)] = position
        return position

    # --- events -----------------------------------------------------------------------------

    def _emit_order(self, order: SimOrder) -> None:
        action = ACTION_DONE if order.status.is_terminal else ACTION_UPDATE
        self._emit(UserEvent(ORDER_EVENT, order.account_id, order.model(), action))

    def _emit_account(self, account: SimAccount) -> None:
        self._emit(UserEvent(ACCOUNT_EVENT, account.id, account.model(), ACTION_UPDATE))


def _rejected(message: str) -> Outcome:
    return Outcome(PlaceOrderErrorCode.OrderRejected, message)


def _checked_price(contract: ContractSpec, price: Decimal | None, what: str, code: int) -> Decimal:
    if price is None:
        raise _Rejected(code, f"Invalid {what} price. Price is not set.")
    if not 0 < price <= MAX_PRICE:
        raise _Rejected(code, f"Invalid {what} price. Price is out of range.")
    if not contract.is_aligned(price):
        raise _Rejected(code, f"Invalid {what} price. Price is not aligned to tick size.")
    return price


def _check_stop_side(side: OrderSide, stop: Decimal, quote: QuoteState, code: int) -> None:
    # A stop already through the market would trigger on arrival; the exchange refuses it.
    if side is OrderSide.BID and stop <= quote.last:
        raise _Rejected(code, "Invalid stop price. A buy stop must be above the last price.")
    if side is OrderSide.ASK and stop >= quote.last:
        raise _Rejected(code, "Invalid stop price. A sell stop must be below the last price.")


def _stop_hit(order: SimOrder, last: Decimal) -> bool:
    stop = order.stop_price
    if stop is None:
        return False
    return last >= stop if order.side is OrderSide.BID else last <= stop


def _trail_stop(contract: ContractSpec, side: OrderSide, anchor: Decimal, ticks: int) -> Decimal:
    return contract.offset(anchor, ticks if side is OrderSide.BID else -ticks)


_STOP_LEG_TYPES = frozenset({OrderType.STOP, OrderType.TRAILING_STOP})


def _bracket_legs(
    stop_loss: BracketRequest | None, take_profit: BracketRequest | None
) -> list[tuple[OrderType, int, str]]:
    """(leg type, distance in ticks, tag suffix) for each requested leg, stop first.

    Ticks may be signed (long: SL negative, TP positive) or not; the side decides direction.
    """
    legs: list[tuple[OrderType, int, str]] = []
    reject = PlaceOrderErrorCode.OrderRejected
    if stop_loss is not None:
        if not 0 < abs(stop_loss.ticks) <= MAX_BRACKET_TICKS:
            raise _Rejected(reject, "Invalid stop loss bracket ticks.")
        try:
            kind = OrderType(stop_loss.type)
        except ValueError:
            kind = OrderType.UNKNOWN
        if kind not in _STOP_LEG_TYPES:
            raise _Rejected(reject, "Invalid stop loss bracket type.")
        legs.append((kind, abs(stop_loss.ticks), "SL"))
    if take_profit is not None:
        if not 0 < abs(take_profit.ticks) <= MAX_BRACKET_TICKS:
            raise _Rejected(reject, "Invalid take profit bracket ticks.")
        if take_profit.type != OrderType.LIMIT:
            raise _Rejected(reject, "Invalid take profit bracket type.")
        legs.append((OrderType.LIMIT, abs(take_profit.ticks), "TP"))
    return legs
