"""The whole chain once: trader buys at the broker -> riskman sees it on the hub -> the
reduction arrives at the simulator through the real REST client."""

from __future__ import annotations

from riskman.sim import Simulator
from tests.e2e.conftest import MNQ, RuntimeFactory, buy, engine_of, eventually, sim_positions


async def test_max_contracts_breach_is_reduced_at_the_gateway(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    runtime = await make_runtime({"max_contracts": {"limit": 2}})
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 3)
    request = await sim.wait_for_request("Position/partialCloseContract", timeout=10)
    assert request.body == {"accountId": account, "contractId": MNQ, "size": 1}
    await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2)
    engine = engine_of(runtime)
    await eventually(
        lambda: any(r.rule == "RULE-001" and r.result == "ok" for r in engine.recent_log())
    )


async def test_riskmans_own_close_is_not_counted_as_the_traders_trade(
    sim: Simulator, make_runtime: RuntimeFactory
) -> None:
    rules = {"max_contracts": {"limit": 2}, "trade_frequency_limit": {"per_minute": 3}}
    runtime = await make_runtime(rules)
    account = sim.account_ids[0]
    sim.set_price(MNQ, "24500")
    buy(sim, account, MNQ, 3)  # one trade by the trader...
    await sim.wait_for_request("Position/partialCloseContract", timeout=10)
    engine = engine_of(runtime)
    await eventually(lambda: engine.pnl.day_totals(account).fills == 2)  # ...and riskman's fill
    assert engine.counter.get_trade_counts(account).session == 1
    await runtime.stop()
    again = await make_runtime(rules)  # the restart rebuilds the count from the database
    assert engine_of(again).counter.get_trade_counts(account).session == 1
