"""RULE-020 stop_discipline: a widened protective stop is put back, one too far is pulled in,
and a stop cancelled with its position open starts RULE-008's grace (or closes the position)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderStatus
from riskman.core.ports import OrderEvent, PositionEvent
from riskman.engine.engine import Engine
from riskman.rules.no_stop_loss_grace import NoStopLossGrace
from riskman.rules.stop_discipline import StopDiscipline
from tests.conftest import EngineFactory
from tests.fakes import MNQ, FakeGateway, order, position, settle

ACC = 7
STOP = 60


async def _engine(make_engine: EngineFactory, more: dict[str, Any] | None = None, **keys: Any):
    rules = {"stop_discipline": {"enabled": True, **keys}, **(more or {})}
    engine: Engine = await make_engine(rules, rule_classes=[StopDiscipline, NoStopLossGrace])
    return engine


async def _long(engine: Engine, gateway: FakeGateway, short: bool = False) -> None:
    """1 MNQ at 21000 (tick 0.25)."""
    pos = position(ACC, MNQ, 1, "21000", short=short)
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))


async def _stop(engine: Engine, gateway: FakeGateway, price: str, short: bool = False, **kw: Any):
    side = OrderSide.BID if short else OrderSide.ASK
    stop = order(ACC, STOP, MNQ, side=side, stop=price, **kw)
    if stop.status.is_working:
        gateway.orders.setdefault(ACC, {})[STOP] = stop
    await engine.process(OrderEvent(stop))
    await settle(engine)


def _modifies(gateway: FakeGateway) -> list[Decimal]:
    return [call.kwargs["stop_price"] for call in gateway.named("modify_order")]


@pytest.mark.parametrize(
    ("keys", "short", "prices", "modified"),
    [
        pytest.param({}, False, ["20950", "20960"], [], id="long-tightened"),
        pytest.param({}, False, ["20950", "20950"], [], id="long-unchanged"),
        pytest.param({}, False, ["20950", "20949.75"], ["20950"], id="long-widened-a-tick"),
        pytest.param({}, False, ["20950", "20960", "20940"], ["20960"], id="back-to-tightest"),
        pytest.param({}, True, ["21050", "21040"], [], id="short-tightened"),
        pytest.param({}, True, ["21050", "21060"], ["21050"], id="short-widened"),
        pytest.param({"restore": False}, False, ["20950", "20900"], [], id="restore-off"),
        pytest.param({"max_ticks": 40}, False, ["20990"], [], id="max-below"),
        pytest.param({"max_ticks": 40}, False, ["20990", "20990"], [], id="max-below-again"),
        pytest.param({"max_ticks": 40}, False, ["20990.00"], [], id="max-at"),
        pytest.param({"max_ticks": 40}, False, ["20989.75"], ["20990"], id="max-above"),
        pytest.param({"max_ticks": 40}, True, ["21012"], ["21010"], id="max-short"),
        pytest.param(
            {"max_ticks": 40, "restore": False}, False, ["20995", "20980"], ["20990"], id="max-only"
        ),
    ],
)
async def test_scenarios(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock: FakeClock,
    keys,
    short,
    prices,
    modified,
) -> None:
    engine = await _engine(make_engine, **keys)
    await _long(engine, gateway, short)
    for price in prices:
        await clock.advance(2)  # MOD-001 sends at most one modify a second per order
        await _stop(engine, gateway, price, short)
    assert _modifies(gateway) == [Decimal(p) for p in modified]
    if modified:
        record = next(r for r in engine.recent_log() if r.rule == "RULE-020")
        assert record.action == "move stop" and record.result == "ok"


async def test_a_second_widening_within_a_second_is_put_back_by_the_recheck(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _long(engine, gateway)
    await _stop(engine, gateway, "20950")
    await _stop(engine, gateway, "20940")  # put back at once
    await _stop(engine, gateway, "20950")  # our modify lands
    await _stop(engine, gateway, "20930")  # widened again within the second: no modify yet
    assert _modifies(gateway) == [Decimal("20950")]
    await clock.advance(1.2)
    await settle(engine)
    assert _modifies(gateway) == [Decimal("20950"), Decimal("20950")]


async def test_the_tightest_stop_survives_a_restart(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _long(engine, gateway)
    await _stop(engine, gateway, "20960")
    await engine.db.flush()
    await engine.close()
    again = await _engine(make_engine)
    assert _modifies(gateway) == []
    await _stop(again, gateway, "20950")  # widened after the restart
    assert _modifies(gateway) == [Decimal("20960")]


async def test_a_cancelled_stop_closes_the_position_after_the_grace_when_rule_008_is_off(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, cancel_grace=5)
    await _long(engine, gateway)
    await _stop(engine, gateway, "20950")
    await _stop(engine, gateway, "20950", status=OrderStatus.CANCELLED)
    await clock.advance(4.9)
    await settle(engine)
    assert gateway.named("close_contract") == []
    await clock.advance(0.2)
    await settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]
    record = next(r for r in engine.recent_log() if r.rule == "RULE-020")
    assert "cancelled with the position open" in record.reason


async def test_a_stop_replaced_within_the_grace_keeps_the_position(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, cancel_grace=5)
    await _long(engine, gateway)
    await _stop(engine, gateway, "20950")
    await _stop(engine, gateway, "20950", status=OrderStatus.CANCELLED)
    await clock.advance(2)
    new = order(ACC, STOP + 1, MNQ, side=OrderSide.ASK, stop="20955")
    gateway.orders.setdefault(ACC, {})[new.id] = new
    await engine.process(OrderEvent(new))
    await clock.advance(10)
    await settle(engine)
    assert gateway.named("close_contract") == []


async def test_a_cancelled_stop_starts_rule_008s_grace_when_it_is_on(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(
        make_engine, {"no_stop_loss_grace": {"enabled": True, "grace_seconds": 30}}
    )
    await _long(engine, gateway)
    await _stop(engine, gateway, "20950")
    await clock.advance(60)  # long past the position's first grace
    await _stop(engine, gateway, "20950", status=OrderStatus.CANCELLED)
    await clock.advance(29)
    await settle(engine)
    assert gateway.named("close_contract") == []
    await clock.advance(2)
    await settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]
    assert all(r.rule != "RULE-020" for r in engine.recent_log() if r.action == "close")


async def test_a_target_fill_that_cancels_the_stop_closes_nothing(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, cancel_grace=2)
    await _long(engine, gateway)
    await _stop(engine, gateway, "20950")
    await _stop(engine, gateway, "20950", status=OrderStatus.CANCELLED)  # OCO: target filled
    gateway.set_position(position(ACC, MNQ, 0))
    await engine.process(PositionEvent(position(ACC, MNQ, 0)))
    await clock.advance(5)
    await settle(engine)
    assert gateway.named("close_contract") == []
