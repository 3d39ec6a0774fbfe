"""The screens' one interface, in-process: sessions, commands, refusals, and the views as JSON
(what the attached terminal reads from the stream is what the engine had)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from riskman.config import Settings, load_config
from riskman.config_writer import NULL
from riskman.control.attached import AttachedControl
from riskman.control.inprocess import InProcessControl, rule_changes
from riskman.control.interface import (
    AccountsPut,
    ClearLocks,
    Conflict,
    Control,
    Holiday,
    Invalid,
    LockRequest,
    LoginRequest,
    PasswordChange,
    RulesPut,
    SchedulePut,
    Session,
    Unauthorized,
)
from riskman.control.paths import socket_path
from riskman.control.server import ControlServer
from riskman.control.wire import snapshot_from_json, snapshot_to_json
from riskman.core.clock import FakeClock
from tests.fakes import T0
from tests.tui.conftest import ACC_A, ACC_B, PASSWORD, FactorySource, text_of


@pytest.fixture
async def engine_side(settings: Settings, config_path: Path) -> AsyncIterator[InProcessControl]:
    clock = FakeClock(T0)
    control = InProcessControl(FactorySource(settings, clock), config_path, clock=clock)
    await control.start()
    try:
        yield control
    finally:
        await control.stop()


@pytest.fixture(params=["in-process", "attached"])
async def control(
    request: pytest.FixtureRequest,
    engine_side: InProcessControl,
    settings: Settings,
    config_path: Path,
) -> AsyncIterator[Control]:
    """The interface under test: the engine's own, or the same through its control socket."""
    if request.param == "in-process":
        yield engine_side
        return
    assert engine_side.engine is not None
    server = ControlServer(settings, engine_side.engine, socket_path(settings))
    await server.start()
    attached = AttachedControl(settings, config_path)
    try:
        await attached.start()
        first = asyncio.Event()
        unsubscribe = attached.subscribe(lambda _: first.set())
        async with asyncio.timeout(10):
            await first.wait()
        unsubscribe()
        yield attached
    finally:
        await attached.stop()
        await server.stop()


async def login(control: Control) -> Session:
    answer = await control.login(LoginRequest(password=PASSWORD))
    assert answer.session is not None
    return answer.session


async def test_a_snapshot_survives_json_unchanged(control: Control) -> None:
    snapshot = control.snapshot()
    assert snapshot is not None and snapshot.accounts and snapshot.log
    assert any(view.locks for view in snapshot.accounts)
    assert snapshot_from_json(snapshot_to_json(snapshot)) == snapshot


async def test_admin_commands_need_a_session_that_idles_out(
    control: Control, engine_side: InProcessControl
) -> None:
    with pytest.raises(Unauthorized):
        await control.get_rules(Session(token="guessed"))
    wrong = await control.login(LoginRequest(password="not the password"))
    assert wrong.session is None and wrong.failures == 1
    session = await login(control)
    assert (await control.get_rules(session)).rules["daily_realized_loss"]["limit"] == 300
    clock = engine_side.clock
    assert isinstance(clock, FakeClock)
    await clock.advance(301)  # admin.idle_lock is 5m
    with pytest.raises(Unauthorized):
        await control.get_rules(session)
    again = await login(control)
    await control.logout(again)
    with pytest.raises(Unauthorized):
        await control.audit(again)


async def test_three_wrong_passwords_throttle_and_are_audited(
    control: Control, engine_side: InProcessControl
) -> None:
    for _ in range(3):
        answer = await control.login(LoginRequest(password="wrong-wrong"))
    assert answer.locked_until is not None and answer.failures == 3
    refused = await control.login(LoginRequest(password=PASSWORD))
    assert refused.session is None and refused.locked_until is not None
    assert (await control.admin_state()).locked_until == refused.locked_until
    clock = engine_side.clock
    assert isinstance(clock, FakeClock)
    await clock.advance(31)
    session = await login(control)
    # (Through the socket the server also records each login.)
    actions = [e.action for e in await control.audit(session) if e.action != "login"]
    assert actions[:1] == ["admin_locked"]


async def test_a_partial_rules_object_is_written_applied_and_audited(
    control: Control, engine_side: InProcessControl, config_path: Path
) -> None:
    session = await login(control)
    result = await control.put_rules(
        session, RulesPut(rules={"daily_realized_loss": {"limit": 250}})
    )
    assert [(c.key, c.old, c.new) for c in result.changes] == [
        ("rules.daily_realized_loss.limit", "300", "250")
    ]
    assert "limit: 250   # keep this comment" in text_of(config_path)
    assert engine_side.engine is not None
    assert engine_side.engine.settings.rules.daily_realized_loss.limit == 250
    audit = await control.audit(session)
    assert (audit[0].action, audit[0].target) == ("config", "rules.daily_realized_loss.limit")


async def test_an_invalid_change_is_refused_with_the_problems_and_the_file_is_untouched(
    control: Control, config_path: Path
) -> None:
    session = await login(control)
    before = text_of(config_path)
    with pytest.raises(Invalid) as refused:
        await control.put_rules(session, RulesPut(rules={"max_contracts": {"limit": -2}}))
    assert "max_contracts" in refused.value.text() and refused.value.problems
    with pytest.raises(Invalid, match="no longer listed"):
        await control.put_rules(session, RulesPut(rules={"max_contracts": {"limit": 2}}, account=7))
    with pytest.raises(Invalid, match="at least one account"):
        await control.put_accounts(session, AccountsPut(ids=[]))
    assert text_of(config_path) == before


