"""RULE-018 no_averaging_down: an addition at a worse price than the average entry is cut back
to the size before it."""

from __future__ import annotations

import asyncio

import pytest

from riskman.core.ports import PositionEvent
from riskman.engine.engine import Engine
from riskman.rules.no_averaging_down import NoAveragingDown
from tests.conftest import EngineFactory
from tests.fakes import MNQ, FakeGateway, position, settle

ACC = 7
CFG = {"no_averaging_down": {"enabled": True}}


async def _engine(make_engine: EngineFactory) -> Engine:
    engine: Engine = await make_engine(CFG, rule_classes=[NoAveragingDown])
    return engine


async def _at(engine: Engine, gateway: FakeGateway, size: int, avg: str, short: bool = False):
    pos = position(ACC, MNQ, size, avg, short=short)
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))
    await settle(engine)


def _partials(gateway: FakeGateway) -> list[tuple[object, ...]]:
    return [call.args for call in gateway.named("partial_close_contract")]


@pytest.mark.parametrize(
    ("short", "steps", "cut"),
    [
        # steps: (size, average) after each fill; cut: the size it is cut back to
        pytest.param(False, [(1, "21000"), (2, "21000.125")], None, id="long-adds-higher"),
        pytest.param(False, [(1, "21000"), (2, "21000")], None, id="long-adds-at-average"),
        pytest.param(False, [(1, "21000"), (2, "20999.875")], 1, id="long-adds-one-tick-lower"),
        pytest.param(False, [(2, "21000"), (5, "20990")], 2, id="long-adds-three-lower"),
        pytest.param(True, [(1, "21000"), (2, "20999.875")], None, id="short-adds-lower"),
        pytest.param(True, [(1, "21000"), (2, "21000.125")], 1, id="short-adds-higher"),
        pytest.param(False, [(3, "21000"), (2, "21000")], None, id="a-reduction-is-not-an-add"),
    ],
)
async def test_scenarios(make_engine: EngineFactory, gateway: FakeGateway, short, steps, cut):
    engine = await _engine(make_engine)
    for size, avg in steps:
        await _at(engine, gateway, size, avg, short)
    if cut is None:
        assert _partials(gateway) == []
    else:
        added = steps[-1][0] - cut
        assert _partials(gateway) == [(ACC, MNQ, added)]
        assert gateway.positions[ACC][MNQ].size == cut
        record = next(r for r in engine.recent_log() if r.rule == "RULE-018")
        assert record.action == "reduce" and "averaged down" in record.reason


async def test_a_second_addition_while_the_cut_is_on_its_way_is_cut_too(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _at(engine, gateway, 1, "21000")
    gateway.hold["partial_close_contract"] = hold = asyncio.Event()
    # Both additions wait in the engine's queue (the second adds above the new average): the
    # cut the first one starts sizes itself from the second.
    for size, avg in ((2, "20999"), (3, "20999.5")):
        pos = position(ACC, MNQ, size, avg)
        gateway.set_position(pos)
        engine.submit(PositionEvent(pos))
    await engine.drain()
    hold.set()
    await settle(engine)
    assert gateway.positions[ACC][MNQ].size == 1


async def test_after_the_cut_a_better_addition_is_allowed(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _at(engine, gateway, 1, "21000")
    await _at(engine, gateway, 2, "20999")
    assert gateway.positions[ACC][MNQ].size == 1
    calls = len(_partials(gateway))
    await _at(engine, gateway, 2, "20999.5")  # added at 21000, above the average of 20999
    assert len(_partials(gateway)) == calls


async def test_a_restart_between_the_addition_and_the_next_event_keeps_nothing_stale(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    # The rule keeps no state across a restart: what was open then is the new starting point.
    engine = await _engine(make_engine)
    await _at(engine, gateway, 2, "21000")
    await engine.close()
    again = await _engine(make_engine)
    await _at(again, gateway, 3, "20999")
    assert _partials(gateway) == [(ACC, MNQ, 1)]
