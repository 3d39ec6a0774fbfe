"""The router pipeline, the lockout gate and MOD-001 against the recording gateway double."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from riskman.core.enums import OrderSide, OrderType
from riskman.core.intents import (
    CancelOrders,
    Category,
    CloseAll,
    ClosePosition,
    Lock,
    ReducePosition,
    plan,
)
from riskman.core.locks import LockKind, Unlock
from riskman.core.ports import AccountSnapshot, OrderEvent, PositionEvent, TradeEvent
from riskman.gateway.errors import NotFound, OutcomeUnknown
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, T0, FakeGateway, account, open_position, order, position, trade

ACC = 7


async def test_position_opened_while_locked_is_closed_at_once(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine()
    await engine.lockouts.set_lockout(
        ACC, "daily loss", T0 + timedelta(hours=3), rule="RULE-003", unlock=Unlock.RESET
    )
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await gateway.wait_call("close_contract")
    await engine.drain()
    assert engine.state.get_position(ACC, MNQ) is None
    await engine.actions.wait_idle()
    record = engine.recent_log()[0]
    assert (record.rule, record.action, record.result) == ("LOCKOUT", "close", "ok")
    assert "opened while locked" in record.reason


async def test_position_that_shrinks_while_locked_is_left_alone(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.process(PositionEvent(position(ACC, MNQ, 3)))
    await engine.lockouts.set_cooldown(ACC, "loss", 300, rule="RULE-007")
    await engine.process(PositionEvent(position(ACC, MNQ, 2)))
    assert gateway.named("close_contract") == []


async def test_cooldown_cancels_new_entries_but_keeps_the_protective_stop(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.process(PositionEvent(position(ACC, MNQ, 1)))
    await engine.lockouts.set_cooldown(ACC, "loss", 300, rule="RULE-007")
    stop = order(ACC, 11, side=OrderSide.ASK, order_type=OrderType.STOP)
    entry = order(ACC, 12, side=OrderSide.BID, order_type=OrderType.LIMIT, stop=None, limit="20000")
    for o in (stop, entry):
        gateway.orders.setdefault(ACC, {})[o.id] = o
        await engine.process(OrderEvent(o))
    await gateway.wait_call("cancel_order")
    await engine.actions.wait_idle()
    assert [c.args[1] for c in gateway.named("cancel_order")] == [12]


async def test_symbol_lock_closes_only_that_symbol(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.lockouts.set_lockout(
        ACC, "blocked", None, rule="RULE-011", unlock=Unlock.CONFIG, symbol="EP"
    )
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await gateway.wait_call("close_contract")
    await engine.actions.wait_idle()
    assert [c.args[1] for c in gateway.named("close_contract")] == [ES]


async def test_close_in_flight_is_not_sent_twice(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.lockouts.set_lockout(ACC, "x", None, rule="RULE-014", unlock=Unlock.ADMIN)
    gate = gateway.hold.setdefault("close_contract", __import__("asyncio").Event())
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await open_position(
        engine, gateway, position(ACC, MNQ, 2)
    )  # grows again before the close answers
    await gateway.wait_call("close_contract")
    gate.set()
    await engine.actions.wait_idle()
    await engine.drain()
    assert len(gateway.named("close_contract")) == 1


async def test_timed_out_close_is_verified_not_repeated_blindly(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine()
    pos = position(ACC, MNQ, 1)
    await open_position(engine, gateway, pos)
    # The gateway closes the position but the answer is lost: the client raises OutcomeUnknown.
    gateway.positions[ACC].pop(MNQ)
    gateway.fail_next("close_contract", OutcomeUnknown("Position/closeContract", "timed out"))
    engine.actions.close_position(ACC, MNQ, rule="TEST", reason="test")
    await gateway.wait_call("close_contract")
    await clock.advance(engine.settings.enforcement.verify_after + 0.1)
    await engine.actions.wait_idle()
    await engine.drain()
    assert len(gateway.named("close_contract")) == 1
    assert gateway.named("search_open_positions"), "the outcome was re-read"
    assert engine.state.get_position(ACC, MNQ) is None  # state caught up from the REST read
    assert engine.recent_log()[0].result == "ok"


async def test_close_of_a_flat_position_is_logged_as_already_flat(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.process(PositionEvent(position(ACC, MNQ, 1)))  # the gateway has no such position
    engine.actions.close_position(ACC, MNQ, rule="TEST", reason="test")
    await engine.actions.wait_idle()
    assert engine.recent_log()[0].result == "already flat"


async def test_reduce_sends_one_partial_close_for_the_excess(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await open_position(engine, gateway, position(ACC, MNQ, 5))
    engine.actions.reduce_position_to_limit(ACC, MNQ, 3, rule="RULE-001", reason="test")
    engine.actions.reduce_position_to_limit(ACC, MNQ, 3, rule="RULE-001", reason="again")
    await engine.actions.wait_idle()
    await engine.drain()
    assert [c.args for c in gateway.named("partial_close_contract")] == [(ACC, MNQ, 2)]
    assert engine.state.get_contract_count(ACC, MNQ) == 3


async def test_timed_out_partial_close_is_resized_from_the_gateway_truth(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine()
    await open_position(engine, gateway, position(ACC, MNQ, 5))
    # The partial close of 2 executed but its answer was lost; a blind retry would cut to 1.
    gateway.set_position(position(ACC, MNQ, 3))
    gateway.fail_next(
        "partial_close_contract", OutcomeUnknown("Position/partialCloseContract", "timed out")
    )
    engine.actions.reduce_position_to_limit(ACC, MNQ, 3, rule="RULE-001", reason="test")
    await engine.actions.wait_idle()
    assert len(gateway.named("partial_close_contract")) == 1
    assert gateway.positions[ACC][MNQ].size == 3


async def test_flatten_cancels_orders_closes_all_and_checks_the_account_is_flat(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await open_position(engine, gateway, position(ACC, MNQ, 2))
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    working = order(ACC, 31)
    gateway.orders.setdefault(ACC, {})[31] = working
    await engine.process(OrderEvent(working))
    engine.actions.close_all_positions(ACC, rule="RULE-003", reason="test")
    await engine.actions.wait_idle()
    assert {c.args[1] for c in gateway.named("close_contract")} == {MNQ, ES}
    assert [c.args[1] for c in gateway.named("cancel_order")] == [31]
    assert gateway.named("search_open_positions")
    assert engine.recent_log()[0].action == "flatten" and engine.recent_log()[0].result == "ok"


def test_plan_orders_lockouts_first_and_drops_duplicates() -> None:
    lock = Lock(
        rule="RULE-003",
        account_id=ACC,
        reason="loss",
        category=Category.LOCKOUT,
        until=None,
        unlock=Unlock.RESET,
    )
    intents = [
        ReducePosition(
            rule="RULE-001",
            account_id=ACC,
            reason="r",
            category=Category.REDUCE,
            contract_id=MNQ,
            target_size=2,
        ),
        ClosePosition(rule="RULE-004", account_id=ACC, reason="c", contract_id=MNQ),
        Lock(
            rule="RULE-006",
            account_id=ACC,
            reason="cd",
            category=Category.COOLDOWN,
            until=T0,
            unlock=Unlock.TIME,
            kind=LockKind.COOLDOWN,
        ),
        lock,
        CloseAll(rule="RULE-003", account_id=ACC, reason="loss", category=Category.LOCKOUT),
        CancelOrders(rule="RULE-003", account_id=ACC, reason="loss", category=Category.LOCKOUT),
        CloseAll(rule="RULE-013", account_id=ACC, reason="target", category=Category.LOCKOUT),
    ]
    result = plan(intents)
    assert [lock.rule for lock in result.locks] == ["RULE-003", "RULE-006"]
    assert len(result.actions) == 1 and isinstance(result.actions[0], CloseAll)
    assert result.actions[0].rule == "RULE-003"


async def test_reconcile_closes_a_position_opened_while_disconnected_and_locked(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.lockouts.set_lockout(
        ACC, "loss", T0 + timedelta(hours=2), rule="RULE-003", unlock=Unlock.RESET
    )
    missed = position(ACC, MNQ, 1)
    gateway.set_position(missed)
    await engine.reconcile(AccountSnapshot(account(ACC), [missed], [], []))
    await gateway.wait_call("close_contract")
    await engine.actions.wait_idle()
    assert gateway.named("close_contract")[0].args == (ACC, MNQ)


async def test_reconcile_replays_missed_fills_once(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    fills = [trade(ACC, pnl="-40", trade_id=1), trade(ACC, pnl="-60", trade_id=2)]
    await engine.process(TradeEvent(fills[0]))
    await engine.reconcile(AccountSnapshot(account(ACC), [], [], fills))
    await engine.drain()
    assert engine.pnl.get_daily_realized_pnl(ACC) == Decimal(-100)


async def test_a_malformed_event_is_skipped_and_the_engine_keeps_going(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    engine.submit(object())  # type: ignore[arg-type]
    engine.submit(PositionEvent(position(ACC, MNQ, 1)))
    await engine.drain()
    assert engine.state.get_position(ACC, MNQ) is not None


async def test_restart_while_locked_then_a_new_position_is_closed(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine()
    await engine.lockouts.set_lockout(
        ACC, "loss", T0 + timedelta(hours=2), rule="RULE-003", unlock=Unlock.RESET
    )
    await engine.close()
    again = await make_engine()
    assert again.lockouts.is_locked_out(ACC)
    await open_position(again, gateway, position(ACC, MNQ, 1))
    await gateway.wait_call("close_contract")
    await again.actions.wait_idle()
    assert gateway.named("close_contract")[0].args == (ACC, MNQ)


async def test_cooldown_cuts_an_addition_back_to_the_size_before_it(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await make_engine()
    await open_position(engine, gateway, position(ACC, MNQ, 3))
    await engine.lockouts.set_cooldown(ACC, "4 trades in a minute", 60, rule="RULE-006")
    hold = gateway.hold.setdefault("partial_close_contract", asyncio.Event())
    await open_position(engine, gateway, position(ACC, MNQ, 4))  # adds 1 during the cooldown
    await gateway.wait_call("partial_close_contract")
    await open_position(
        engine, gateway, position(ACC, MNQ, 5)
    )  # adds again while the cut is in flight
    hold.set()
    for _ in range(4):  # verifications wait on the (fake) clock
        await clock.advance(engine.settings.enforcement.verify_after + 0.5)
        await engine.drain()
    await engine.actions.wait_idle()
    assert gateway.positions[ACC][MNQ].size == 3  # what was open before the cooldown stays
    assert gateway.named("close_contract") == []
    assert all(r.rule == "LOCKOUT" and r.action == "reduce" for r in engine.recent_log()[:1])


async def test_cooldown_closes_a_position_opened_from_flat(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.lockouts.set_cooldown(ACC, "loss", 300, rule="RULE-007")
    await open_position(engine, gateway, position(ACC, ES, 2, "5000"))
    await gateway.wait_call("close_contract")
    await engine.actions.wait_idle()
    assert gateway.named("close_contract")[0].args == (ACC, ES)


async def test_a_position_left_open_after_a_close_is_evaluated_again(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine()
    await engine.lockouts.set_lockout(ACC, "loss", None, rule="RULE-014", unlock=Unlock.ADMIN)
    # The first close finds nothing (e.g. it raced a fill that re-opened the position), so the
    # gateway still holds a position that riskman's state shows: it must not be forgotten.
    gateway.fail_next(
        "close_contract",
        NotFound("Position/closeContract", "", code=2, code_name="PositionNotFound"),
    )
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await gateway.wait_call("close_contract", count=2)
    for _ in range(3):
        await engine.actions.wait_idle()
        await engine.drain()
    assert MNQ not in gateway.positions.get(ACC, {})
    assert engine.state.get_position(ACC, MNQ) is None


async def test_a_close_seen_flat_is_confirmed_though_the_trader_opened_again_at_once(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    """The flat and the trader's new entry arrive back to back (one frame): the close did its
    job; the new position is the trader's, not a failed close to send again."""
    engine = await make_engine()
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    deliver = gateway.sink
    assert deliver is not None
    again = position(ACC, MNQ, 1)

    def sink(event: object) -> None:
        deliver(event)
        if isinstance(event, PositionEvent) and event.position.size == 0:
            gateway.set_position(again)
            deliver(PositionEvent(again))

    gateway.sink = sink
    engine.actions.close_position(ACC, MNQ, rule="RULE-004", reason="test")
    for _ in range(3):
        await engine.drain()
        await asyncio.sleep(0)
    await clock.advance(engine.settings.enforcement.verify_after + 0.1)
    await engine.actions.wait_idle()
    await engine.drain()
    assert len(gateway.named("close_contract")) == 1
    assert gateway.positions[ACC][MNQ].size == 1  # the trader's new position stands
    assert engine.recent_log()[0].result == "ok"
    assert "attempts" not in engine.recent_log()[0].detail
