"""Issue 13 end to end: every active account is guarded, one opened during the day too; the
trader locks himself out and the simulator sees the flatten."""

from __future__ import annotations

from riskman.sim import Simulator
from tests.e2e.conftest import (
    MES,
    RuntimeFactory,
    buy,
    engine_of,
    eventually,
    held_by,
    mark,
    seen,
    sim_positions,
    wait_close,
)


async def test_an_account_opened_during_the_day_is_guarded(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"max_contracts": {"limit": 1, "action": "close_all"}})
    engine = engine_of(runtime)
    assert engine.guarded is None  # accounts: [] guards every active account
    new = sim.add_account("COMBINE-NEW")
    await eventually(lambda: engine.state.get_account(new) is not None, what="new account seen")
    since = mark()
    buy(sim, new, MES, 2)
    await wait_close(sim, new, MES, since)
    assert sim_positions(sim, new) == {}
    view = engine.snapshot().account(new)
    assert view is not None and view.guarded


async def test_lock_me_out_flattens_and_cannot_be_cleared(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({})
    account = sim.account_ids[0]
    engine = engine_of(runtime)
    buy(sim, account, MES, 1)
    await seen(runtime, account, MES, 1)
    since = mark()
    locks = await engine.lock_me_out("30m", account)
    assert [lock.account_id for lock in locks] == [account]
    await wait_close(sim, account, MES, since)
    assert held_by(runtime, account, "SELF") is not None
    try:
        await engine.request_unlock(account, "please let me trade again")
    except ValueError as exc:
        assert "cannot be cleared before its end" in str(exc)
    else:
        raise AssertionError("a self-lock must not be cleared early")
    assert held_by(runtime, account, "SELF") is not None
