"""`count_trades_as` (issue 15) for RULE-006 and RULE-017: `orders` (an order that fills counts
once) or `fills` (TopstepX's way: every entry and every exit counts; riskman's own never)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.ports import TradeEvent
from riskman.rules.trade_frequency_limit import TradeFrequencyLimit
from riskman.rules.weekly_limits import TRADES_LOCK, WeeklyLimits
from tests.conftest import EngineFactory
from tests.fakes import trade

ACC = 7


def _cfg(**keys: Any) -> dict[str, Any]:
    return {"trade_frequency_limit": {"enabled": True, **keys}}


@pytest.mark.parametrize(
    ("count_as", "fills", "cooled"),
    [
        # (order id) of each fill, a second apart; per_minute 2
        pytest.param("orders", [1, 1, 2], False, id="orders-partial-fills-count-once"),
        pytest.param("fills", [1, 1], False, id="fills-at-the-limit"),
        pytest.param("fills", [1, 1, 2], True, id="fills-above"),
        pytest.param("fills", [1, 2, 3], True, id="fills-entries-and-exits"),
    ],
)
async def test_count_trades_as(
    make_engine: EngineFactory, clock: FakeClock, count_as, fills, cooled
) -> None:
    cfg = _cfg(per_minute=2, per_hour=None, per_session=None, count_trades_as=count_as)
    engine = await make_engine(cfg, rule_classes=[TradeFrequencyLimit])
    for order_id in fills:
        await clock.advance(1)
        await engine.process(TradeEvent(trade(ACC, pnl=None, at=clock.now(), order_id=order_id)))
    await engine.drain()
    assert engine.lockouts.is_locked_out(ACC) is cooled
    if cooled:
        assert "fills within a minute" in engine.lockouts.get_lockout_info(ACC)[0].reason


async def test_counted_fills_survive_a_restart(make_engine: EngineFactory, clock: FakeClock):
    cfg = _cfg(per_minute=None, per_hour=None, per_session=3, count_trades_as="fills")
    engine = await make_engine(cfg, rule_classes=[TradeFrequencyLimit])
    for _ in range(3):
        await clock.advance(1)
        await engine.process(TradeEvent(trade(ACC, pnl=None, at=clock.now(), order_id=9)))
    await engine.drain()
    assert not engine.lockouts.is_locked_out(ACC)
    await engine.close()
    again = await make_engine(cfg, rule_classes=[TradeFrequencyLimit])
    assert again.counter.get_fill_counts(ACC).session == 3
    await clock.advance(1)
    await again.process(TradeEvent(trade(ACC, pnl="5", at=clock.now(), order_id=9)))
    await again.drain()
    assert again.lockouts.is_locked_out(ACC)


async def test_weekly_trades_counted_as_fills(make_engine: EngineFactory, clock: FakeClock):
    rules = {"weekly_limits": {"enabled": True, "trades": 3, "count_trades_as": "fills"}}
    engine = await make_engine(rules, rule_classes=[WeeklyLimits])
    for order_id in (1, 1, 2):
        await engine.process(TradeEvent(trade(ACC, pnl=None, at=clock.now(), order_id=order_id)))
    await engine.drain()
    assert not engine.lockouts.is_locked_out(ACC)
    await engine.process(TradeEvent(trade(ACC, pnl="5", at=clock.now(), order_id=2)))
    await engine.drain()
    lock = engine.lockouts.get_lockout_info(ACC)[0]
    assert lock.rule == TRADES_LOCK and "4 fills this week" in lock.reason
    assert datetime(2026, 11, 22, 23, 0, tzinfo=UTC) == lock.until
