"""Issue 13 through the control API: `POST /v1/lock` and `riskman lock` (no password: it only
makes riskman stricter), pending changes in `GET /v1/status`, an admin unlock that waits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from riskman import cli
from riskman.config import load_config
from riskman.control.client import ApiError
from riskman.core.clock import FakeClock
from riskman.core.ports import AccountSnapshot
from riskman.engine.engine import SELF_LOCK
from riskman.engine.router import ReconcileEvent
from tests.control.conftest import ServedFactory, write_config
from tests.fakes import ES, T0, FakeGateway, account, position, settle

ACC = 1001


async def test_lock_through_the_api_flattens_and_locks_every_guarded_account(
    served: ServedFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine, _server, client = await served({"accounts": [ACC, 1002]})
    pos = position(ACC, ES, 2, "5000")
    gateway.set_position(pos)
    # The feed's reconcile at start: the gate acts on what the gateway confirmed.
    for account_id, positions in ((ACC, [pos]), (1002, [])):
        snapshot = AccountSnapshot(
            account=account(account_id),
            positions=positions,
            orders=[],
            trades=None,
            requested=clock.monotonic(),
        )
        await engine.process(ReconcileEvent(snapshot))
    locked = await client.lock("30m")  # no login: locking yourself out needs no password
    assert sorted(lock.account for lock in locked) == [ACC, 1002]
    assert {lock.until for lock in locked} == {T0 + timedelta(minutes=30)}
    await settle(engine)
    assert [c.args for c in gateway.named("close_contract")] == [(ACC, ES)]
    for account_id in (ACC, 1002):
        locks = engine.lockouts.get_lockout_info(account_id)
        assert any(lock.rule == SELF_LOCK for lock in locks)
    with pytest.raises(ValueError, match="cannot be cleared before its end"):
        await engine.request_unlock(ACC, "the trader changed his mind")
    await clock.advance(30 * 60)
    assert not engine.lockouts.is_locked_out(ACC)


async def test_lock_until_a_time_and_until_the_reset(served: ServedFactory) -> None:
    engine, _server, client = await served({"accounts": [ACC]})
    # T0 is 09:00 CST: 10:30 is in 1.5 h; the reset is 17:00 CST.
    [at_time] = await client.lock("10:30", ACC)
    assert at_time.until == T0 + timedelta(hours=1, minutes=30)
    [at_reset] = await client.lock("reset", ACC)
    assert at_reset.until == engine.resets.next_reset()
    with pytest.raises(ApiError) as refused:
        await client.lock("soon", ACC)
    assert refused.value.status == 422


async def test_status_lists_what_waits_for_the_reset(served: ServedFactory, tmp_path: Path) -> None:
    engine, _server, client = await served(
        {"rules": {"daily_realized_loss": {"enabled": True, "limit": 300}}}
    )
    write_config(tmp_path, {"rules": {"daily_realized_loss": {"enabled": True, "limit": 900}}})
    await engine.apply_settings(load_config(tmp_path / "riskman.yaml"))
    status = await client.status()
    assert status["pending"] == [
        {
            "account": None,
            "key": "rules.daily_realized_loss.limit",
            "from": 300,
            "to": 900,
            "effective": engine.resets.next_reset().isoformat(),
        }
    ]


def test_riskman_lock_says_so_when_no_engine_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {})
    code = cli.main(["lock", "--for", "30m", "--config", str(config)])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no riskman engine answers" in err[0]


async def test_riskman_lock_goes_through_the_running_engine(
    served: ServedFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    engine, _server, _client = await served({"accounts": [ACC]})
    args = [
        "lock",
        "--for",
        "1h",
        "--account",
        str(ACC),
        "--config",
        str(tmp_path / "riskman.yaml"),
    ]
    assert await asyncio.to_thread(cli.main, args) == 0
    assert "locked by the trader until" in capsys.readouterr().out
    [lock] = [k for k in engine.lockouts.get_lockout_info(ACC) if k.rule == SELF_LOCK]
    assert lock.until == T0 + timedelta(hours=1)


async def test_an_admin_cancels_a_pending_loosening_and_the_file_says_so(
    served: ServedFactory, tmp_path: Path, clock: FakeClock
) -> None:
    from tests.control.conftest import PASSWORD

    engine, _server, client = await served(
        {"rules": {"daily_realized_loss": {"enabled": True, "limit": 300}}}
    )
    await client.login(PASSWORD)
    saved = await client.set_rules({"daily_realized_loss": {"limit": 900}})
    assert [p["key"] for p in saved.pending] == ["rules.daily_realized_loss.limit"]
    await client.cancel_pending("rules.daily_realized_loss.limit")
    assert engine.pending == ()
    assert load_config(tmp_path / "riskman.yaml").rules.daily_realized_loss.limit == 300
    await clock.set(engine.resets.next_reset())
    await settle(engine)
    assert engine.settings.rules.daily_realized_loss.limit == 300
    await client.login(PASSWORD)  # the session idled out across the day
    with pytest.raises(ApiError) as nothing:
        await client.cancel_pending("rules.daily_realized_loss.limit")
    assert nothing.value.status == 422


async def test_an_admin_withdraws_his_unlock(served: ServedFactory, clock: FakeClock) -> None:
    from tests.control.conftest import PASSWORD

    engine, _server, client = await served({"accounts": [ACC]})
    lock = await engine.lockouts.set_lockout(ACC, "too much", None, rule="RULE-014")
    assert lock is not None
    await client.login(PASSWORD)
    asked = await client.clear_lockout(lock.id, "coach approved: data error")
    assert asked.request is not None
    await client.withdraw_unlock(asked.request)
    await clock.advance(engine.settings.admin.unlock_delay + 1)
    assert engine.lockouts.is_locked_out(ACC), "a withdrawn unlock never takes effect"
