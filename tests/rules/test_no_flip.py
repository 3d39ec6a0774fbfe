"""RULE-019 no_flip: one fill that turns a long into a short (or back) is cut back to flat,
whatever order the gateway reports the fill and the position updates in."""

from __future__ import annotations

from typing import Any

import pytest

from riskman.core.enums import OrderSide
from riskman.core.ports import PositionEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.engine.fills import SETTLE_AFTER
from riskman.rules.no_flip import NoFlip
from tests.conftest import EngineFactory
from tests.fakes import MNQ, FakeGateway, open_position, position, settle, trade

ACC = 7
CFG = {"no_flip": {"enabled": True}}


async def _engine(make_engine: EngineFactory) -> Engine:
    engine: Engine = await make_engine(CFG, rule_classes=[NoFlip])
    return engine


def _pos(size: int, short: bool = False) -> Any:
    return position(ACC, MNQ, size, short=short)


async def _events(engine: Engine, gateway: FakeGateway, events: list[Any]) -> None:
    """The first position is read over REST (the truth); the fill has happened at the broker
    before the rest of its events reach riskman, in the order given. A position update no
    fill explains is believed after SETTLE_AFTER."""
    rest = list(events)
    if isinstance(rest[0], PositionEvent):
        await open_position(engine, gateway, rest.pop(0).position)
    updates = [event for event in rest if isinstance(event, PositionEvent)]
    if updates:
        gateway.set_position(updates[-1].position)
    for event in rest:
        await engine.process(event)
    await engine.clock.advance(SETTLE_AFTER)
    await settle(engine)


def _sell(size: int, pnl: str | None = "10") -> TradeEvent:
    return TradeEvent(trade(ACC, pnl=pnl, size=size, side=OrderSide.ASK))


def _closes(gateway: FakeGateway) -> list[tuple[object, ...]]:
    return [call.args for call in gateway.named("close_contract")]


FLAT = PositionEvent(_pos(0))
LONG2 = PositionEvent(_pos(2))
SHORT1 = PositionEvent(_pos(1, short=True))


@pytest.mark.parametrize(
    ("events", "flipped"),
    [
        pytest.param([LONG2, _sell(3), FLAT, SHORT1], True, id="fill-first"),
        pytest.param([LONG2, FLAT, SHORT1, _sell(3)], True, id="positions-first"),
        pytest.param([LONG2, FLAT, _sell(3), SHORT1], True, id="fill-between"),
        pytest.param([LONG2, SHORT1], True, id="one-update-changes-side"),
        pytest.param(
            [LONG2, _sell(2), FLAT, _sell(1, pnl=None), SHORT1], False, id="close-then-new-order"
        ),
        pytest.param([LONG2, FLAT, SHORT1, _sell(2), _sell(1, None)], False, id="late-fills"),
        pytest.param([LONG2, _sell(1), PositionEvent(_pos(1))], False, id="partial-close"),
    ],
)
async def test_scenarios(make_engine: EngineFactory, gateway: FakeGateway, events, flipped):
    engine = await _engine(make_engine)
    await _events(engine, gateway, events)
    assert _closes(gateway) == ([(ACC, MNQ)] if flipped else [])
    if flipped:
        record = next(r for r in engine.recent_log() if r.rule == "RULE-019")
        assert "cut back to flat" in record.reason
        assert MNQ not in gateway.positions.get(ACC, {})


async def test_the_other_side_may_be_opened_afterwards(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await _engine(make_engine)
    await _events(engine, gateway, [LONG2, _sell(3), FLAT, SHORT1])
    assert len(_closes(gateway)) == 1
    await clock.advance(10)
    await _events(engine, gateway, [_sell(1, pnl=None), SHORT1])
    assert len(_closes(gateway)) == 1
    assert engine.lockouts.get_lockout_info(ACC) == []


async def test_a_restart_in_the_middle_sees_a_flip_in_one_update(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _events(engine, gateway, [LONG2])
    await engine.close()
    again = await _engine(make_engine)
    await _events(again, gateway, [SHORT1])
    assert _closes(gateway) == [(ACC, MNQ)]
