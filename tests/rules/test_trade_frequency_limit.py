"""RULE-006 trade_frequency_limit: too many trades in a rolling window start a cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import LockKind, Lockout, Unlock
from riskman.core.ports import OrderEvent, PositionEvent, TradeEvent
from riskman.engine.engine import Engine
from riskman.rules.trade_frequency_limit import TradeFrequencyLimit, fmt_duration
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, T0, FakeGateway, order, position, trade

ACC = 7
OTHER = 8
RULES = [TradeFrequencyLimit]
CHICAGO = ZoneInfo("America/Chicago")
RESET_T0 = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)  # 17:00 CST after T0 (09:00 CST)


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    """The shared fake clock, starting at T0 unless a test asks for another start."""
    return FakeClock(getattr(request, "param", T0))


def _cfg(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "enabled": True,
        "per_minute": 3,
        "per_hour": 10,
        "per_session": 50,
        "cooldowns": {"per_minute": 60, "per_hour": 1800, "per_session": "until_reset"},
    }
    cfg.update(overrides)
    return {"trade_frequency_limit": cfg}


async def _fill(
    engine: Engine,
    at: datetime,
    *,
    account_id: int = ACC,
    order_id: int | None = None,
    side: OrderSide = OrderSide.BID,
) -> None:
    """A fill of 1 ES and the position update that confirms it, as the gateway sends them."""
    await engine.process(
        TradeEvent(trade(account_id, pnl=None, at=at, order_id=order_id, contract_id=ES, side=side))
    )
    state = engine.state.get_position(account_id, ES)
    held = position(account_id, ES, 0) if state is None else state.position
    await engine.process(PositionEvent(held))


async def _fills(engine: Engine, clock: FakeClock, count: int, spacing: float) -> datetime:
    """`count` live fills `spacing` seconds apart; returns the last fill's time."""
    for index in range(count):
        if index:
            await clock.advance(spacing)
        # Buying and selling in turn: the even fills close what the odd ones opened.
        await _fill(engine, clock.now(), side=OrderSide.ASK if index % 2 else OrderSide.BID)
    return clock.now()


def _cooldown(engine: Engine, account_id: int = ACC) -> Lockout | None:
    locks = [
        lock for lock in engine.lockouts.get_lockout_info(account_id) if lock.rule == "RULE-006"
    ]
    return locks[0] if locks else None


@pytest.mark.parametrize(
    ("rules", "count", "spacing", "ends_after_last"),
    [
        pytest.param(_cfg(), 2, 5, None, id="minute-below"),
        pytest.param(_cfg(), 3, 5, None, id="minute-at-limit"),
        pytest.param(_cfg(), 4, 5, timedelta(seconds=60), id="minute-above"),
        pytest.param(_cfg(), 4, 20, None, id="minute-spread-over-61s"),
        pytest.param(_cfg(), 10, 61, None, id="hour-at-limit"),
        pytest.param(_cfg(), 11, 61, timedelta(seconds=1800), id="hour-above"),
        pytest.param(
            _cfg(per_hour=None, per_session=5), 5, 61, None, id="session-at-limit-no-hour"
        ),
        pytest.param(_cfg(per_hour=None, per_session=5), 6, 61, "reset", id="session-above"),
        pytest.param(_cfg(per_minute=None), 6, 5, None, id="minute-window-off"),
        pytest.param(
            _cfg(per_minute=2, per_hour=3, cooldowns={"per_minute": 60, "per_hour": "30m"}),
            4,
            5,
            timedelta(minutes=30),
            id="two-windows-longest-wins",
        ),
        pytest.param(
            _cfg(per_minute=2, per_hour=3, cooldowns={"per_minute": "2h", "per_hour": "30m"}),
            4,
            5,
            timedelta(hours=2),
            id="minute-cooldown-longer-than-hour-cooldown",
        ),
    ],
)
async def test_trade_count_against_the_limits(
    make_engine: EngineFactory,
    clock: FakeClock,
    rules: dict[str, Any],
    count: int,
    spacing: float,
    ends_after_last: timedelta | str | None,
) -> None:
    engine = await make_engine(rules, rule_classes=RULES)
    last = await _fills(engine, clock, count, spacing)
    lock = _cooldown(engine)
    if ends_after_last is None:
        assert lock is None
        return
    assert lock is not None
    assert (lock.kind, lock.unlock) == (LockKind.COOLDOWN, Unlock.TIME)
    if isinstance(ends_after_last, timedelta):
        assert lock.until == last + ends_after_last
    else:
        assert lock.until == RESET_T0


async def test_cooldown_reason_cancels_entries_and_keeps_positions_and_stops(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    held = position(ACC, MNQ, 1)
    gateway.set_position(held)
    await engine.process(PositionEvent(held))
    stop = order(ACC, 11, side=OrderSide.ASK, order_type=OrderType.STOP)
    entry = order(ACC, 12, side=OrderSide.BID, order_type=OrderType.LIMIT, stop=None, limit="20000")
    for working in (stop, entry):
        gateway.orders.setdefault(ACC, {})[working.id] = working
        await engine.process(OrderEvent(working))
    await _fills(engine, clock, 4, 5)
    await engine.actions.wait_idle()
    await engine.drain()
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.reason == "4 trades within a minute (limit 3): cooldown for 1m"
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 12)]
    assert gateway.named("close_contract") == []
    assert engine.state.get_position(ACC, MNQ) is not None


