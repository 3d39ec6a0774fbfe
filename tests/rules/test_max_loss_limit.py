"""RULE-014 max_loss_limit: Topstep's trailing MLL, moved only at the daily reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide
from riskman.core.locks import Lockout, Unlock
from riskman.core.ports import AccountEvent, PositionEvent, QuoteEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.engine.fills import SETTLE_AFTER
from riskman.rules.max_loss_limit import MaxLossLimit
from tests.conftest import EngineFactory
from tests.fakes import MNQ, T0, FakeGateway, account, open_position, position, quote, trade

ACC = 7
OTHER = 8
CHICAGO = ZoneInfo("America/Chicago")


def mll(**overrides: Any) -> dict[str, Any]:
    return {
        "max_loss_limit": {
            "enabled": True,
            "starting_balance": 50000,
            "drawdown": 2000,
            **overrides,
        }
    }


def ct(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=CHICAGO).astimezone(UTC)


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    return FakeClock(getattr(request, "param", T0))


async def _engine(
    make_engine: EngineFactory, rules: dict[str, Any] | None = None, **top: Any
) -> Engine:
    engine: Engine = await make_engine(rules or mll(), rule_classes=[MaxLossLimit], **top)
    return engine


async def _balance(engine: Engine, balance: str, account_id: int = ACC) -> None:
    await engine.process(AccountEvent(account(account_id, balance)))


async def _long(engine: Engine, gateway: FakeGateway, mark: str | None) -> None:
    """Long 1 MNQ at 21000 ($2 a point); `mark` None: no quote at all."""
    pos = position(ACC, MNQ, 1, "21000")
    await open_position(engine, gateway, pos)
    if mark is not None:
        await engine.process(QuoteEvent(MNQ, quote(mark)))


def _lock(engine: Engine, account_id: int = ACC) -> Lockout | None:
    locks = [k for k in engine.lockouts.get_lockout_info(account_id) if k.rule == "RULE-014"]
    return locks[0] if locks else None


def _rule(engine: Engine) -> MaxLossLimit:
    rule = engine.rules[0]
    assert isinstance(rule, MaxLossLimit)
    return rule


# --- the scenario table ---------------------------------------------------------------------

SCENARIOS = [
    # (what, config overrides, balance, mark of a long MNQ at 21000 or None, breached)
    ("$1 above the $48,000 floor", {}, "48001", None, False),
    ("at the floor", {}, "48000", None, True),
    ("below the floor", {}, "47999.99", None, True),
    ("open loss reaches the floor", {}, "48500", "20750", True),  # -$500
    ("open loss 50 cents short of it", {}, "48500", "20750.25", False),  # -$499.50
    ("open profit keeps it above", {}, "47900", "21100", False),  # +$200
    ("no quote: the balance alone counts", {}, "48100", None, False),
    ("eod high 51,200: floor 49,200", {"eod_high": 51200}, "49200", None, True),
    ("eod high 51,200: $1 above", {"eod_high": 51200}, "49201", None, False),
    ("eod high 52,500: floor stops at 50,000", {"eod_high": 52500}, "50000", None, True),
    ("eod high 52,500: above 50,000", {"eod_high": 52500}, "50000.01", None, False),
]


@pytest.mark.parametrize(
    ("what", "overrides", "balance", "mark", "breached"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
async def test_balance_plus_open_pnl_at_the_floor_flattens_and_locks_for_the_admin(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock: FakeClock,
    what: str,
    overrides: dict[str, Any],
    balance: str,
    mark: str | None,
    breached: bool,
) -> None:
    engine = await _engine(make_engine, mll(**overrides))
    if mark is not None or what.startswith("no quote"):
        await _long(engine, gateway, mark)
    await _balance(engine, balance)
    await clock.advance(1)  # a breach seen on a balance update with positions open is confirmed
    await engine.actions.wait_idle()
    await engine.drain()
    lock = _lock(engine)
    if not breached:
        assert lock is None and gateway.named("close_contract") == []
        return
    assert lock is not None and (lock.until, lock.unlock) == (None, Unlock.ADMIN)
    assert "reached the maximum loss limit" in lock.reason
    if mark is not None:
        assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]
    assert any(r.action == "flatten" for r in engine.recent_log())


async def test_quote_moving_the_open_loss_to_the_floor_breaches(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "48300")
    await _long(engine, gateway, "20900")  # -$200: $48,100
    assert _lock(engine) is None
    await engine.process(QuoteEvent(MNQ, quote("20850")))  # -$300: $48,000
    await engine.actions.wait_idle()
    lock = _lock(engine)
    assert lock is not None
    assert lock.reason == (
        "balance + open P&L $48,000.00 reached the maximum loss limit $48,000.00"
    )
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]


async def test_stale_quote_never_breaches_by_itself(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await engine.process(QuoteEvent(MNQ, quote("20900")))  # would be -$200
    await clock.advance(11)  # stale by the time the position is seen
    await _long(engine, gateway, None)
    await _balance(engine, "48100")
    assert _lock(engine) is None
    assert _rule(engine).status(ACC).stale
    await engine.process(QuoteEvent(MNQ, quote("20900")))  # fresh now: $47,900
    await engine.actions.wait_idle()
    assert _lock(engine) is not None


async def test_lock_is_not_issued_again_and_only_the_admin_clears_it(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "47900")
    await _balance(engine, "47850")
    engine.submit_check("test")
    await engine.drain()
    assert sum(1 for r in engine.recent_log() if r.action == "lockout") == 1
    await clock.advance(3 * 24 * 3600)  # resets come and go
    assert _lock(engine) is not None
    await engine.request_unlock(ACC, "account reset by Topstep")
    assert _lock(engine) is not None, "an unlock waits for admin.unlock_delay"
    await clock.advance(engine.settings.admin.unlock_delay)
    assert _lock(engine) is None


# --- the trailing floor moves only at the daily reset ---------------------------------------


async def test_floor_trails_the_end_of_day_balance_only(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    rule = _rule(engine)
    await _balance(engine, "53000")  # an intraday high does not count
    await _balance(engine, "51200")
    assert rule.floor(ACC) == Decimal(48000)
    await clock.set(ct(11, 18, 16, 59, 59))
    assert rule.floor(ACC) == Decimal(48000)
    await clock.set(ct(11, 18, 17))  # daily reset: EOD balance 51,200
    assert rule.floor(ACC) == Decimal(49200)

    await _balance(engine, "50500")
    await clock.set(ct(11, 19, 17))  # a lower EOD balance never lowers the floor
    assert rule.floor(ACC) == Decimal(49200)
    await _balance(engine, "49200.01")
    assert _lock(engine) is None
    await _balance(engine, "49200")
    assert _lock(engine) is not None


async def test_floor_stops_trailing_at_the_starting_balance(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "52750")
    await clock.set(ct(11, 18, 17))
    assert _rule(engine).floor(ACC) == Decimal(50000)
    assert _rule(engine).eod_high(ACC) == Decimal(52750)


async def test_restart_keeps_the_eod_high_and_still_enforces(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "51200")
    await clock.set(ct(11, 18, 17))
    await engine.close()

    again = await _engine(make_engine)
    assert _rule(again).floor(ACC) == Decimal(49200)
    await _balance(again, "49150")
    await again.actions.wait_idle()
    assert _lock(again) is not None


async def test_reset_caught_up_at_start_never_lowers_the_stored_high(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "52000")
    await clock.set(ct(11, 18, 17))
    await _balance(engine, "51000")
    await engine.close()
    # Down across the next reset: the catch-up runs before the rules restore their state.
    await clock.set(ct(11, 20, 9))

    again = await _engine(make_engine)
    assert _rule(again).eod_high(ACC) == Decimal(52000)
    assert _rule(again).floor(ACC) == Decimal(50000)


async def test_restart_while_locked_keeps_the_lock_and_closes_new_positions(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "47000")
    await engine.actions.wait_idle()
    await engine.close()
    await clock.advance(24 * 3600)

    again = await _engine(make_engine)
    assert _lock(again) is not None
    await _long(again, gateway, "21000")
    await gateway.wait_call("close_contract")
    await again.actions.wait_idle()
    assert [r.rule for r in again.recent_log() if r.action == "close"] == ["LOCKOUT"]
    assert sum(1 for r in again.recent_log() if r.action == "lockout") == 1


async def test_per_account_override(make_engine: EngineFactory, gateway: FakeGateway) -> None:
    engine = await _engine(
        make_engine,
        accounts=[
            ACC,
            {
                "id": OTHER,
                "rules": {"max_loss_limit": {"starting_balance": 100000, "drawdown": 3000}},
            },
        ],
    )
    await _balance(engine, "97500", OTHER)
    await _balance(engine, "49000", ACC)
    assert _lock(engine, OTHER) is None and _lock(engine, ACC) is None
    await _balance(engine, "97000", OTHER)
    assert _lock(engine, OTHER) is not None and _lock(engine, ACC) is None


@pytest.mark.parametrize(
    ("clock", "reset"),
    [
        (datetime(2026, 3, 8, 17, tzinfo=UTC), datetime(2026, 3, 8, 22, tzinfo=UTC)),  # CDT
        (datetime(2026, 11, 1, 18, tzinfo=UTC), datetime(2026, 11, 1, 23, tzinfo=UTC)),  # CST
    ],
    indirect=["clock"],
    ids=["2026-03-08", "2026-11-01"],
)
async def test_eod_high_moves_at_the_17_00_reset_on_dst_days(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock, reset: datetime
) -> None:
    engine = await _engine(make_engine)
    await _balance(engine, "51000")
    await clock.set(reset - timedelta(seconds=1))
    assert _rule(engine).floor(ACC) == Decimal(48000)
    await clock.set(reset)
    assert _rule(engine).floor(ACC) == Decimal(49000)


async def test_status_shows_equity_against_the_floor(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await _engine(make_engine)
    assert _rule(engine).status(ACC).value == "no balance yet"
    await _balance(engine, "49300")
    status = _rule(engine).status(ACC)
    assert (
        status.value == "$1,300.00 above the floor $48,000.00 (balance+open $49,300.00, used 35%)"
    )
    assert status.used == pytest.approx(0.35)
    assert status.limit == "$48,000.00"
    assert status.detail == (
        "tomorrow's floor $48,000.00 if the day ended now; EOD high $50,000.00, drawdown $2,000.00"
    )
    await _balance(engine, "50800")  # a new high: tomorrow's floor trails up
    assert (
        _rule(engine)
        .status(ACC)
        .detail.startswith("tomorrow's floor $48,800.00 if the day ended now")
    )
    await _balance(engine, "49300")
    await _long(engine, gateway, None)
    assert _rule(engine).status(ACC).stale


async def test_balance_update_before_the_close_event_does_not_count_the_loss_twice(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    # Floor 48,000. Long MNQ marked at a -$1,200 open loss; the trader closes it: the gateway
    # sends the new balance (50,000 - 1,200 = 48,800) before the position's size-0 event, and
    # no trade at all (it was lost): believed together after SETTLE_AFTER.
    engine = await _engine(make_engine, mll())
    await _balance(engine, "50000")
    await _long(engine, gateway, "20400")  # 21000 -> 20400 = -600 points x $2 = -$1,200
    await _balance(engine, "48800")  # for a moment: 48,800 + (-1,200) = 47,600 < floor
    await engine.process(PositionEvent(position(ACC, MNQ, 0)))
    await clock.advance(2)
    await engine.actions.wait_idle()
    assert _lock(engine) is None and gateway.named("close_contract") == []
    assert engine.state.balance(ACC) == Decimal(48800)


@pytest.mark.parametrize("order", ["account, trade, position", "account, position, trade"])
async def test_balance_update_before_the_fill_waits_for_its_trade_not_for_a_timer(
    make_engine: EngineFactory, gateway: FakeGateway, order: str
) -> None:
    # The same close with its trade: exact at every event, no clock needed.
    engine = await _engine(make_engine, mll())
    await _balance(engine, "50000")
    await engine.process(TradeEvent(trade(ACC, pnl=None, side=OrderSide.BID, contract_id=MNQ)))
    await _long(engine, gateway, "20400")  # its position update
    fill = trade(ACC, pnl="-1200", side=OrderSide.ASK, contract_id=MNQ)
    events = {
        "account": AccountEvent(account(ACC, "48800")),
        "trade": TradeEvent(fill),
        "position": PositionEvent(position(ACC, MNQ, 0)),
    }
    for name in order.split(", "):
        await engine.process(events[name])
        assert _lock(engine) is None, f"locked after the {name} update"
        assert engine.state.balance(ACC) + engine.pnl.calculate_unrealized_pnl(ACC).total in (
            Decimal(48800),
        ), name
    assert gateway.named("close_contract") == []


async def test_a_balance_drop_no_fill_explains_is_believed_after_settle_after(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, mll())
    await _balance(engine, "50000")
    await _long(engine, gateway, "21000")
    await _balance(engine, "47900")  # a charge, not a fill
    assert _lock(engine) is None
    await clock.advance(SETTLE_AFTER)
    await engine.actions.wait_idle()
    lock = _lock(engine)
    assert lock is not None and "$47,900.00" in lock.reason
