"""RULE-007 cooldown_after_loss: one closing fill losing at least a tier starts its cooldown."""

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
from riskman.rules.cooldown_after_loss import CooldownAfterLoss
from tests.conftest import EngineFactory
from tests.fakes import ES, MNQ, T0, FakeGateway, order, position, trade

ACC = 7
OTHER = 8
RULES = [CooldownAfterLoss]
CHICAGO = ZoneInfo("America/Chicago")
RESET_T0 = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)  # 17:00 CST after T0 (09:00 CST)
TIERS = [{"loss": 100, "cooldown": 300}, {"loss": 200, "cooldown": "15m"}]


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    """The shared fake clock, starting at T0 unless a test asks for another start."""
    return FakeClock(getattr(request, "param", T0))


def _cfg(tiers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"cooldown_after_loss": {"enabled": True, "tiers": tiers or TIERS}}


async def _fill(
    engine: Engine,
    pnl: str | None,
    *,
    fees: str = "0",
    at: datetime | None = None,
    account_id: int = ACC,
    contract_id: str = MNQ,
    trade_id: int | None = None,
    voided: bool = False,
) -> None:
    fill = trade(
        account_id,
        pnl=pnl,
        fees=fees,
        at=at or engine.clock.now(),
        contract_id=contract_id,
        trade_id=trade_id,
        voided=voided,
    )
    await engine.process(TradeEvent(fill))


def _cooldown(engine: Engine, account_id: int = ACC) -> Lockout | None:
    locks = [
        lock for lock in engine.lockouts.get_lockout_info(account_id) if lock.rule == "RULE-007"
    ]
    return locks[0] if locks else None


@pytest.mark.parametrize(
    ("pnl", "fees", "voided", "seconds"),
    [
        pytest.param("-99.99", "0", False, None, id="below-first-tier"),
        pytest.param("-100", "0", False, 300, id="at-first-tier"),
        pytest.param("-96", "4", False, 300, id="fees-reach-the-tier"),
        pytest.param("-95", "4.99", False, None, id="fees-just-short"),
        pytest.param("-150", "0", False, 300, id="between-tiers"),
        pytest.param("-200", "0", False, 900, id="at-second-tier"),
        pytest.param("-750", "0", False, 900, id="largest-tier-reached-wins"),
        pytest.param("50", "0", False, None, id="winning-fill"),
        pytest.param(None, "250", False, None, id="opening-fill-fees-never-count"),
        pytest.param("-300", "0", True, None, id="voided-fill"),
    ],
)
async def test_losing_fill_against_the_tiers(
    make_engine: EngineFactory,
    pnl: str | None,
    fees: str,
    voided: bool,
    seconds: int | None,
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, pnl, fees=fees, voided=voided)
    lock = _cooldown(engine)
    if seconds is None:
        assert lock is None
        return
    assert lock is not None
    assert (lock.kind, lock.unlock) == (LockKind.COOLDOWN, Unlock.TIME)
    assert lock.until == T0 + timedelta(seconds=seconds)


async def test_cooldown_reason_cancels_entries_and_never_closes(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    held = position(ACC, ES, 1, "5000")
    gateway.set_position(held)
    await engine.process(PositionEvent(held))
    entry = order(ACC, 21, MNQ, side=OrderSide.BID, order_type=OrderType.LIMIT, stop=None)
    gateway.orders.setdefault(ACC, {})[entry.id] = entry
    await engine.process(OrderEvent(entry))
    await _fill(engine, "-245", fees="5")
    await engine.actions.wait_idle()
    await engine.drain()
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.reason == "MNQ fill lost $250.00 net of fees (tier $200.00): cooldown for 15m"
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 21)]
    assert gateway.named("close_contract") == []


async def test_cooldown_ends_after_its_time(make_engine: EngineFactory, clock: FakeClock) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "-120")
    await clock.advance(299)
    assert engine.lockouts.is_locked_out(ACC)
    await clock.advance(1)
    assert not engine.lockouts.is_locked_out(ACC)


