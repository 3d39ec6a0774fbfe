"""RULE-012 trade_management: breakeven, trailing, tighten-only, placing a missing stop."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderStatus, OrderType
from riskman.core.intents import ModifyStop
from riskman.core.locks import Unlock
from riskman.core.ports import OrderEvent, PositionEvent, QuoteEvent
from riskman.core.rules import QuoteTrigger
from riskman.engine.engine import Engine
from riskman.rules.trade_management import TradeManagement
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, FakeGateway, open_position, order, position, quote

ACC = 7
OTHER = 8
RULES = {
    "trade_management": {
        "enabled": True,
        "breakeven": {"trigger_ticks": 10, "offset_ticks": 1},
        "trailing": {"activation_ticks": 20, "distance_ticks": 10},
    }
}


async def _engine(make_engine: EngineFactory, **top: Any) -> Engine:
    rules = top.pop("rules", RULES)
    engine: Engine = await make_engine(rules, rule_classes=[TradeManagement], **top)
    return engine


async def _setup(
    engine: Engine,
    gateway: FakeGateway,
    *,
    short: bool = False,
    avg: str = "21000",
    stop: str | None = None,
    size: int = 1,
    account_id: int = ACC,
) -> None:
    pos = position(account_id, MNQ, size, avg, short=short)
    await open_position(engine, gateway, pos)
    if stop is not None:
        side = OrderSide.BID if short else OrderSide.ASK
        await engine.process(OrderEvent(order(account_id, 70 + account_id, side=side, stop=stop)))


async def _quote(engine: Engine, last: str, bid: str | None = None, ask: str | None = None) -> None:
    await engine.process(QuoteEvent(MNQ, quote(last, bid, ask)))
    await engine.actions.wait_idle()


def _moves(gateway: FakeGateway) -> list[tuple[int, Decimal]]:
    return [(c.args[1], c.kwargs["stop_price"]) for c in gateway.named("modify_order")]


def _placed(gateway: FakeGateway) -> list[tuple[OrderSide, int, Decimal]]:
    return [(c.args[3], c.args[4], c.kwargs["stop_price"]) for c in gateway.named("place_order")]


# --- the scenario table ---------------------------------------------------------------------

SCENARIOS = [
    # (what, short, average, mark, current stop, expected: ("modify"|"place", price) or None)
    ("long 9 ticks: below breakeven", False, "21000", "21002.25", "20950", None),
    ("long 10 ticks: at breakeven", False, "21000", "21002.50", "20950", ("modify", "21000.25")),
    ("long 14 ticks: breakeven+1", False, "21000", "21003.50", "20950", ("modify", "21000.25")),
    ("long stop already at breakeven+1", False, "21000", "21003.50", "21000.25", None),
    ("long stop already tighter", False, "21000", "21003.50", "21001.00", None),
    ("long 20 ticks: trailing wins", False, "21000", "21005.00", "20950", ("modify", "21002.50")),
    (
        "long 40 ticks: trail 10 behind",
        False,
        "21000",
        "21010.00",
        "21002.50",
        ("modify", "21007.50"),
    ),
    ("long no stop: place one", False, "21000", "21003.50", None, ("place", "21000.25")),
    ("long 9 ticks no stop: nothing", False, "21000", "21002.25", None, None),
    (
        "long odd average rounds down",
        False,
        "21000.10",
        "21003.50",
        "20950",
        ("modify", "21000.25"),
    ),
    ("short 4 ticks: nothing", True, "21000", "20999.00", "21050", None),
    ("short 10 ticks: at breakeven", True, "21000", "20997.50", "21050", ("modify", "20999.75")),
    ("short 20 ticks: trailing", True, "21000", "20995.00", "21050", ("modify", "20997.50")),
    ("short stop already tighter", True, "21000", "20995.00", "20996.00", None),
    ("short no stop: place a buy stop", True, "21000", "20995.00", None, ("place", "20997.50")),
    ("short odd average rounds up", True, "21000.10", "20997.00", "21050", ("modify", "21000.00")),
]


@pytest.mark.parametrize(
    ("what", "short", "avg", "mark", "stop", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
async def test_stop_follows_breakeven_then_trailing(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    what: str,
    short: bool,
    avg: str,
    mark: str,
    stop: str | None,
    expected: tuple[str, str] | None,
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, short=short, avg=avg, stop=stop, size=2)
    await _quote(engine, mark)
    if expected is None:
        assert _moves(gateway) == [] and _placed(gateway) == []
    elif expected[0] == "modify":
        assert _moves(gateway) == [(70 + ACC, Decimal(expected[1]))]
        assert _placed(gateway) == []
    else:
        side = OrderSide.BID if short else OrderSide.ASK
        assert _placed(gateway) == [(side, 2, Decimal(expected[1]))]
        assert gateway.named("place_order")[0].args[2] is OrderType.STOP
        assert _moves(gateway) == []


async def test_no_intent_for_a_stop_already_at_the_wanted_price(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, stop="20950")
    await _quote(engine, "21003.50")
    rule = engine.rules[0]
    intents = rule.evaluate(ACC, QuoteTrigger(MNQ))
    assert intents and isinstance(intents[0], ModifyStop)
    # The gateway confirms the move: from then on the rule asks for nothing.
    await engine.process(OrderEvent(order(ACC, 77, stop="21000.25")))
    assert rule.evaluate(ACC, QuoteTrigger(MNQ)) == []


async def test_the_long_mark_is_the_bid(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, stop="20950")
    await _quote(engine, "21010", bid="21002.25", ask="21010.25")  # bid only 9 ticks up
    assert _moves(gateway) == []


async def test_stop_is_only_ever_tightened_as_the_price_comes_back(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, stop="20950")
    await _quote(engine, "21010.00")
    assert _moves(gateway) == [(77, Decimal("21007.50"))]
    await engine.process(OrderEvent(order(ACC, 77, stop="21007.50")))
    await clock.advance(2)
    await _quote(engine, "21008.00")  # wanted 21005.50: looser than the stop, so nothing
    await _quote(engine, "21012.00")
    assert _moves(gateway) == [(77, Decimal("21007.50")), (77, Decimal("21009.50"))]


async def test_at_most_one_modify_per_second_per_order(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, stop="20950")
    for mark in ("21010.00", "21010.25", "21010.50"):
        await _quote(engine, mark)
    assert len(_moves(gateway)) == 1
    await clock.advance(1)
    await _quote(engine, "21010.75")
    assert _moves(gateway)[-1] == (77, Decimal("21008.25"))
    assert len(_moves(gateway)) == 2


async def test_missing_stop_is_placed_once_while_pending(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway)
    await _quote(engine, "21003.50")
    await clock.advance(1)
    await _quote(engine, "21003.75")
    assert len(_placed(gateway)) == 1
    # Nothing showed up within 5 s: ask again.
    await clock.advance(4)
    await _quote(engine, "21003.75")
    assert len(_placed(gateway)) == 2
    # The stop arrives: from now on it is moved, never placed again.
    await engine.process(OrderEvent(order(ACC, 90, stop="21000.25")))
    await clock.advance(10)
    await _quote(engine, "21010.00")
    assert len(_placed(gateway)) == 2
    assert _moves(gateway) == [(90, Decimal("21007.50"))]


async def test_suspended_bracket_stop_counts_and_is_not_moved(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway)
    await engine.process(OrderEvent(order(ACC, 91, status=OrderStatus.SUSPENDED, stop=None)))
    await _quote(engine, "21010.00")
    assert _placed(gateway) == [] and _moves(gateway) == []


async def test_stale_quote_moves_nothing(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await engine.process(QuoteEvent(MNQ, quote("21010.00")))  # 40 ticks above the entry
    await clock.advance(11)  # ... but stale by the time the position is seen
    await _setup(engine, gateway, stop="20950")
    engine.submit_check("test")
    await engine.drain()
    await engine.actions.wait_idle()
    assert _moves(gateway) == [] and _placed(gateway) == []
    status = engine.rules[0].status(ACC)
    assert status.stale and status.value == "MNQ no fresh quote"


async def test_locked_symbol_is_left_to_the_lockout(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, stop="20950")
    await engine.lockouts.set_lockout(
        ACC, "blocked", None, rule="RULE-011", unlock=Unlock.CONFIG, symbol="MNQ"
    )
    await _quote(engine, "21010.00")
    assert _moves(gateway) == []


async def test_other_positions_are_not_touched_by_a_quote(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, stop="20950")
    es = position(ACC, ES, 1, "5000")
    await engine.process(PositionEvent(es))
    await engine.process(QuoteEvent(ES, quote("5010")))  # ES 40 ticks up, no stop
    await engine.actions.wait_idle()
    assert [c.args[1] for c in gateway.named("place_order")] == [ES]
    assert _moves(gateway) == []


async def test_restart_in_the_middle_keeps_managing_the_stop(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _setup(engine, gateway, stop="20950")
    await _quote(engine, "21003.50")
    await engine.process(OrderEvent(order(ACC, 77, stop="21000.25")))
    await engine.close()
    await clock.advance(5)

    again = await _engine(make_engine)
    await _quote(again, "21006.00")  # 24 ticks: trail to 21003.50
    assert _moves(gateway) == [(77, Decimal("21000.25")), (77, Decimal("21003.50"))]
    assert _placed(gateway) == []


async def test_per_account_override(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await _engine(
        make_engine,
        accounts=[
            ACC,
            {
                "id": OTHER,
                "rules": {"trade_management": {"breakeven": {"trigger_ticks": 4}}},
            },
        ],
    )
    await _setup(engine, gateway, stop="20950")
    await _setup(engine, gateway, stop="20950", account_id=OTHER)
    await _quote(engine, "21001.25")  # 5 ticks
    assert _moves(gateway) == [(70 + OTHER, Decimal("21000.25"))]


async def test_breakeven_only_and_trailing_only(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(
        make_engine,
        rules={"trade_management": {"enabled": True, "trailing": None}},
        accounts=[
            ACC,
            {"id": OTHER, "rules": {"trade_management": {"breakeven": None, "trailing": {}}}},
        ],
    )
    await _setup(engine, gateway, stop="20950")
    await _setup(engine, gateway, stop="20950", account_id=OTHER)
    await _quote(engine, "21010.00")  # 40 ticks
    assert sorted(_moves(gateway)) == [(77, Decimal("21000.25")), (78, Decimal("21007.50"))]


async def test_status_per_position(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await _engine(make_engine)
    rule = engine.rules[0]
    assert rule.status(ACC).value == "no position"
    await _setup(engine, gateway, stop="21000.25")
    await engine.process(QuoteEvent(MNQ, quote("21003.50")))
    status = rule.status(ACC)
    assert status.value == "MNQ +14 ticks, stop at breakeven+1"
    assert status.limit == "breakeven+1 at 10 ticks, trail 10 from 20 ticks"
    await engine.process(OrderEvent(order(ACC, 77, stop="20990")))
    assert rule.status(ACC).value == "MNQ +14 ticks, stop at 40 ticks risk"