async def test_cooldown_ends_and_a_later_trade_within_limits_starts_none(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fills(engine, clock, 4, 5)
    assert _cooldown(engine) is not None
    await clock.advance(60)
    assert _cooldown(engine) is None
    assert not engine.lockouts.is_locked_out(ACC)
    await _fill(engine, clock.now())
    assert _cooldown(engine) is None


async def test_each_further_breach_restarts_the_cooldown_from_that_trade(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fills(engine, clock, 4, 5)
    await clock.advance(20)
    await _fill(engine, clock.now())  # 5 trades within a minute
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.until == clock.now() + timedelta(seconds=60)
    assert lock.reason.startswith("5 trades within a minute")


async def test_partial_fills_of_one_order_count_as_one_trade(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    for order_id in (1, 1, 1, 2, 3):
        await _fill(engine, clock.now(), order_id=order_id)
        await clock.advance(1)
    assert _cooldown(engine) is None


@pytest.mark.parametrize(
    ("minute_cooldown", "ends"),
    [
        pytest.param(60, None, id="cooldown-already-over-not-started"),
        pytest.param(1800, T0 + timedelta(seconds=15 + 1800), id="rest-of-cooldown-applies"),
    ],
)
async def test_old_fills_replayed_after_a_reconnect(
    make_engine: EngineFactory,
    clock: FakeClock,
    minute_cooldown: int,
    ends: datetime | None,
) -> None:
    engine = await make_engine(_cfg(cooldowns={"per_minute": minute_cooldown}), rule_classes=RULES)
    await clock.advance(600)
    for seconds in (0, 5, 10, 15):  # four trades in 15 s, ten minutes ago
        await _fill(engine, T0 + timedelta(seconds=seconds))
    lock = _cooldown(engine)
    assert (lock.until if lock else None) == ends


async def test_replayed_fill_counts_in_its_own_minute_not_now(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    for seconds in (0, 55, 110):
        await clock.set(T0 + timedelta(seconds=seconds))
        await _fill(engine, clock.now())
    # Missed while disconnected: no rolling minute ever held more than 3 trades.
    await _fill(engine, T0 + timedelta(seconds=30))
    assert _cooldown(engine) is None


async def test_replayed_fill_that_overfills_a_window_cools_down_from_its_last_trade(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    for seconds in (0, 20, 40):
        await clock.set(T0 + timedelta(seconds=seconds))
        await _fill(engine, clock.now())
    await clock.advance(10)
    await _fill(engine, T0 + timedelta(seconds=10))  # the minute ending at 0:40 now holds 4
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.until == T0 + timedelta(seconds=40 + 60)


async def test_restart_in_the_middle_keeps_counts_and_cooldown(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fills(engine, clock, 3, 5)
    await engine.close()

    again = await make_engine(_cfg(), rule_classes=RULES)
    assert again.counter.get_trade_counts(ACC).minute == 3
    await clock.advance(5)
    await _fill(again, clock.now())
    lock = _cooldown(again)
    assert lock is not None
    until = lock.until
    assert until is not None
    await again.close()

    third = await make_engine(_cfg(), rule_classes=RULES)
    restored = _cooldown(third)
    assert restored is not None
    assert restored.until == until
    await clock.set(until)
    assert _cooldown(third) is None


async def test_session_cooldown_ends_at_the_daily_reset_and_the_count_restarts(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(per_hour=None, per_session=3), rule_classes=RULES)
    await _fills(engine, clock, 4, 120)
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.until == RESET_T0
    assert lock.reason == "4 trades this session (limit 3): cooldown until the daily reset"
    await clock.set(RESET_T0)
    assert _cooldown(engine) is None
    assert engine.counter.get_trade_counts(ACC).session == 0
    await _fills(engine, clock, 3, 120)
    assert _cooldown(engine) is None


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
    ],
    indirect=["clock"],
)
async def test_until_reset_cooldown_on_dst_days_ends_at_17_00_local(
    make_engine: EngineFactory, clock: FakeClock, reset_utc: datetime
) -> None:
    engine = await make_engine(_cfg(per_hour=None, per_session=2), rule_classes=RULES)
    await _fills(engine, clock, 3, 120)
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.until == reset_utc
    await clock.set(reset_utc - timedelta(seconds=1))
    assert _cooldown(engine) is not None
    await clock.advance(1)
    assert _cooldown(engine) is None


async def test_per_account_override_of_the_minute_limit(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(
        _cfg(),
        rule_classes=RULES,
        accounts=[ACC, {"id": OTHER, "rules": {"trade_frequency_limit": {"per_minute": 5}}}],
    )
    for _ in range(4):
        await _fill(engine, clock.now(), account_id=ACC)
        await _fill(engine, clock.now(), account_id=OTHER)
        await clock.advance(5)
    assert _cooldown(engine, ACC) is not None
    assert _cooldown(engine, OTHER) is None


async def test_status_shows_every_window_against_its_limit(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(per_session=None), rule_classes=RULES)
    await _fills(engine, clock, 2, 5)
    status = engine.rules[0].status(ACC)
    assert status.value == "2/3 min · 2/10 h · 2 session"
    assert status.limit == "3 min · 10 h · - session"
    assert status.used == pytest.approx(2 / 3)
    assert status.detail == "cooldowns: 1m · 30m · until the daily reset"


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (45, "for 45s"),
        (60, "for 1m"),
        (5400, "for 1h 30m"),
        ("until_reset", "until the daily reset"),
    ],
)
def test_cooldown_durations_read_naturally(duration: float | str, text: str) -> None:
    assert fmt_duration(duration) == text
