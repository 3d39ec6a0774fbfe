"""RULE-021 blackouts: no new exposure inside a window (a cooldown until it ends), from one-off
windows, weekly windows and an iCalendar file; `flatten_before` flattens ahead of a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from riskman.config import ConfigError, load_config
from riskman.core.clock import FakeClock
from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import LockKind, Lockout
from riskman.core.ports import AccountEvent, OrderEvent, PositionEvent
from riskman.engine.engine import Engine
from riskman.rules.blackouts import Blackouts
from tests.conftest import HOLIDAYS, EngineFactory
from tests.fakes import ES, MNQ, T0, FakeGateway, account, order, position, settle

ACC = 7
# T0 is Wednesday 2026-11-18 09:00 in Chicago (15:00 UTC).
START = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # 09:30 CST
END = datetime(2026, 11, 18, 15, 40, tzinfo=UTC)
WINDOW = {"start": "2026-11-18T09:30", "end": "2026-11-18T09:40", "reason": "FOMC"}


def _cfg(**keys: Any) -> dict[str, Any]:
    return {"blackouts": {"enabled": True, **keys}}


async def _engine(make_engine: EngineFactory, **keys: Any) -> Engine:
    engine: Engine = await make_engine(_cfg(**keys), rule_classes=[Blackouts])
    await engine.process(AccountEvent(account(ACC)))  # the account, as a reconcile reports it
    return engine


def _lock(engine: Engine) -> Lockout | None:
    return next((k for k in engine.lockouts.get_lockout_info(ACC) if k.rule == "RULE-021"), None)


async def _open(engine: Engine, gateway: FakeGateway, contract: str = MNQ, size: int = 1):
    pos = position(ACC, contract, size)
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))
    await settle(engine)


@pytest.mark.parametrize(
    ("at", "blocked"),
    [
        pytest.param(START - timedelta(seconds=1), False, id="a-second-before"),
        pytest.param(START, True, id="at-the-start"),
        pytest.param(START + timedelta(minutes=5), True, id="inside"),
        pytest.param(END - timedelta(seconds=1), True, id="last-second"),
        pytest.param(END, False, id="at-the-end"),
    ],
)
async def test_window_scenarios(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock, at, blocked
) -> None:
    engine = await _engine(make_engine, windows=[WINDOW])
    await clock.set(at)
    await settle(engine)
    lock = _lock(engine)
    assert (lock is not None) is blocked
    if lock is not None:
        assert lock.kind is LockKind.COOLDOWN and lock.until == END
        assert "FOMC" in lock.reason
    await _open(engine, gateway)
    assert bool(gateway.named("close_contract")) is blocked


async def test_the_cooldown_starts_on_time_without_any_event_and_ends_with_the_window(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, windows=[WINDOW])
    await _open(engine, gateway, ES, 2)  # open before the window: kept
    entry = order(ACC, 50, MNQ, side=OrderSide.BID, order_type=OrderType.LIMIT, stop=None,
                  limit="20000")  # fmt: skip
    stop = order(ACC, 51, ES, side=OrderSide.ASK, stop="20900", size=2)
    for o in (entry, stop):
        gateway.orders.setdefault(ACC, {})[o.id] = o
        await engine.process(OrderEvent(o))
    await clock.set(START)
    await settle(engine)
    assert _lock(engine) is not None
    assert [c.args for c in gateway.named("cancel_order")] == [(ACC, 50)]  # the entry only
    assert gateway.named("close_contract") == []
    # An addition to the open position during the window is cut back.
    await _open(engine, gateway, ES, 3)
    assert [c.args for c in gateway.named("partial_close_contract")] == [(ACC, ES, 1)]
    await clock.set(END)
    await settle(engine)
    assert _lock(engine) is None


async def test_weekly_windows_repeat_and_may_cross_midnight(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(
        make_engine,
        weekly=[
            {"days": ["wed"], "start": "09:30", "end": "09:40", "reason": "open"},
            {"days": ["thu"], "start": "23:00", "end": "01:00", "reason": "overnight"},
        ],
    )
    await clock.set(START + timedelta(minutes=1))
    await settle(engine)
    assert _lock(engine) is not None and _lock(engine).until == END  # type: ignore[union-attr]
    await clock.set(END + timedelta(days=1, hours=14))  # Thu 23:40 CST
    await settle(engine)
    lock = _lock(engine)
    assert lock is not None and lock.reason.startswith("blackout: overnight")
    assert lock.until == datetime(2026, 11, 20, 7, 0, tzinfo=UTC)  # Fri 01:00 CST
    await clock.set(START + timedelta(days=7))  # the next Wednesday
    await settle(engine)
    assert _lock(engine) is not None


async def test_windows_that_touch_count_as_one(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    later = {"start": "2026-11-18T09:40", "end": "2026-11-18T10:00", "reason": "presser"}
    engine = await _engine(make_engine, windows=[WINDOW, later])
    await clock.set(START)
    await settle(engine)
    lock = _lock(engine)
    assert lock is not None and lock.until == END + timedelta(minutes=20)


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:cpi
DTSTART:20261118T153000Z
SUMMARY:CPI
END:VEVENT
BEGIN:VEVENT
UID:fomc
DTSTART;TZID=America/New_York:20261118T140000
DTEND;TZID=America/New_York:20261118T143000
SUMMARY:FOMC
END:VEVENT
END:VCALENDAR
"""


