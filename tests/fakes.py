"""Test doubles at the engine's gateway boundary (unit tests only; e2e tests use the simulator).

`FakeGateway` implements `GatewayPort`: it records every call, keeps a tiny account model
(positions and orders) and, when connected to a sink, answers a close like the real gateway
does: the fill's trade, then the position event (size 0 when closed), arrive on the stream
afterwards (at a price of the position's average: a realized P&L of 0).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from riskman.core.enums import OrderSide, OrderStatus, OrderType, PositionType
from riskman.core.models import Account, Contract, Order, Position, Quote, Trade
from riskman.core.ports import OrderEvent, PositionEvent, TradeEvent
from riskman.gateway.errors import GatewayError, NotFound

T0 = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)

CONTRACTS = {
    "CON.F.US.MNQ.Z26": ("F.US.MNQ", "0.25", "0.50"),
    "CON.F.US.ENQ.Z26": ("F.US.ENQ", "0.25", "5.00"),
    "CON.F.US.EP.Z26": ("F.US.EP", "0.25", "12.50"),
    "CON.F.US.MES.Z26": ("F.US.MES", "0.25", "1.25"),
    "CON.F.US.RTY.Z26": ("F.US.RTY", "0.10", "5.00"),
    "CON.F.US.CLE.F27": ("F.US.CLE", "0.01", "10.00"),
    "CON.F.US.MNQ.H27": ("F.US.MNQ", "0.25", "0.50"),
}
MNQ = "CON.F.US.MNQ.Z26"
ES = "CON.F.US.EP.Z26"
MES = "CON.F.US.MES.Z26"
NQ = "CON.F.US.ENQ.Z26"
RTY = "CON.F.US.RTY.Z26"


def contract(contract_id: str) -> Contract:
    symbol, tick_size, tick_value = CONTRACTS[contract_id]
    return Contract(
        id=contract_id,
        name=contract_id.split(".")[3] + contract_id.split(".")[4],
        tick_size=Decimal(tick_size),
        tick_value=Decimal(tick_value),
        symbol_id=symbol,
    )


def position(
    account_id: int,
    contract_id: str,
    size: int,
    avg: str = "21000",
    *,
    short: bool = False,
    opened: datetime | None = None,
    position_id: int = 1,
) -> Position:
    return Position(
        id=position_id,
        account_id=account_id,
        contract_id=contract_id,
        creation_timestamp=opened or T0,
        type=PositionType.UNDEFINED
        if size == 0
        else (PositionType.SHORT if short else PositionType.LONG),
        size=size,
        average_price=Decimal(avg),
    )


_ids = itertools.count(1000)


def trade(
    account_id: int,
    *,
    pnl: str | None,
    fees: str = "0",
    at: datetime = T0,
    contract_id: str = MNQ,
    trade_id: int | None = None,
    order_id: int | None = None,
    voided: bool = False,
    size: int = 1,
    side: OrderSide = OrderSide.ASK,
) -> Trade:
    tid = trade_id if trade_id is not None else next(_ids)
    return Trade(
        id=tid,
        account_id=account_id,
        contract_id=contract_id,
        creation_timestamp=at,
        price=Decimal("21000"),
        profit_and_loss=None if pnl is None else Decimal(pnl),
        fees=Decimal(fees),
        side=side,
        size=size,
        voided=voided,
        order_id=order_id if order_id is not None else tid,
    )


def order(
    account_id: int,
    order_id: int,
    contract_id: str = MNQ,
    *,
    side: OrderSide = OrderSide.ASK,
    order_type: OrderType = OrderType.STOP,
    size: int = 1,
    status: OrderStatus = OrderStatus.OPEN,
    stop: str | None = "20950",
    limit: str | None = None,
) -> Order:
    return Order(
        id=order_id,
        account_id=account_id,
        contract_id=contract_id,
        creation_timestamp=T0,
        status=status,
        type=order_type,
        side=side,
        size=size,
        stop_price=None if stop is None else Decimal(stop),
        limit_price=None if limit is None else Decimal(limit),
    )


def quote(last: str, bid: str | None = None, ask: str | None = None) -> Quote:
    return Quote(
        last_price=Decimal(last),
        best_bid=Decimal(bid) if bid else None,
        best_ask=Decimal(ask) if ask else None,
    )


def account(account_id: int, balance: str = "50000", can_trade: bool = True) -> Account:
    return Account(
        id=account_id, name=f"ACC-{account_id}", balance=Decimal(balance), can_trade=can_trade
    )


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


class FakeGateway:
    """Records calls; optionally acts like the gateway (position events after a close)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.positions: dict[int, dict[str, Position]] = {}
        self.orders: dict[int, dict[int, Order]] = {}
        self.trades: dict[int, list[Trade]] = {}
        self.accounts: dict[int, Account] = {}
        self.errors: dict[str, list[BaseException]] = {}
        self.sink: Callable[[Any], None] | None = None
        """When set, mutations emit the gateway's stream events into it."""
        self.called = asyncio.Event()
        self.hold: dict[str, asyncio.Event] = {}

    # --- helpers for tests ---------------------------------------------------------------

    def set_position(self, pos: Position) -> None:
        if pos.size == 0:
            self.positions.get(pos.account_id, {}).pop(pos.contract_id, None)
        else:
            self.positions.setdefault(pos.account_id, {})[pos.contract_id] = pos

    def fail_next(self, method: str, *errors: BaseException) -> None:
        self.errors.setdefault(method, []).extend(errors)

    def named(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_call(self, method: str, count: int = 1, timeout: float = 2.0) -> list[Call]:
        async with asyncio.timeout(timeout):
            while len(self.named(method)) < count:
                self.called.clear()
                await self.called.wait()
        return self.named(method)

    async def _enter(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(Call(method, args, kwargs))
        self.called.set()
        gate = self.hold.get(method)
        if gate is not None:
            await gate.wait()
        errors = self.errors.get(method)
        if errors:
            raise errors.pop(0)

    def _emit(self, event: Any) -> None:
        if self.sink is not None:
            self.sink(event)

    def _emit_fill(self, pos: Position, size: int) -> None:
        """The trade of a close of `size` contracts of `pos`, as the gateway streams it."""
        if self.sink is None:
            return
        fill_id = next(_ids)
        self._emit(
            TradeEvent(
                Trade(
                    id=fill_id,
                    account_id=pos.account_id,
                    contract_id=pos.contract_id,
                    creation_timestamp=pos.creation_timestamp or T0,
                    price=pos.average_price,
                    profit_and_loss=Decimal(0),
                    side=OrderSide.ASK if pos.type is PositionType.LONG else OrderSide.BID,
                    size=size,
                    order_id=fill_id,
                )
            )
        )

    # --- GatewayPort ---------------------------------------------------------------------

    async def close_contract(self, account_id: int, contract_id: str) -> None:
        await self._enter("close_contract", account_id, contract_id)
        pos = self.positions.get(account_id, {}).pop(contract_id, None)
        if pos is None:
            raise NotFound("Position/closeContract", "", code=2, code_name="PositionNotFound")
        self._emit_fill(pos, pos.size)
        self._emit(
            PositionEvent(pos.model_copy(update={"size": 0, "type": PositionType.UNDEFINED}))
        )

    async def partial_close_contract(self, account_id: int, contract_id: str, size: int) -> None:
        await self._enter("partial_close_contract", account_id, contract_id, size)
        pos = self.positions.get(account_id, {}).get(contract_id)
        if pos is None:
            raise NotFound(
                "Position/partialCloseContract", "", code=2, code_name="PositionNotFound"
            )
        if size > pos.size or size <= 0:
            raise GatewayError("Position/partialCloseContract", "InvalidCloseSize", code=5)
        new = pos.model_copy(update={"size": pos.size - size})
        self.set_position(new)
        self._emit_fill(pos, size)
        self._emit(PositionEvent(new))

    async def cancel_order(self, account_id: int, order_id: int) -> None:
        await self._enter("cancel_order", account_id, order_id)
        found = self.orders.get(account_id, {}).pop(order_id, None)
        if found is None:
            raise NotFound("Order/cancel", "", code=2, code_name="OrderNotFound")
        self._emit(OrderEvent(found.model_copy(update={"status": OrderStatus.CANCELLED})))

    async def modify_order(self, account_id: int, order_id: int, **kwargs: Any) -> None:
        await self._enter("modify_order", account_id, order_id, **kwargs)

    async def place_order(
        self,
        account_id: int,
        contract_id: str,
        order_type: OrderType,
        side: OrderSide,
        size: int,
        **kwargs: Any,
    ) -> int:
        await self._enter("place_order", account_id, contract_id, order_type, side, size, **kwargs)
        return next(_ids)

    async def search_accounts(self, only_active: bool = True) -> list[Account]:
        await self._enter("search_accounts", only_active)
        return list(self.accounts.values())

    async def search_open_positions(
        self, account_id: int, *, urgent: bool = False
    ) -> list[Position]:
        await self._enter("search_open_positions", account_id)
        return list(self.positions.get(account_id, {}).values())

    async def search_open_orders(self, account_id: int, *, urgent: bool = False) -> list[Order]:
        await self._enter("search_open_orders", account_id)
        return list(self.orders.get(account_id, {}).values())

    async def search_orders(
        self, account_id: int, start: datetime, end: datetime | None = None
    ) -> list[Order]:
        await self._enter("search_orders", account_id, start)
        return []

    async def search_trades(
        self, account_id: int, start: datetime, end: datetime | None = None
    ) -> list[Trade]:
        await self._enter("search_trades", account_id, start)
        return [t for t in self.trades.get(account_id, []) if t.creation_timestamp >= start]

    async def get_contract(self, contract_id: str) -> Contract:
        await self._enter("get_contract", contract_id)
        if contract_id not in CONTRACTS:
            raise NotFound("Contract/searchById", "", code=1, code_name="ContractNotFound")
        return contract(contract_id)


async def settle(engine: Any) -> None:
    """Let the engine finish what an event started: routed events, actions, stored writes."""
    for _ in range(5):
        await engine.actions.wait_idle()
        await engine.drain()
        if not engine.actions.in_flight():
            return


async def open_position(engine: Any, gateway: FakeGateway, pos: Position) -> None:
    """The trader's position at the broker, as riskman reads it over REST (the truth).

    A stream position update would wait for the fill that explains it (the trade, see
    `riskman.engine.fills`); a test that sends the fills too uses `PositionEvent` directly.
    """
    from riskman.engine.router import PositionsSnapshot

    gateway.set_position(pos)
    held = tuple(gateway.positions.get(pos.account_id, {}).values())
    await engine.process(PositionsSnapshot(pos.account_id, held, engine.clock.monotonic()))


async def send_quote(engine: Any, contract_id: str, q: Quote) -> None:
    from riskman.core.ports import QuoteEvent

    await engine.process(QuoteEvent(contract_id, q))
