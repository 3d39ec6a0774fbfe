"""RULE-009 session_block_outside: sessions, holidays, early closes, DST, restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import Lockout, Unlock
from riskman.core.models import Order
from riskman.core.ports import AccountEvent, OrderEvent
from riskman.engine.engine import Engine
from riskman.engine.fills import SETTLE_AFTER
from riskman.rules.session_block_outside import SessionBlockOutside
from tests.conftest import EngineFactory, make_settings
from tests.fakes import MNQ, T0, FakeGateway, account, open_position, order, position

ACC = 7
OTHER = 8
CHICAGO = ZoneInfo("America/Chicago")
SECOND = timedelta(seconds=1)


def ct(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A Chicago wall time in 2026, as the UTC instant."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=CHICAGO).astimezone(UTC)


def session(**overrides: Any) -> dict[str, Any]:
    return {"session_block_outside": {"enabled": True, **overrides}}


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    """T0 (Wed 2026-11-18 09:00 CT) unless a test asks for another start."""
    return FakeClock(getattr(request, "param", T0))


async def _engine(make_engine: EngineFactory, rules: dict[str, Any], **top: Any) -> Engine:
    engine: Engine = await make_engine(rules, rule_classes=[SessionBlockOutside], **top)
    await engine.process(AccountEvent(account(ACC)))
    return engine


async def _order(engine: Engine, gateway: FakeGateway, working: Order) -> None:
    gateway.orders.setdefault(working.account_id, {})[working.id] = working
    await engine.process(OrderEvent(working))


def _lock(engine: Engine, account_id: int = ACC) -> Lockout | None:
    locks = [k for k in engine.lockouts.get_lockout_info(account_id) if k.rule == "RULE-009"]
    assert len(locks) <= 1
    return locks[0] if locks else None


def _lock_records(engine: Engine) -> int:
    return sum(1 for r in engine.recent_log() if r.rule == "RULE-009" and r.action == "lockout")


# --- the scenario table: a position opened at a given instant -------------------------------

OPENS = [
    # (what, when, the next session start if that is outside the session)
    ("wed 09:00 inside", ct(11, 18, 9), None),
    ("wed 08:29:59 before the start", ct(11, 18, 8, 29, 59), ct(11, 18, 8, 30)),
    ("wed 08:30:00 the start is inside", ct(11, 18, 8, 30), None),
    ("wed 15:09:59 last second inside", ct(11, 18, 15, 9, 59), None),
    ("wed 15:10:00 the end is outside", ct(11, 18, 15, 10), ct(11, 19, 8, 30)),
    ("wed 19:00 evening", ct(11, 18, 19), ct(11, 19, 8, 30)),
    ("sat 10:00 weekend", ct(11, 21, 10), ct(11, 23, 8, 30)),
    ("thanksgiving thu 10:00 closed", ct(11, 26, 10), ct(11, 27, 8, 30)),
    ("fri after thanksgiving 12:09:59 inside", ct(11, 27, 12, 9, 59), None),
    ("fri after thanksgiving 12:10 early close - buffer", ct(11, 27, 12, 10), ct(11, 30, 8, 30)),
]


@pytest.mark.parametrize(
    ("clock", "what", "resumes"),
    [(when, what, resumes) for what, when, resumes in OPENS],
    indirect=["clock"],
    ids=[o[0] for o in OPENS],
)
async def test_position_opened_outside_the_session_is_flattened_and_locked(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock: FakeClock,
    what: str,
    resumes: datetime | None,
) -> None:
    # flatten_at_end off: only the new position can break the rule here.
    engine = await _engine(make_engine, session(flatten_at_end=False))
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await engine.actions.wait_idle()
    await engine.drain()
    lock = _lock(engine)
    if resumes is None:
        assert lock is None
        assert gateway.named("close_contract") == []
        return
    assert lock is not None
    assert (lock.until, lock.unlock) == (resumes, Unlock.SESSION)
    local = resumes.astimezone(CHICAGO).strftime("%a %b %d %H:%M %Z")
    assert lock.reason == f"position opened outside the trading session; trading resumes {local}"
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]


# --- flatten at the session end ---------------------------------------------------------------

ENDS = [
    # (what, clock start, session end, next session start)
    ("wednesday", ct(11, 18, 15), ct(11, 18, 15, 10), ct(11, 19, 8, 30)),
    ("friday end to monday start", ct(11, 20, 15), ct(11, 20, 15, 10), ct(11, 23, 8, 30)),
    ("before thanksgiving to friday", ct(11, 25, 15), ct(11, 25, 15, 10), ct(11, 27, 8, 30)),
    ("early close 12:15 minus 5 min", ct(11, 27, 12), ct(11, 27, 12, 10), ct(11, 30, 8, 30)),
]


@pytest.mark.parametrize(
    ("clock", "end", "resumes"),
    [(start, end, resumes) for _, start, end, resumes in ENDS],
    indirect=["clock"],
    ids=[e[0] for e in ENDS],
)
async def test_session_end_flattens_and_locks_until_the_next_start(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock: FakeClock,
    end: datetime,
    resumes: datetime,
) -> None:
    engine = await _engine(make_engine, session())
    await open_position(engine, gateway, position(ACC, MNQ, 2, opened=clock.now()))
    working = order(ACC, 40, side=OrderSide.ASK, stop="20900")
    await _order(engine, gateway, working)
    assert engine.timers.deadline(f"rule:RULE-009:{ACC}:end") == end

    await clock.set(end - SECOND)
    assert gateway.named("close_contract") == []
    await clock.set(end)
    await engine.actions.wait_idle()
    await engine.drain()

    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 40)]
    lock = _lock(engine)
    assert lock is not None and lock.until == resumes and lock.unlock is Unlock.SESSION
    assert lock.reason.startswith("the trading session ended; trading resumes ")
    # Re-armed for the next window.
    assert engine.timers.deadline(f"rule:RULE-009:{ACC}:start") == resumes

    # The lock ends by itself at the next start; trading is allowed again.
    await clock.set(resumes)
    assert _lock(engine) is None
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await engine.actions.wait_idle()
    assert len(gateway.named("close_contract")) == 1


async def test_lock_is_not_issued_again_on_later_events(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, session())
    await clock.set(ct(11, 18, 15, 10))
    await engine.process(AccountEvent(account(ACC, "49000")))
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    engine.submit_check("test")
    await engine.actions.wait_idle()
    await engine.drain()
    assert _lock_records(engine) == 1
    # The new position was closed by the lockout gate, not by a second RULE-009 breach.
    assert [r.rule for r in engine.recent_log() if r.action == "close"] == ["LOCKOUT"]


async def test_start_up_outside_the_session_locks_a_flat_account(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    await clock.set(ct(11, 21, 10))  # Saturday
    engine = await _engine(make_engine, session())
    lock = _lock(engine)
    assert lock is not None and lock.until == ct(11, 23, 8, 30)
    assert "outside the trading session; trading resumes Mon Nov 23 08:30 CST" in lock.reason


# --- orders ---------------------------------------------------------------------------------


async def test_entry_order_placed_outside_the_session_is_cancelled_and_locks(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, session(flatten_at_end=False))
    await clock.set(ct(11, 18, 18))
    entry = order(ACC, 41, side=OrderSide.BID, order_type=OrderType.LIMIT, stop=None, limit="20000")
    await _order(engine, gateway, entry)
    await engine.actions.wait_idle()
    await engine.drain()
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 41)]
    lock = _lock(engine)
    assert lock is not None and lock.until == ct(11, 19, 8, 30)
    assert lock.reason.startswith("entry order placed outside the trading session")


async def test_without_flatten_at_end_a_held_position_and_its_stop_are_left_alone(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, session(flatten_at_end=False))
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await clock.set(ct(11, 18, 18))
    await _order(engine, gateway, order(ACC, 42, side=OrderSide.ASK, stop="20900"))
    engine.submit_check("test")
    await engine.drain()
    assert _lock(engine) is None
    assert gateway.named("close_contract") == [] and gateway.named("cancel_order") == []
    # Adding to it outside the session breaks the rule.
    await open_position(engine, gateway, position(ACC, MNQ, 2, opened=T0))
    await engine.actions.wait_idle()
    await engine.drain()
    lock = _lock(engine)
    assert lock is not None and lock.reason.startswith("position increased outside")
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]


async def test_position_first_seen_outside_is_judged_by_its_opening_time(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, session(flatten_at_end=False))
    await clock.set(ct(11, 18, 18))
    # A reconnect shows a position opened at 14:00, inside the session: held, not new.
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=ct(11, 18, 14)))
    await engine.drain()
    assert _lock(engine) is None
    # It reverses to short now, outside the session (same gateway timestamp): new exposure.
    await open_position(engine, gateway, position(ACC, MNQ, 1, short=True, opened=ct(11, 18, 14)))
    # (No fill came with the reversal: riskman believes the gateway after SETTLE_AFTER.)
    await clock.advance(SETTLE_AFTER)
    await engine.actions.wait_idle()
    lock = _lock(engine)
    assert lock is not None and lock.reason.startswith("position opened outside")
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]


# --- overnight sessions and DST -------------------------------------------------------------

OVERNIGHT = {"start": "17:00", "end": "16:00"}


@pytest.mark.parametrize(
    ("clock", "resumes"),
    [
        (ct(11, 22, 16, 59, 59), ct(11, 22, 17)),  # Sunday before the open
        (ct(11, 22, 17), None),  # Sunday 17:00 opens Monday's session
        (ct(11, 23, 15, 59, 59), None),
        (ct(11, 23, 16), ct(11, 23, 17)),  # the one-hour break
        (ct(11, 20, 16, 30), ct(11, 22, 17)),  # Friday after the close
    ],
    indirect=["clock"],
    ids=["sun 16:59:59", "sun 17:00", "mon 15:59:59", "mon 16:00 break", "fri 16:30"],
)
async def test_overnight_session_belongs_to_the_day_it_ends_on(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock, resumes: datetime | None
) -> None:
    engine = await _engine(make_engine, session(**OVERNIGHT, flatten_at_end=False))
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await engine.drain()
    lock = _lock(engine)
    assert (lock.until if lock else None) == resumes


@pytest.mark.parametrize(
    ("clock", "opens", "closes"),
    [
        # Spring forward: Sunday 17:00 CDT is 22:00 UTC; Monday 16:00 CDT is 21:00 UTC.
        (
            datetime(2026, 3, 8, 17, tzinfo=UTC),
            datetime(2026, 3, 8, 22, tzinfo=UTC),
            datetime(2026, 3, 9, 21, tzinfo=UTC),
        ),
        # Fall back: Sunday 17:00 CST is 23:00 UTC; Monday 16:00 CST is 22:00 UTC.
        (
            datetime(2026, 11, 1, 18, tzinfo=UTC),
            datetime(2026, 11, 1, 23, tzinfo=UTC),
            datetime(2026, 11, 2, 22, tzinfo=UTC),
        ),
    ],
    indirect=["clock"],
    ids=["2026-03-08", "2026-11-01"],
)
async def test_session_start_and_end_on_dst_days(
    make_engine: EngineFactory,
    gateway: FakeGateway,
    clock: FakeClock,
    opens: datetime,
    closes: datetime,
) -> None:
    engine = await _engine(make_engine, session(**OVERNIGHT))
    lock = _lock(engine)
    assert lock is not None and lock.until == opens  # Sunday noon: closed until 17:00 local
    assert "trading resumes Sun" in lock.reason and "17:00" in lock.reason

    await clock.set(opens - SECOND)
    assert _lock(engine) is not None
    await clock.set(opens)
    assert _lock(engine) is None
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await clock.set(closes - SECOND)
    assert gateway.named("close_contract") == []
    await clock.set(closes)
    await engine.actions.wait_idle()
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]
    assert _lock(engine) is not None


# --- restart, per-account overrides, config changes -----------------------------------------


async def test_restart_while_locked_outside_the_session_keeps_enforcing(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, session())
    await clock.set(ct(11, 18, 15, 10))
    await engine.actions.wait_idle()
    assert _lock(engine) is not None
    await engine.close()
    await clock.set(ct(11, 18, 20))

    again = await _engine(make_engine, session())
    lock = _lock(again)
    assert lock is not None and lock.until == ct(11, 19, 8, 30)
    assert _lock_records(again) == 1  # restored, not issued again
    await open_position(again, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await gateway.wait_call("close_contract")
    await again.actions.wait_idle()
    assert [r.rule for r in again.recent_log() if r.action == "close"] == ["LOCKOUT"]

    # The timers were rebuilt: the lock ends at the start, the next end flattens again.
    await clock.set(ct(11, 19, 8, 30))
    assert _lock(again) is None
    await open_position(again, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await clock.set(ct(11, 19, 15, 10))
    await again.actions.wait_idle()
    assert len(gateway.named("close_contract")) == 2
    lock = _lock(again)
    assert lock is not None and lock.until == ct(11, 20, 8, 30)


@pytest.mark.parametrize("clock", [ct(11, 18, 8)], indirect=True, ids=["wed 08:00"])
async def test_per_account_session_override(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(
        make_engine,
        session(),
        accounts=[ACC, {"id": OTHER, "rules": {"session_block_outside": {"start": "07:00"}}}],
    )
    await engine.process(AccountEvent(account(OTHER)))
    assert _lock(engine, ACC) is not None
    assert _lock(engine, OTHER) is None


async def test_config_change_re_arms_the_session_end(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock, tmp_path: Path
) -> None:
    engine = await _engine(make_engine, session())
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await engine.apply_settings(make_settings(tmp_path, session(end="14:00")))
    await engine.drain()
    assert engine.timers.deadline(f"rule:RULE-009:{ACC}:end") == ct(11, 18, 14)
    await clock.set(ct(11, 18, 14))
    await engine.actions.wait_idle()
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, MNQ)]


async def test_earlier_start_set_while_locked_ends_the_lock_at_the_new_start(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock, tmp_path: Path
) -> None:
    engine = await _engine(make_engine, session())
    await clock.set(ct(11, 18, 15, 10))
    lock = _lock(engine)
    assert lock is not None and lock.until == ct(11, 19, 8, 30)
    await engine.apply_settings(make_settings(tmp_path, session(start="07:00")))
    await engine.drain()
    assert _lock(engine) is not None  # still closed tonight
    await clock.set(ct(11, 19, 7))  # the new start timer fires
    assert _lock(engine) is None
    await open_position(engine, gateway, position(ACC, MNQ, 1, opened=clock.now()))
    await engine.actions.wait_idle()
    assert gateway.named("close_contract") == []


async def test_status_shows_when_the_session_ends_or_opens(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, session())
    rule = engine.rules[0]
    status = rule.status(ACC)
    assert (status.value, status.limit) == ("open", "08:30-15:10")
    assert status.detail == "ends Wed Nov 18 15:10 CST"
    await clock.set(ct(11, 25, 16))
    assert rule.status(ACC).detail == "opens Fri Nov 27 08:30 CST"
    await clock.set(ct(11, 27, 9))
    assert rule.status(ACC).detail == "ends Fri Nov 27 12:10 CST (early close)"
