"""One breach, one call, also after a restart (issue 11).

A riskman restarted while a lock was active sent `closeContract` twice for the same position,
4 ms apart, before it had re-read the account: the positions restored from its database were
acted on before the gateway's REST truth confirmed them, and again when it did.
"""

from __future__ import annotations

from riskman.core.clock import FakeClock
from riskman.core.locks import Unlock
from riskman.core.ports import AccountSnapshot
from tests.conftest import EngineFactory
from tests.fakes import MNQ, FakeGateway, account, open_position, position, settle

ACC = 7
RULES = {"daily_realized_loss": {"enabled": True, "limit": 300}}


async def test_a_restart_while_locked_closes_each_position_once_after_reading_the_account(
    make_engine: EngineFactory, gateway: FakeGateway, clock: FakeClock
) -> None:
    engine = await make_engine(RULES)
    held = position(ACC, MNQ, 1)
    await open_position(engine, gateway, held)
    await engine.lockouts.set_lockout(ACC, "loss", None, rule="RULE-003", unlock=Unlock.ADMIN)
    await engine.close()  # killed before it closed the position: it is in its database

    again = await make_engine(RULES)
    await settle(again)
    assert again.state.get_position(ACC, MNQ) is not None  # restored, not yet confirmed
    assert gateway.named("close_contract") == [], "closed before the account was re-read"

    # The feed connects and reads the account over REST: now the gate closes it, once.
    snapshot = AccountSnapshot(account(ACC), [held], [], [], requested=clock.monotonic())
    await again.reconcile(snapshot)
    await settle(again)
    # A second read (the stale-feed poll) and the checks that follow a close change nothing.
    later = AccountSnapshot(account(ACC), [], [], None, requested=clock.monotonic())
    await again.reconcile(later)
    again.submit_check("after enforcement", ACC)
    await settle(again)
    assert [call.args for call in gateway.named("close_contract")] == [(ACC, MNQ)]
    assert again.state.get_position(ACC, MNQ) is None
