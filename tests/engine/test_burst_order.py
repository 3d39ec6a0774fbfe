"""A fill's burst is routed so that what can breach goes first (issue 16): its position update,
then its trade, overtake the order updates queued before them, and a dispatched close reaches
the gateway before the rest of the event and of the burst is routed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from riskman.core.enums import OrderSide, OrderStatus, OrderType
from riskman.core.ports import AccountEvent, OrderEvent, PositionEvent, TradeEvent
from riskman.engine.engine import BurstQueue
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, FakeGateway, account, order, position, trade

ACC = 7


def test_trades_and_positions_overtake_only_the_order_updates_before_them() -> None:
    o1, o2 = (OrderEvent(order(ACC, n, status=OrderStatus.FILLED)) for n in (1, 2))
    o3 = OrderEvent(order(ACC, 3))  # working, but of another contract than t2's
    t1 = TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID))
    p1 = PositionEvent(position(ACC, MNQ, 1))
    a1 = AccountEvent(account(ACC))
    t2 = TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID, contract_id=ES))
    queue = BurstQueue()
    for event in (o1, o2, t1, p1, a1, o3, t2):
        queue.put_nowait(event)
    routed = [queue.get_nowait() for _ in range(queue.qsize())]
    # The position update goes before its own trade; nothing goes past the account update.
    assert routed == [p1, t1, o1, o2, a1, t2, o3]


def test_a_position_update_overtakes_only_its_own_trade() -> None:
    t_mnq = TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID))
    t_es = TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID, contract_id=ES))
    p_es = PositionEvent(position(ACC, ES, 1, "5000"))
    t_mnq2 = TradeEvent(trade(ACC, pnl="5", side=OrderSide.ASK))
    p_mnq = PositionEvent(position(ACC, MNQ, 0))
    queue = BurstQueue()
    for event in (t_mnq, t_es, p_es, t_mnq2, p_mnq):
        queue.put_nowait(event)
    routed = [queue.get_nowait() for _ in range(queue.qsize())]
    # ES's update does not pass MNQ's trade; MNQ's last update passes only its own trade.
    assert routed == [t_mnq, p_es, t_es, p_mnq, t_mnq2]


def test_with_nothing_to_overtake_it_is_first_in_first_out() -> None:
    events: list[Any] = [
        AccountEvent(account(ACC)),
        OrderEvent(order(ACC, 1)),
        AccountEvent(account(ACC, "49000")),
        TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID)),
    ]
    queue = BurstQueue()
    for event in events:
        queue.put_nowait(event)
    assert [queue.get_nowait() for _ in range(4)] == events


async def test_the_close_goes_out_before_the_rest_of_the_fills_burst_is_routed(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(
        {"max_contracts": {"enabled": True, "limit": 1, "action": "reduce_to_limit"}},
        accounts=[ACC],
    )
    await engine.process(AccountEvent(account(ACC, "50000")))
    entry = order(ACC, 41, side=OrderSide.BID, order_type=OrderType.MARKET, size=2, stop=None)
    await engine.process(OrderEvent(entry))
    seen_at_close: dict[str, Any] = {}
    close = gateway.partial_close_contract

    async def observed(account_id: int, contract_id: str, size: int) -> None:
        held = engine.state.get_order(ACC, 41)
        seen_at_close["order"] = None if held is None else held.status
        seen_at_close["balance"] = engine.state.get_account(ACC).balance  # type: ignore[union-attr]
        await close(account_id, contract_id, size)

    gateway.partial_close_contract = observed  # type: ignore[method-assign]
    gateway.positions.setdefault(ACC, {})[MNQ] = position(ACC, MNQ, 2)
    # The gateway's fill, as it sends it: order update, trade, position update, account update.
    for event in (
        OrderEvent(entry.model_copy(update={"status": OrderStatus.FILLED, "fill_volume": 2})),
        TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID, size=2, order_id=41)),
        PositionEvent(position(ACC, MNQ, 2)),
        AccountEvent(account(ACC, "49998.60")),
    ):
        engine.submit(event)
    await gateway.wait_call("partial_close_contract")
    await engine.drain()
    await engine.actions.wait_idle()
    assert [c.args for c in gateway.named("partial_close_contract")] == [(ACC, MNQ, 1)]
    # The close was on its way while the order update and the account update still waited.
    assert seen_at_close == {"order": OrderStatus.OPEN, "balance": Decimal("50000")}
    # ... and they were routed after it: nothing of the burst is lost.
    filled = engine.state.get_order(ACC, 41)
    assert filled is None or filled.status is OrderStatus.FILLED
    assert engine.state.get_account(ACC).balance == Decimal("49998.60")  # type: ignore[union-attr]


def test_a_fill_does_not_overtake_a_working_order_of_its_contract() -> None:
    entry = OrderEvent(order(ACC, 41, side=OrderSide.BID, order_type=OrderType.MARKET, stop=None))
    fill = TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID, order_id=41))
    queue = BurstQueue()
    for event in (entry, fill):
        queue.put_nowait(event)
    assert [queue.get_nowait(), queue.get_nowait()] == [entry, fill]
    filled = OrderEvent(entry.order.model_copy(update={"status": OrderStatus.FILLED}))
    for event in (filled, fill):
        queue.put_nowait(event)
    assert [queue.get_nowait(), queue.get_nowait()] == [fill, filled]
    # Nor does its position update, which then goes before its trade once the order is routed.
    update = PositionEvent(position(ACC, MNQ, 1))
    for event in (entry, fill, update):
        queue.put_nowait(event)
    assert [queue.get_nowait() for _ in range(3)] == [entry, update, fill]


async def test_a_cooldown_the_fill_starts_does_not_cancel_the_order_the_fill_filled(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    # The demo's "6 quick buys": the fill over the trade limit starts RULE-006's cooldown,
    # which cancels the working orders, while the fill's own order update (filled) still waits
    # behind its trade. That order is done: cancelling it could only come back "not found".
    engine = await make_engine(
        {"trade_frequency_limit": {"enabled": True, "per_minute": 1}}, accounts=[ACC]
    )
    await engine.process(AccountEvent(account(ACC, "50000")))
    resting = order(ACC, 40, side=OrderSide.BID, order_type=OrderType.LIMIT, stop=None,
                    limit="20000")  # fmt: skip
    await engine.process(OrderEvent(resting))
    for number in (41, 42):
        entry = order(ACC, number, side=OrderSide.BID, order_type=OrderType.MARKET, stop=None)
        await engine.process(OrderEvent(entry))
        gateway.positions.setdefault(ACC, {})[MNQ] = position(ACC, MNQ, number - 40)
        for event in (
            OrderEvent(entry.model_copy(update={"status": OrderStatus.FILLED, "fill_volume": 1})),
            TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID, order_id=number)),
            PositionEvent(position(ACC, MNQ, number - 40)),
            AccountEvent(account(ACC, "49999")),
        ):
            engine.submit(event)
        await engine.drain()
        await engine.actions.wait_idle()
    cancelled = [c.args[1] for c in gateway.named("cancel_order")]
    assert cancelled == [40]  # the resting limit order; not 42, which its own fill filled