async def test_one_accounts_own_rules_and_dropping_them(
    control: Control, config_path: Path
) -> None:
    session = await login(control)
    await control.put_accounts(session, AccountsPut(ids=[ACC_A, ACC_B]))
    await control.put_rules(
        session, RulesPut(account=ACC_B, rules={"daily_realized_loss": {"limit": 100}})
    )
    state = await control.get_rules(session)
    own = {entry.id: entry for entry in state.accounts}
    assert own[ACC_A].own is None
    assert own[ACC_B].own == {"daily_realized_loss": {"limit": 100}}
    assert own[ACC_B].effective["daily_realized_loss"]["limit"] == 100
    assert state.rules["daily_realized_loss"]["limit"] == 300
    await control.put_rules(session, RulesPut(account=ACC_B, drop_own=True))
    state = await control.get_rules(session)
    assert all(entry.own is None for entry in state.accounts)
    assert load_config(config_path).account_ids == [ACC_A, ACC_B]


async def test_locks_are_cleared_with_a_reason_only(
    control: Control, engine_side: InProcessControl
) -> None:
    session = await login(control)
    locks = await control.lockouts(session)
    mine = [lock for lock in locks if lock.account_id == ACC_B]
    assert mine
    with pytest.raises(Invalid, match="reason"):
        await control.clear_lockouts(session, ClearLocks(account=ACC_B, reason="  "))
    with pytest.raises(Invalid, match="at least 10 characters"):
        await control.clear_lockouts(session, ClearLocks(account=ACC_B, reason="x"))
    asked = await control.clear_lockouts(
        session, ClearLocks(account=ACC_B, lock=mine[0].id, reason="coach said so")
    )
    # An unlock is a request: the lock ends after admin.unlock_delay (issue 13).
    assert asked.cleared == [] and asked.request is not None and asked.due is not None
    assert any(lock.id == mine[0].id for lock in await control.lockouts(session))
    clock = engine_side.clock
    await clock.advance((asked.due - clock.now()).total_seconds())  # type: ignore[attr-defined]
    session = await login(control)  # the admin session idled out meanwhile
    assert all(lock.id != mine[0].id for lock in await control.lockouts(session))


async def test_lock_me_out_needs_no_session_and_cannot_be_cleared(
    control: Control, engine_side: InProcessControl
) -> None:
    locked = await control.lock_me_out(LockRequest.model_validate({"for": "1h"}))
    assert sorted(lock.account for lock in locked) == [ACC_A, ACC_B]
    session = await login(control)
    self_locks = [lock for lock in await control.lockouts(session) if lock.rule == "SELF"]
    assert len(self_locks) == 2
    with pytest.raises(Invalid, match="cannot be cleared before its end"):
        await control.clear_lockouts(
            session, ClearLocks(account=ACC_A, lock=self_locks[0].id, reason="I changed my mind")
        )
    with pytest.raises(Invalid, match="say how long"):
        await control.lock_me_out(LockRequest.model_validate({"for": "a while"}))


async def test_schedule_and_holidays(control: Control) -> None:
    session = await login(control)
    state = await control.get_schedule(session)
    assert state.daily_reset == "17:00" and state.holidays
    extra = Holiday(day=state.holidays[-1].day.replace(year=2099), name="Test day", close="12:15")
    result = await control.put_schedule(
        session, SchedulePut(daily_reset="16:00", holidays=[*state.holidays, extra])
    )
    assert [c.key for c in result.changes] == ["daily_reset"]
    assert result.holidays_added == [f"{extra.day} Test day (closes 12:15)"]
    again = await control.get_schedule(session)
    assert again.daily_reset == "16:00" and extra in again.holidays


async def test_password_change_and_first_password(control: Control) -> None:
    session = await login(control)
    with pytest.raises(Invalid, match="Not changed"):
        await control.change_password(session, PasswordChange(password="short"))
    with pytest.raises(Conflict, match="already set"):
        await control.create_password(PasswordChange(password="another-password"))
    await control.change_password(session, PasswordChange(password="another-password"))
    assert (await control.login(LoginRequest(password=PASSWORD))).session is None
    assert (await control.login(LoginRequest(password="another-password"))).session is not None


async def test_the_log_pages_by_id(control: Control) -> None:
    entries = await control.log_since(0)
    assert entries and [e.id for e in entries] == sorted(e.id for e in entries)
    assert await control.log_since(entries[-1].id) == []
    assert (await control.log_since(entries[0].id)) == entries[1:]


async def test_status_for_scripts(control: Control) -> None:
    status = await control.status()
    assert {a.id: a.status for a in status.accounts}[ACC_B] in ("LOCKED", "NOT GUARDED")
    assert status.pending == []
    json.dumps(status.model_dump(mode="json"))


def test_a_partial_rules_object_down_to_the_fields() -> None:
    changes = rule_changes(
        ("rules",),
        {
            "trade_frequency_limit": {"per_hour": None, "cooldowns": {"per_minute": 30}},
            "max_contracts_per_instrument": {"limits": {"ES": 2}},
        },
    )
    assert changes[("rules", "trade_frequency_limit", "per_hour")] is NULL
    assert changes[("rules", "trade_frequency_limit", "cooldowns", "per_minute")] == 30
    assert changes[("rules", "max_contracts_per_instrument", "limits")] == {"ES": 2}
