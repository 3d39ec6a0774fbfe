"""RULE-017 weekly_limits: the trading week's P&L (from Sunday's reset) against `loss` and
`profit`, and its trades against `trades`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from riskman.core.clock import FakeClock
from riskman.core.locks import LockKind, Lockout, Unlock
from riskman.core.ports import QuoteEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.rules.weekly_limits import TRADES_LOCK, WeeklyLimits
from tests.conftest import EngineFactory
from tests.fakes import MNQ, FakeGateway, open_position, position, quote, settle, trade

ACC = 7
MONDAY = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)  # 09:00 CST
SUNDAY_RESET = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # 17:00 CST: the next week begins
DAY = timedelta(days=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY)


def _cfg(**keys: Any) -> dict[str, Any]:
    return {"weekly_limits": {"enabled": True, **keys}}


async def _engine(make_engine: EngineFactory, **keys: Any) -> Engine:
    engine: Engine = await make_engine(_cfg(**keys), rule_classes=[WeeklyLimits])
    return engine


async def _fill(engine: Engine, clock: FakeClock, pnl: str | None, order_id: int | None = None):
    await engine.process(TradeEvent(trade(ACC, pnl=pnl, at=clock.now(), order_id=order_id)))
    await settle(engine)


def _lock(engine: Engine, name: str = "RULE-017") -> Lockout | None:
    return next((k for k in engine.lockouts.get_lockout_info(ACC) if k.rule == name), None)


def _rule(engine: Engine) -> WeeklyLimits:
    rule = engine.rules[0]
    assert isinstance(rule, WeeklyLimits)
    return rule


@pytest.mark.parametrize(
    ("keys", "fills", "locked"),
    [
        pytest.param({"loss": 1000}, ["-999.99"], False, id="loss-below"),
        pytest.param({"loss": 1000}, ["-1000"], True, id="loss-at"),
        pytest.param({"loss": 1000}, ["-400", "-700"], True, id="loss-above"),
        pytest.param({"profit": 2000}, ["1999"], False, id="profit-below"),
        pytest.param({"profit": 2000}, ["2000"], True, id="profit-at"),
        pytest.param({"loss": 1000, "profit": 2000}, ["2500", "-600"], True, id="profit-first"),
        pytest.param({"trades": 5}, ["-5000"], False, id="loss-not-watched"),
    ],
)
async def test_pnl_scenarios(make_engine: EngineFactory, clock: FakeClock, keys, fills, locked):
    engine = await _engine(make_engine, **keys)
    for pnl in fills:
        await _fill(engine, clock, pnl)
    lock = _lock(engine)
    assert (lock is not None) is locked
    if lock is not None:
        assert lock.kind is LockKind.LOCKOUT and lock.unlock is Unlock.RESET
        assert lock.until == SUNDAY_RESET
        assert any(r.rule == "RULE-017" and r.action == "flatten" for r in engine.recent_log())


async def test_the_week_adds_its_days_up_across_resets(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, loss=1500)
    await _fill(engine, clock, "-1000")
    await clock.advance(DAY.total_seconds())  # Tuesday, after Monday's reset
    await settle(engine)
    assert engine.pnl.get_daily_realized_pnl(ACC) == 0
    assert _rule(engine).pnl(ACC)[0] == -1000
    await _fill(engine, clock, "-499")
    assert _lock(engine) is None
    await _fill(engine, clock, "-1")
    lock = _lock(engine)
    assert lock is not None and lock.until == SUNDAY_RESET


async def test_a_restart_in_the_middle_of_the_week_keeps_the_earlier_days(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, loss=1500, trades=3)
    await _fill(engine, clock, "-1000")
    await _fill(engine, clock, None)
    await clock.advance(2 * DAY.total_seconds())  # Wednesday
    await settle(engine)
    await engine.close()
    again = await _engine(make_engine, loss=1500, trades=3)
    assert _rule(again).pnl(ACC)[0] == -1000
    assert _rule(again).trades(ACC) == 2
    await _fill(again, clock, "-500")
    assert _lock(again) is not None


async def test_open_loss_counts_unless_told_otherwise(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    for include, locked in ((False, False), (True, True)):
        engine = await _engine(make_engine, loss=1000, include_unrealized=include)
        gateway.positions.clear()  # the -800 fill below closes what the last round held
        await _fill(engine, clock, "-800")
        await open_position(engine, gateway, position(ACC, MNQ, 1, "21000"))
        await engine.process(QuoteEvent(MNQ, quote("20900")))  # -$200 open
        await settle(engine)
        assert (_lock(engine) is not None) is locked
        await engine.close()


async def test_a_new_week_starts_at_sundays_reset(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, loss=1000)
    await clock.advance(4 * DAY.total_seconds())  # Friday
    await _fill(engine, clock, "-900")
    await clock.set(SUNDAY_RESET + timedelta(hours=1))
    await settle(engine)
    assert _rule(engine).pnl(ACC)[0] == 0
    await _fill(engine, clock, "-900")
    assert _lock(engine) is None


async def test_the_lock_holds_through_the_daily_resets_until_sunday(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, loss=1000)
    await _fill(engine, clock, "-1000")
    await clock.advance(3 * DAY.total_seconds())
    await settle(engine)
    assert _lock(engine) is not None
    await engine.close()
    again = await _engine(make_engine, loss=1000)
    assert _lock(again) is not None
    await clock.set(SUNDAY_RESET)
    await settle(again)
    assert _lock(again) is None


@pytest.mark.parametrize(
    ("orders", "cooled"),
    [
        pytest.param([1, 2, 3], False, id="at-the-limit"),
        pytest.param([1, 2, 3, 4], True, id="one-above"),
        pytest.param([1, 1, 2, 2, 3, 3], False, id="partial-fills-count-once"),
    ],
)
async def test_trade_scenarios(make_engine: EngineFactory, clock: FakeClock, orders, cooled):
    engine = await _engine(make_engine, trades=3)
    for order_id in orders:
        await _fill(engine, clock, None, order_id=order_id)
    lock = _lock(engine, TRADES_LOCK)
    assert (lock is not None) is cooled
    if lock is not None:
        assert lock.kind is LockKind.COOLDOWN and lock.until == SUNDAY_RESET
    assert _lock(engine) is None


async def test_trades_carry_across_the_daily_reset(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, trades=2, loss=500)
    await _fill(engine, clock, None, order_id=1)
    await _fill(engine, clock, None, order_id=2)
    await clock.advance(DAY.total_seconds())
    await settle(engine)
    assert _rule(engine).trades(ACC) == 2
    await _fill(engine, clock, None, order_id=3)
    assert _lock(engine, TRADES_LOCK) is not None
    # A loss later in the week still locks hard, beside the cooldown.
    await _fill(engine, clock, "-500", order_id=4)
    lock = _lock(engine)
    assert lock is not None and lock.kind is LockKind.LOCKOUT


def test_config_needs_something_to_watch() -> None:
    from pydantic import ValidationError

    from riskman.config import WeeklyLimitsConfig as Config

    with pytest.raises(ValidationError, match="set loss, profit or trades"):
        Config(enabled=True)
    assert Config(enabled=False).loss is None


async def test_the_trades_cooldown_reports_as_rule_017(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    from riskman.engine.reports import SETTLE

    engine = await _engine(make_engine, trades=1)
    await _fill(engine, clock, None, order_id=1)
    await _fill(engine, clock, None, order_id=2)
    await clock.advance(SETTLE.total_seconds() + 0.1)
    await settle(engine)
    report = next(r for r in engine.reports.done if r.rule == TRADES_LOCK)
    assert report.title == "Weekly limits"
    assert report.threshold.endswith("1 trades")