async def test_an_icalendar_file_gives_windows(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock, tmp_path: Path
) -> None:
    ics = tmp_path / "calendar.ics"
    ics.write_text(ICS)
    engine = await _engine(make_engine, ics_file=ics, around_events="2m")
    await clock.set(START - timedelta(minutes=3))
    await settle(engine)
    assert _lock(engine) is None
    await clock.set(START - timedelta(minutes=2))  # CPI at 15:30 UTC, 2 minutes around it
    await settle(engine)
    lock = _lock(engine)
    assert lock is not None and lock.until == START + timedelta(minutes=2) and "CPI" in lock.reason
    await clock.set(datetime(2026, 11, 18, 19, 10, tzinfo=UTC))  # 14:10 New York
    await settle(engine)
    lock = _lock(engine)
    assert lock is not None and lock.until == datetime(2026, 11, 18, 19, 30, tzinfo=UTC)


async def test_flatten_before_closes_everything_ahead_of_the_window(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, windows=[WINDOW], flatten_before="2m")
    await _open(engine, gateway, ES, 2)
    await clock.set(START - timedelta(minutes=2, seconds=1))
    await settle(engine)
    assert gateway.named("close_contract") == []
    await clock.set(START - timedelta(minutes=2))
    await settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, ES)]
    assert _lock(engine) is not None
    await _open(engine, gateway, MNQ)  # opened in the lead-in: closed by the gate
    assert gateway.named("close_contract")[-1].args == (ACC, MNQ)


async def test_a_restart_in_the_middle_of_a_window_keeps_the_cooldown(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, windows=[WINDOW])
    await clock.set(START + timedelta(minutes=1))
    await settle(engine)
    await engine.close()
    again = await _engine(make_engine, windows=[WINDOW])
    lock = _lock(again)
    assert lock is not None and lock.until == END
    await clock.set(END)
    await settle(again)
    assert _lock(again) is None


async def test_a_restart_before_a_window_arms_it(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await _engine(make_engine, windows=[WINDOW])
    await engine.close()
    again = await _engine(make_engine, windows=[WINDOW])
    await clock.set(START)
    await settle(again)
    assert _lock(again) is not None


async def test_status_says_what_is_next(make_engine: EngineFactory, clock: FakeClock) -> None:
    engine = await _engine(make_engine, windows=[WINDOW])
    rule = engine.rules[0]
    assert rule.status(ACC).value == "next: Wed 18 Nov 09:30"
    await clock.set(START)
    assert rule.status(ACC).value == "in blackout until 09:40"
    await clock.set(END)
    assert rule.status(ACC).value == "no window ahead"
    assert T0 < START


def _write(tmp_path: Path, blackouts: str) -> Path:
    path = tmp_path / "riskman.yaml"
    path.write_text(f"holidays_file: {HOLIDAYS}\nrules:\n  blackouts: {blackouts}\n")
    return path


@pytest.mark.parametrize(
    ("blackouts", "problem"),
    [
        ('{windows: [{start: "10 Dec 13:25", end: "2026-12-10T13:35"}]}', "not a date-time"),
        ('{windows: [{start: "2026-12-10T13:35", end: "2026-12-10T13:25"}]}', "end must be after"),
        ('{weekly: [{days: [fri], start: "07:25", end: "07:25"}]}', "would be empty"),
        ('{weekly: [{days: [], start: "07:25", end: "07:35"}]}', "at least 1 item"),
        ("{}", "set windows, weekly or ics_file"),
        ("{ics_file: missing.ics}", "missing.ics does not exist"),
        ("{ics_file: bad.ics}", "is not an iCalendar file"),
    ],
)
def test_config_problems_are_reported_with_the_key(tmp_path: Path, blackouts, problem) -> None:
    (tmp_path / "bad.ics").write_text("not a calendar")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, blackouts))
    text = str(err.value)
    assert "rules.blackouts" in text and problem in text


def test_an_ics_file_is_found_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "news.ics").write_text(ICS)
    settings = load_config(_write(tmp_path, "{ics_file: news.ics}"))
    assert settings.rules.blackouts.ics_file == tmp_path / "news.ics"


async def test_weekly_windows_keep_their_wall_time_across_the_dst_change(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    # Friday 2026-10-30 in daylight time; the clocks go back on Sunday 2026-11-01.
    early = datetime(2026, 10, 30, 14, 0, tzinfo=UTC)  # the windows as seen before both
    engine: Engine = await make_engine(
        _cfg(weekly=[{"days": ["fri", "mon"], "start": "09:30", "end": "09:40"}]),
        rule_classes=[Blackouts],
    )
    rule = engine.rules[0]
    assert isinstance(rule, Blackouts)
    spans = rule.spans(ACC, early)
    assert spans[0].start == datetime(2026, 10, 30, 14, 30, tzinfo=UTC)  # 09:30 CDT
    assert spans[1].start == datetime(2026, 11, 2, 15, 30, tzinfo=UTC)  # 09:30 CST
