"""The control API of a real, armed engine (Runtime against the simulator): status while
armed, and breaches enforced while a stream client is attached and after it went away."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from riskman.control.client import ControlClient
from riskman.sim import Simulator
from tests.e2e.conftest import (
    MES,
    MNQ,
    RuntimeFactory,
    buy,
    engine_of,
    mark,
    seen,
    wait_close,
)

pytestmark = pytest.mark.e2e


async def test_armed_engine_status_and_enforcement_with_a_stream_attached_and_after(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"max_contracts": {"limit": 1}})
    account = sim.account_ids[0]
    engine = engine_of(runtime)
    await engine.lockouts.set_lockout(
        sim.account_ids[1], "held", engine.clock.now() + timedelta(hours=1), rule="RULE-003"
    )
    async with ControlClient(runtime.socket) as client:
        status = await client.status()
        assert status["armed"] is True and status["phase"] == "running"
        hubs = {hub["hub"]: hub["state"] for hub in status["hubs"]}
        assert hubs["user"] == "connected"
        by_id = {a["id"]: a for a in status["accounts"]}
        assert by_id[account]["status"] == "OK"
        assert by_id[sim.account_ids[1]]["status"] == "LOCKED"

        async with client.stream() as frames:
            iterator = aiter(frames)
            assert (await asyncio.wait_for(anext(iterator), 10)).snapshot.armed
            since = mark()
            buy(sim, account, MNQ, 2)
            await sim.wait_for_request("Position/partialCloseContract", timeout=10, since=since)
            async with asyncio.timeout(10):
                while True:
                    frame = await anext(iterator)
                    if any(r.rule == "RULE-001" for r in frame.snapshot.log):
                        break

    # The client is gone: enforcement goes on (the newest position, MES, goes: 1 lot left).
    await seen(runtime, account, MNQ, 1)
    since = mark()
    buy(sim, account, MES, 2)
    await wait_close(sim, account, MES, since)
