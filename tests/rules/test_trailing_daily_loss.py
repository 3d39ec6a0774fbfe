"""RULE-016 trailing_daily_loss: the floor trails the day's highest balance (or equity) by
`limit`, only rises during the day, and starts again at the daily reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from riskman.core.enums import OrderSide
from riskman.core.locks import Lockout, Unlock
from riskman.core.ports import AccountEvent, PositionEvent, QuoteEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.rules.trailing_daily_loss import TrailingDailyLoss
from tests.conftest import EngineFactory
from tests.fakes import (
    MNQ,
    FakeGateway,
    account,
    open_position,
    position,
    quote,
    settle,
    trade,
)

ACC = 7
RESET = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)  # 17:00 CST on T0's day


def _cfg(limit: int = 1000, trail: str = "realized") -> dict[str, Any]:
    return {"trailing_daily_loss": {"enabled": True, "limit": limit, "trail": trail}}


async def _engine(make_engine: EngineFactory, **cfg: Any) -> Engine:
    engine: Engine = await make_engine(_cfg(**cfg), rule_classes=[TrailingDailyLoss])
    return engine


async def _balance(engine: Engine, balance: str) -> None:
    await engine.process(AccountEvent(account(ACC, balance)))


async def _long(engine: Engine, gateway: FakeGateway, mark: str) -> None:
    """Long 1 MNQ at 21000 ($2 a point), marked at `mark`."""
    await open_position(engine, gateway, position(ACC, MNQ, 1, "21000"))
    await engine.process(QuoteEvent(MNQ, quote(mark)))


async def _close_long(engine: Engine, gateway: FakeGateway, balance: str, order: list[str]):
    """The long closed by the trader for `pnl`: its trade, position and balance updates in
    `order`."""
    gateway.set_position(position(ACC, MNQ, 0))
    before = engine.state.balance(ACC)
    assert before is not None
    pnl = str(Decimal(balance) - before)
    events = {
        "trade": TradeEvent(trade(ACC, pnl=pnl, contract_id=MNQ, side=OrderSide.ASK)),
        "position": PositionEvent(position(ACC, MNQ, 0)),
        "balance": AccountEvent(account(ACC, balance)),
    }
    for name in order:
        await engine.process(events[name])
        await settle(engine)


def _lock(engine: Engine) -> Lockout | None:
    return next((k for k in engine.lockouts.get_lockout_info(ACC) if k.rule == "RULE-016"), None)


def _rule(engine: Engine) -> TrailingDailyLoss:
    rule = engine.rules[0]
    assert isinstance(rule, TrailingDailyLoss)
    return rule


SCENARIOS = [
    # (what, trail, balances in order, mark of a long MNQ at 21000 or None, breached)
    ("below: $1 above the floor", "realized", ["50000", "49001"], None, False),
    ("at the floor", "realized", ["50000", "49000"], None, True),
    ("above: past the floor", "realized", ["50000", "48500"], None, True),
    ("the floor rose with the balance", "realized", ["50000", "50600", "49600"], None, True),
    ("one dollar short of the risen floor", "realized", ["50000", "50600", "49601"], None, False),
    ("the floor never falls back", "realized", ["50000", "50600", "50000", "49600"], None, True),
    ("open loss counts against the floor", "realized", ["50000"], "20500", True),  # -$1000 open
    ("open loss one dollar short", "realized", ["50000"], "20500.5", False),
    ("realized high ignores open profit", "realized", ["50000"], "21400", False),
]


@pytest.mark.parametrize(
    ("trail", "balances", "mark", "breached"),
    [pytest.param(t, b, m, x, id=what) for what, t, b, m, x in SCENARIOS],
)
async def test_scenarios(
    make_engine: EngineFactory, gateway: FakeGateway, trail, balances, mark, breached
) -> None:
    engine = await _engine(make_engine, trail=trail)
    for balance in balances:
        await _balance(engine, balance)
    if mark is not None:
        await _long(engine, gateway, mark)
    await settle(engine)
    lock = _lock(engine)
    assert (lock is not None) is breached
    if breached:
        assert lock is not None and lock.until == RESET and lock.unlock is Unlock.RESET
        assert any(r.rule == "RULE-016" and r.action == "flatten" for r in engine.recent_log())


async def test_equity_trail_follows_open_profit_and_gives_it_back(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine, trail="equity")
    await _balance(engine, "50000")
    await _long(engine, gateway, "21400")  # +$800 open: the high is $50,800
    assert _rule(engine).floor(ACC) == 49800
    await engine.process(QuoteEvent(MNQ, quote("20901")))  # -$198 open: $49,802 > floor
    await settle(engine)
    assert _lock(engine) is None
    await engine.process(QuoteEvent(MNQ, quote("20900")))  # $49,800: at the floor
    await settle(engine)
    assert _lock(engine) is not None
    assert gateway.named("close_contract")[0].args == (ACC, MNQ)


ORDERS = [
    ["trade", "position", "balance"],
    ["balance", "trade", "position"],
    ["position", "balance", "trade"],
    ["balance", "position", "trade"],
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_a_closing_gain_never_counts_twice_into_the_equity_high(
    make_engine: EngineFactory, gateway: FakeGateway, clock, order
) -> None:
    engine = await _engine(make_engine, trail="equity")
    await _balance(engine, "50000")
    await _long(engine, gateway, "21400")  # +$800 open: the high is $50,800
    await _close_long(engine, gateway, "50800", order)
    await clock.advance(2)
    await settle(engine)
    assert _rule(engine).floor(ACC) == 49800
    assert _lock(engine) is None


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_a_closing_loss_never_counts_twice_against_the_floor(
    make_engine: EngineFactory, gateway: FakeGateway, clock, order
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "50000")
    await _long(engine, gateway, "20600")  # -$800 open: $49,200 against a $49,000 floor
    await _close_long(engine, gateway, "49200", order)
    await clock.advance(2)
    await settle(engine)
    assert _lock(engine) is None
    assert gateway.named("close_contract") == []


async def test_a_balance_drop_no_fill_explains_counts_once_it_settles(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "50000")
    await _long(engine, gateway, "20900")  # -$200 open
    await _balance(engine, "49100")  # another loss: $48,900 with the open loss
    await clock.advance(2)
    await settle(engine)
    assert _lock(engine) is not None


async def test_the_high_survives_a_restart_and_starts_again_at_the_reset(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "50000")
    await _balance(engine, "50600")
    await settle(engine)
    await engine.close()
    again = await _engine(make_engine)
    assert _rule(again).floor(ACC) == 49600
    await _balance(again, "49700")
    await settle(again)
    assert _lock(again) is None
    await clock.set(RESET + timedelta(minutes=1))
    await settle(again)
    # A new day: the high is the balance at the reset.
    assert _rule(again).floor(ACC) == 48700
    await _balance(again, "48700")
    await settle(again)
    assert _lock(again) is not None


async def test_the_lock_lasts_until_the_reset_and_survives_a_restart(
    make_engine: EngineFactory, gateway: FakeGateway, clock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "50000")
    await _balance(engine, "49000")
    await settle(engine)
    await engine.close()
    again = await _engine(make_engine)
    assert _lock(again) is not None
    await clock.set(RESET)
    await settle(again)
    assert _lock(again) is None


async def test_status_shows_the_floor(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await _engine(make_engine, limit=500)
    assert _rule(engine).status(ACC).value == "no balance yet"
    await _balance(engine, "50000")
    await _balance(engine, "49750")
    status = _rule(engine).status(ACC)
    assert status.limit == "$49,500.00"
    assert status.used == pytest.approx(0.5)
