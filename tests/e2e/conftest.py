"""End-to-end harness: the real simulator on a free loopback port, the real REST client and
signalrcore hubs, and the real engine on a real SQLite file (riskman.runtime.Runtime)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from riskman.config import Settings
from riskman.engine.engine import Engine
from riskman.gateway.models import OrderSide, OrderType, Position
from riskman.runtime import Runtime
from riskman.sim import Simulator
from tests.conftest import HOLIDAYS

MNQ = "CON.F.US.MNQ.Z26"
ES = "CON.F.US.EP.Z26"
MES = "CON.F.US.MES.Z26"
RTY = "CON.F.US.RTY.Z26"


def sim_settings(sim: Simulator, tmp_path: Path, rules: dict[str, Any], **top: Any) -> Settings:
    gateway = {
        "api_url": sim.base_url,
        "user_hub_url": sim.user_hub_url,
        "market_hub_url": sim.market_hub_url,
        "username": "demo",
        "hub_silence_timeout": 5,
        "stale_poll_interval": 1,
        "reconnect_max_backoff": 2,
        **top.pop("gateway", {}),
    }
    return Settings(
        gateway=gateway,
        holidays_file=HOLIDAYS,
        database=tmp_path / "riskman.db",
        rules=rules,
        **top,
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(seed=7, quote_interval=None, ping_interval=2.0)
    await simulator.start(port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


RuntimeFactory = Callable[..., Any]


@pytest.fixture
async def make_runtime(sim: Simulator, tmp_path: Path) -> AsyncIterator[RuntimeFactory]:
    """Start riskman against the simulator and wait until it is armed. A second call is a
    restart on the same database (stop the first one before)."""
    runtimes: list[Runtime] = []

    async def factory(rules: dict[str, Any], **top: Any) -> Runtime:
        runtime = Runtime(sim_settings(sim, tmp_path, rules, **top), api_key="demo", start_wait=10)
        runtimes.append(runtime)
        await runtime.start()
        assert await runtime.wait_armed(10), "riskman did not arm against the simulator"
        return runtime

    try:
        yield factory
    finally:
        for runtime in runtimes:
            await runtime.stop()


async def eventually(
    check: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait until `check()` holds; fail after `timeout` seconds.

    The condition spans the simulator's and the engine's state, so there is no single event to
    wait on: it is re-checked every 20 ms while the loop runs both, bounded by the timeout.
    """
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def sim_positions(sim: Simulator, account_id: int) -> dict[str, Position]:
    return {p.contract_id: p for p in sim.positions(account_id)}


def buy(sim: Simulator, account_id: int, contract_id: str, size: int = 1) -> int:
    return sim.submit_order(account_id, contract_id, OrderSide.BID, size)


def sell(sim: Simulator, account_id: int, contract_id: str, size: int = 1) -> int:
    return sim.submit_order(account_id, contract_id, OrderSide.ASK, size)


def stop_order(
    sim: Simulator,
    account_id: int,
    contract_id: str,
    side: OrderSide,
    price: Decimal,
    size: int = 1,
) -> int:
    return sim.submit_order(account_id, contract_id, side, size, OrderType.STOP, stop_price=price)


def engine_of(runtime: Runtime) -> Engine:
    assert runtime.engine is not None
    return runtime.engine