@pytest.mark.parametrize(
    ("first", "second", "until"),
    [
        pytest.param("-250", "-120", T0 + timedelta(seconds=900), id="smaller-loss-never-shortens"),
        pytest.param("-120", "-250", T0 + timedelta(seconds=60 + 900), id="bigger-loss-extends"),
        pytest.param("-120", "-110", T0 + timedelta(seconds=60 + 300), id="same-tier-restarts"),
    ],
)
async def test_a_second_loss_during_the_cooldown(
    make_engine: EngineFactory, clock: FakeClock, first: str, second: str, until: datetime
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, first)
    await clock.advance(60)
    await _fill(engine, second)
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.until == until


@pytest.mark.parametrize(
    ("pnl", "until"),
    [
        pytest.param("-150", None, id="five-minute-cooldown-already-over"),
        pytest.param("-250", T0 + timedelta(seconds=900), id="rest-of-fifteen-minutes"),
    ],
)
async def test_old_losing_fill_replayed_after_a_reconnect(
    make_engine: EngineFactory, clock: FakeClock, pnl: str, until: datetime | None
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await clock.advance(600)
    await _fill(engine, pnl, at=T0)
    lock = _cooldown(engine)
    assert (lock.until if lock else None) == until


async def test_the_same_fill_seen_twice_is_judged_once(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "-150", trade_id=555)
    await clock.advance(300)
    assert _cooldown(engine) is None
    await _fill(engine, "-150", trade_id=555, at=clock.now())  # a replay of the same fill
    assert _cooldown(engine) is None


async def test_restart_in_the_middle_keeps_cooldown_and_last_loss(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    await _fill(engine, "-150")
    await clock.advance(120)
    await engine.close()

    again = await make_engine(_cfg(), rule_classes=RULES)
    lock = _cooldown(again)
    assert lock is not None
    assert lock.until == T0 + timedelta(seconds=300)
    status = again.rules[0].status(ACC)
    assert status.value == "-$150.00"
    await _fill(again, "-210")
    lock = _cooldown(again)
    assert lock is not None
    assert lock.until == clock.now() + timedelta(seconds=900)


async def test_until_reset_tier_and_the_reset_clears_the_last_loss(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(
        _cfg([{"loss": 100, "cooldown": 300}, {"loss": 400, "cooldown": "until_reset"}]),
        rule_classes=RULES,
    )
    await _fill(engine, "-400")
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.until == RESET_T0
    assert lock.reason.endswith("cooldown until the daily reset")
    await clock.set(RESET_T0)
    assert _cooldown(engine) is None
    assert engine.rules[0].status(ACC).value == "no losing fill today"


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
    engine = await make_engine(_cfg([{"loss": 100, "cooldown": "until_reset"}]), rule_classes=RULES)
    await _fill(engine, "-100")
    lock = _cooldown(engine)
    assert lock is not None
    assert lock.until == reset_utc


async def test_per_account_override_of_the_tiers(make_engine: EngineFactory) -> None:
    engine = await make_engine(
        _cfg(),
        rule_classes=RULES,
        accounts=[
            ACC,
            {
                "id": OTHER,
                "rules": {"cooldown_after_loss": {"tiers": [{"loss": 500, "cooldown": 60}]}},
            },
        ],
    )
    await _fill(engine, "-250", account_id=ACC)
    await _fill(engine, "-250", account_id=OTHER)
    assert _cooldown(engine, ACC) is not None
    assert _cooldown(engine, OTHER) is None


async def test_status_shows_the_last_losing_fill_and_its_tier(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(_cfg(), rule_classes=RULES)
    rule = engine.rules[0]
    assert rule.status(ACC).value == "no losing fill today"
    await _fill(engine, "-150")
    await clock.advance(30)
    await _fill(engine, "80")  # a winner does not replace the last loss
    status = rule.status(ACC)
    assert (status.value, status.used) == ("-$150.00", 1.5)
    assert status.limit == "$100.00 5m · $200.00 15m"
    assert status.detail == "MNQ at 09:00:00, tier $100.00: cooldown for 5m"
    await clock.advance(600)
    await _fill(engine, "-40", contract_id=ES)
    assert rule.status(ACC).detail == "ES at 09:10:30, below the first tier"
