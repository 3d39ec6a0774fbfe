"""RULE-008 no_stop_loss_grace against a real engine, the fake clock and the recording gateway."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderStatus, OrderType
from riskman.core.models import Order
from riskman.core.ports import OrderEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.rules.no_stop_loss_grace import NoStopLossGrace
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, T0, FakeGateway, open_position, order, position, trade

ACC = 7
OTHER = 8
RULES = {"no_stop_loss_grace": {"enabled": True, "grace_seconds": 30}}
TIMER = f"rule:RULE-008:{ACC}:{MNQ}"


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    """T0 unless a test asks for another start (`indirect` parametrization)."""
    return FakeClock(getattr(request, "param", T0))


async def _engine(make_engine: EngineFactory, **kwargs: Any) -> Engine:
    rules = kwargs.pop("rules", RULES)
    engine: Engine = await make_engine(rules, rule_classes=[NoStopLossGrace], **kwargs)
    return engine


async def _order(engine: Engine, gateway: FakeGateway, working: Order) -> None:
    if working.status.is_working:
        gateway.orders.setdefault(working.account_id, {})[working.id] = working
    else:
        gateway.orders.get(working.account_id, {}).pop(working.id, None)
    await engine.process(OrderEvent(working))


def _closed(gateway: FakeGateway) -> list[tuple[int, str]]:
    return [(c.args[0], c.args[1]) for c in gateway.named("close_contract")]


# --- the scenario table ---------------------------------------------------------------------

STOP = {"order_type": OrderType.STOP, "side": OrderSide.ASK, "stop": "20950"}
SCENARIOS = [
    # (what, short, order kwargs or None, seconds after the open, closed?)
    ("no stop, below the grace", False, None, 29, False),
    ("no stop, at the grace", False, None, 30, True),
    ("no stop, past the grace", False, None, 45, True),
    ("sell stop below a long", False, STOP, 45, False),
    (
        "sell stop-limit below a long",
        False,
        {**STOP, "order_type": OrderType.STOP_LIMIT},
        45,
        False,
    ),
    (
        "suspended bracket child without a price",
        False,
        {**STOP, "status": OrderStatus.SUSPENDED, "stop": None},
        45,
        False,
    ),
    (
        "trailing stop with only a trail distance",
        False,
        {**STOP, "order_type": OrderType.TRAILING_STOP, "stop": None},
        45,
        False,
    ),
    ("stop moved past entry (breakeven+)", False, {**STOP, "stop": "21002"}, 45, False),
    ("buy stop on the opening side of a long", False, {**STOP, "side": OrderSide.BID}, 45, True),
    (
        "sell limit (a target, not a stop)",
        False,
        {**STOP, "order_type": OrderType.LIMIT, "stop": None, "limit": "21100"},
        45,
        True,
    ),
    ("buy stop above a short", True, {**STOP, "side": OrderSide.BID, "stop": "21050"}, 45, False),
    ("sell stop under a short", True, STOP, 45, True),
]


@pytest.mark.parametrize(
    ("what", "short", "stop", "wait", "closed"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
async def test_position_without_protective_stop_is_closed_after_grace(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock: FakeClock,
    what: str,
    short: bool,
    stop: dict[str, Any] | None,
    wait: int,
    closed: bool,
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 2, short=short))
    if stop is not None:
        await _order(engine, gateway, order(ACC, 50, **stop))
    await clock.advance(wait)
    await engine.actions.wait_idle()
    await engine.drain()
    assert _closed(gateway) == ([(ACC, MNQ)] if closed else [])
    if closed:
        assert engine.state.get_position(ACC, MNQ) is None
        closes = [r for r in engine.recent_log() if r.action == "close"]
        assert [(r.rule, r.result) for r in closes] == [("RULE-008", "ok")]
        side = "short" if short else "long"
        assert closes[0].reason == f"MNQ {side} 2 has no stop loss after the 30 s grace"


# --- the grace timer ------------------------------------------------------------------------


async def test_scaling_in_keeps_the_running_grace(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await clock.advance(20)
    await open_position(engine, gateway, position(ACC, MNQ, 3))  # grows; opened stays T0
    await clock.advance(9)
    assert _closed(gateway) == []
    await clock.advance(1)  # 30 s after the open, not after the scale-in
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]


async def test_stop_placed_within_grace_cancels_the_timer(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    assert TIMER in engine.timers.names()
    await clock.advance(25)
    await _order(engine, gateway, order(ACC, 50))
    assert TIMER not in engine.timers.names()
    await clock.advance(600)
    assert _closed(gateway) == []


async def test_stop_cancelled_while_open_starts_a_fresh_grace(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await _order(engine, gateway, order(ACC, 50))
    await clock.advance(300)
    await _order(engine, gateway, order(ACC, 50, status=OrderStatus.CANCELLED))
    await clock.advance(29)
    assert _closed(gateway) == []
    await clock.advance(1)
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]
    assert [r.rule for r in engine.recent_log() if r.action == "close"] == ["RULE-008"]


async def test_reversal_starts_a_new_grace(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await _order(engine, gateway, order(ACC, 50))  # the long's sell stop
    await clock.advance(100)
    # The stop filled and more: the position is now short 1, and the sell stop is gone.
    await _order(engine, gateway, order(ACC, 50, status=OrderStatus.FILLED))
    await open_position(engine, gateway, position(ACC, MNQ, 1, short=True, opened=clock.now()))
    await clock.advance(29)
    assert _closed(gateway) == []
    await clock.advance(1)
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]


async def test_closed_position_drops_its_timer(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await clock.advance(10)
    await engine.process(TradeEvent(trade(ACC, pnl="0", side=OrderSide.ASK)))  # its closing fill
    await open_position(engine, gateway, position(ACC, MNQ, 0))
    assert TIMER not in engine.timers.names()
    await clock.advance(60)
    assert _closed(gateway) == []


async def test_each_position_has_its_own_grace(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await clock.advance(10)
    await open_position(engine, gateway, position(ACC, ES, 1, "5000", opened=clock.now()))
    await _order(engine, gateway, order(ACC, 51, ES, stop="4990"))
    await clock.advance(20)
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]  # ES has its stop


# --- restart --------------------------------------------------------------------------------


async def test_restart_within_grace_rebuilds_the_timer_from_the_opening_time(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await clock.advance(10)
    await engine.close()

    again = await _engine(make_engine)
    assert again.timers.deadline(TIMER) == datetime(2026, 11, 18, 15, 0, 30, tzinfo=UTC)
    await clock.advance(19)
    assert _closed(gateway) == []
    await clock.advance(1)
    await again.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]


async def test_restart_after_the_grace_closes_at_the_startup_check(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await engine.close()
    await clock.advance(120)  # riskman was down past the grace

    again = await _engine(make_engine)
    await gateway.wait_call("close_contract")
    await again.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]


async def test_restart_keeps_a_protected_position_open(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await _order(engine, gateway, order(ACC, 50))
    await engine.close()
    await clock.advance(120)

    again = await _engine(make_engine)
    assert TIMER not in again.timers.names()
    await clock.advance(60)
    assert _closed(gateway) == []


async def test_positions_replayed_before_their_orders_are_not_closed(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    # A reconnect shows an old position first, then its stop: the position event alone must
    # not close it (its grace is long past, but the stop arrives in the same reconcile).
    engine = await _engine(make_engine)
    await clock.advance(600)
    await open_position(engine, gateway, position(ACC, MNQ, 1))  # opened at T0, 10 min ago
    await _order(engine, gateway, order(ACC, 50))
    await clock.advance(0)
    await engine.actions.wait_idle()
    assert _closed(gateway) == []


async def test_old_position_without_stop_found_on_reconnect_is_closed_at_once(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await clock.advance(600)
    await open_position(engine, gateway, position(ACC, MNQ, 1))  # opened at T0, 10 min ago
    await clock.advance(0)
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]


# --- configuration --------------------------------------------------------------------------


async def test_per_account_grace_override(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(
        make_engine,
        accounts=[{"id": ACC, "rules": {"no_stop_loss_grace": {"grace_seconds": "1m"}}}, OTHER],
    )
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await open_position(engine, gateway, position(OTHER, MNQ, 1))
    await clock.advance(30)
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(OTHER, MNQ)]
    await clock.advance(30)
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(OTHER, MNQ), (ACC, MNQ)]


async def test_disabled_rule_arms_nothing(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, rules={"no_stop_loss_grace": {"enabled": False}})
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await clock.advance(600)
    assert TIMER not in engine.timers.names()
    assert _closed(gateway) == []


# --- DST: the grace is elapsed time, not wall time ------------------------------------------


@pytest.mark.parametrize(
    "clock",
    [
        datetime(2026, 3, 8, 7, 59, 50, tzinfo=UTC),  # 01:59:50 CST, 10 s before spring forward
        datetime(2026, 11, 1, 6, 59, 50, tzinfo=UTC),  # 01:59:50 CDT, 10 s before fall back
    ],
    indirect=True,
    ids=["2026-03-08", "2026-11-01"],
)
async def test_grace_across_the_dst_change_is_thirty_real_seconds(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, timezone="America/Chicago")
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await clock.advance(29)
    assert _closed(gateway) == []
    await clock.advance(1)
    await engine.actions.wait_idle()
    assert _closed(gateway) == [(ACC, MNQ)]


# --- status ---------------------------------------------------------------------------------


async def test_status_counts_positions_without_a_stop_and_the_time_left(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    rule = engine.rules[0]
    assert rule.status(ACC).value == "no position"
    await open_position(engine, gateway, position(ACC, MNQ, 1))
    await open_position(engine, gateway, position(ACC, ES, 1, "5000"))
    await _order(engine, gateway, order(ACC, 51, ES, stop="4990"))
    await clock.advance(18)
    status = rule.status(ACC)
    assert status.value == "2 positions, 1 without a stop (closes in 12 s)"
    assert status.limit == "30 s grace"
    assert status.used == pytest.approx(0.6)
    assert status.detail == "MNQ long 1 without a stop"
    await _order(engine, gateway, order(ACC, 50))
    assert rule.status(ACC).value == "2 positions, all with a stop"
