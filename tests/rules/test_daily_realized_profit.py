"""RULE-013 daily_realized_profit: realized P&L at the target flattens and locks to the reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from riskman.core.clock import FakeClock
from riskman.core.locks import LockKind, Lockout, Unlock
from riskman.core.ports import OrderEvent, PositionEvent, QuoteEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.rules.daily_realized_profit import DailyRealizedProfit
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, T0, FakeGateway, order, position, quote, settle, trade

ACC = 7
OTHER = 8
RULES = [DailyRealizedProfit]
CHICAGO = ZoneInfo("America/Chicago")
RESET_T0 = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)  # 17:00 CST after T0 (09:00 CST)


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    """The shared fake clock, starting at T0 unless a test asks for another start."""
    return FakeClock(getattr(request, "param", T0))


def _cfg(target: int = 1000) -> dict[str, Any]:
    return {"daily_realized_profit": {"enabled": True, "target": target}}


async def _fill(
    engine: Engine,
    pnl: str | None,
    *,
    fees: str = "0",
    at: datetime | None = None,
    account_id: int = ACC,
) -> None:
    await engine.process(
        TradeEvent(trade(account_id, pnl=pnl, fees=fees, at=at or engine.clock.now()))
    )
    await settle(engine)


def _lock(engine: Engine, account_id: int = ACC) -> Lockout | None:
    locks = [
        lock for lock in engine.lockouts.get_lockout_info(account_id) if lock.rule == "RULE-013"
    ]
    return locks[0] if locks else None


def _flattens(engine: Engine) -> int:
    return sum(1 for r in engine.recent_log() if r.rule == "RULE-013" and r.action == "flatten")


@pytest.mark.parametrize(
    ("fills", "locked"),
    [
        pytest.param([("999.99", "0")], False, id="below"),
        pytest.param([("1000", "0")], True, id="at-target"),
        pytest.param([("1250", "0")], True, id="above"),
        pytest.param([("1005", "5.01")], False, id="fees-keep-it-below"),
        pytest.param([("1005", "5")], True, id="at-target-net-of-fees"),
        pytest.param([("400", "0"), ("300", "0"), ("300", "0")], True, id="adds-up-over-fills"),
        pytest.param([("900", "0"), ("-100", "0"), ("150", "0")], False, id="a-loss-counts"),
        pytest.param([(None, "2"), ("1001", "0")], False, id="opening-fill-fees-count"),
    ],
)
async def test_realized_pnl_against_the_target(
    make_engine: EngineFactory, fills: list[tuple[str | None, str]], locked: bool
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    for pnl, fees in fills:
        await _fill(engine, pnl, fees=fees)
    assert (_lock(engine) is not None) == locked


async def test_target_reached_flattens_cancels_and_locks_until_the_reset(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    held = position(ACC, ES, 1, "5000")
    gateway.set_position(held)
    await engine.process(PositionEvent(held))
    working = order(ACC, 51, ES)
    gateway.orders.setdefault(ACC, {})[working.id] = working
    await engine.process(OrderEvent(working))
    await _fill(engine, "1010", fees="10")
    lock = _lock(engine)
    assert lock is not None
    assert (lock.kind, lock.unlock, lock.until) == (LockKind.LOCKOUT, Unlock.RESET, RESET_T0)
    assert lock.reason == "daily profit target reached: realized P&L $1,000.00 (target $1,000.00)"
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, ES)]
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 51)]


async def test_more_fills_after_the_lock_do_not_flatten_again(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "1000")
    await _fill(engine, "200")
    await _fill(engine, "300")
    assert _flattens(engine) == 1


async def test_open_profit_never_counts(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    held = position(ACC, ES, 2, "5000")
    gateway.set_position(held)
    await engine.process(PositionEvent(held))
    await engine.process(QuoteEvent(ES, quote("5050", bid="5050")))  # +$5,000 open
    await _fill(engine, "900")
    assert _lock(engine) is None
    assert gateway.named("close_contract") == []


async def test_a_fill_of_the_previous_trading_day_does_not_count(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    yesterday = datetime(2026, 11, 17, 16, 0, tzinfo=CHICAGO)  # before 17:00 CST on the 17th
    await _fill(engine, "1500", at=yesterday.astimezone(UTC))
    assert engine.pnl.get_daily_realized_pnl(ACC) == 0
    assert _lock(engine) is None


async def test_reset_unlocks_and_the_new_day_starts_from_zero(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "1200")
    assert _lock(engine) is not None
    await clock.set(RESET_T0 - timedelta(seconds=1))
    assert _lock(engine) is not None
    await clock.set(RESET_T0)
    await settle(engine)
    assert _lock(engine) is None
    await _fill(engine, "999")
    assert _lock(engine) is None
    await _fill(engine, "1")
    lock = _lock(engine)
    assert lock is not None
    assert lock.until == RESET_T0 + timedelta(days=1)


@pytest.mark.parametrize(
    ("clock", "reset_utc"),
    [
        pytest.param(
            datetime(2026, 3, 7, 20, 0, tzinfo=CHICAGO).astimezone(UTC),
            datetime(2026, 3, 8, 22, 0, tzinfo=UTC),
            id="23h-day-spring-forward-ends-17-00-CDT",
        ),
        pytest.param(
            datetime(2026, 10, 31, 20, 0, tzinfo=CHICAGO).astimezone(UTC),
            datetime(2026, 11, 1, 23, 0, tzinfo=UTC),
            id="25h-day-fall-back-ends-17-00-CST",
        ),
        pytest.param(
            datetime(2026, 3, 9, 9, 0, tzinfo=CHICAGO).astimezone(UTC),
            datetime(2026, 3, 9, 22, 0, tzinfo=UTC),
            id="first-full-day-of-CDT",
        ),
    ],
    indirect=["clock"],
)
async def test_lock_ends_at_17_00_local_across_dst(
    make_engine: EngineFactory, clock: FakeClock, reset_utc: datetime
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "1000")
    lock = _lock(engine)
    assert lock is not None
    assert lock.until == reset_utc


async def test_restart_in_the_middle_keeps_the_day_and_the_lock(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "600")
    await engine.close()

    again = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(again, "400")
    assert _lock(again) is not None
    await again.close()

    third = await make_engine(_cfg(), rule_classes=RULES)
    await settle(third)
    assert _lock(third) is not None
    assert _flattens(third) == 1  # the start-up check did not flatten a second time
    await clock.set(RESET_T0)
    assert _lock(third) is None


async def test_per_account_override_of_the_target(make_engine: EngineFactory) -> None:
    engine = await make_engine(
        _cfg(),
        rule_classes=RULES,
        accounts=[ACC, {"id": OTHER, "rules": {"daily_realized_profit": {"target": 2000}}}],
    )
    await _fill(engine, "1500", account_id=ACC)
    await _fill(engine, "1500", account_id=OTHER)
    assert _lock(engine, ACC) is not None
    assert _lock(engine, OTHER) is None


async def test_status_shows_realized_against_the_target(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "260", fees="10")
    held = position(ACC, MNQ, 1)
    gateway.set_position(held)
    await engine.process(PositionEvent(held))
    await engine.process(QuoteEvent(MNQ, quote("21100", bid="21100")))
    status = engine.rules[0].status(ACC)
    assert (status.value, status.limit, status.used) == ("$250.00", "$1,000.00", 0.25)
