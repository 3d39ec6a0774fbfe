"""End-to-end harness: the real simulator on a free loopback port, the real REST client and
signalrcore hubs, and the real engine on a real SQLite file (riskman.runtime.Runtime)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from riskman.config import Settings
from riskman.core.clock import Clock, SystemClock
from riskman.core.enums import OrderSide, OrderType
from riskman.core.locks import Lockout
from riskman.core.models import Position
from riskman.core.views import EnforcementRecord
from riskman.engine.engine import Engine
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
    data: dict[str, Any] = {
        "gateway": gateway,
        "holidays_file": HOLIDAYS,
        "database": tmp_path / "riskman.db",
        "rules": rules,
        **top,
    }
    return Settings(**data)


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

    async def factory(rules: dict[str, Any], *, clock: Clock | None = None, **top: Any) -> Runtime:
        runtime = Runtime(
            sim_settings(sim, tmp_path, rules, **top), api_key="demo", start_wait=10, clock=clock
        )
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
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


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


def mark() -> float:
    """Now, on the clock the simulator stamps requests with (for `since=`)."""
    return time.monotonic()


def bodies(sim: Simulator, endpoint: str, since: float | None = None) -> list[dict[str, Any]]:
    """The bodies of the `endpoint` calls the simulator received (at or after `since`)."""
    return [
        r.body
        for r in sim.requests
        if r.endpoint == endpoint and (since is None or r.received >= since)
    ]


def account_locks(runtime: Runtime, account_id: int) -> list[Lockout]:
    return engine_of(runtime).lockouts.get_lockout_info(account_id)


def held_by(runtime: Runtime, account_id: int, rule: str) -> Lockout | None:
    """The lock `rule` holds on the account (account-wide or on a symbol), if any."""
    return next((lock for lock in account_locks(runtime, account_id) if lock.rule == rule), None)


async def seen(runtime: Runtime, account_id: int, contract_id: str, size: int) -> None:
    """Wait until riskman's state shows the position at `size` contracts (0: flat)."""
    state = engine_of(runtime).state
    await eventually(
        lambda: state.get_contract_count(account_id, contract_id) == size,
        what=f"riskman to see {size} x {contract_id}",
    )


async def quiet(runtime: Runtime) -> None:
    """Wait until riskman has routed every event it received and no enforcement is in flight.

    Used before asserting that something did *not* happen: once the position event is in
    riskman's state and the engine is idle, any reaction to it would already have started.
    """
    engine = engine_of(runtime)
    await engine.drain()
    await eventually(lambda: not engine.actions.in_flight(), what="enforcement to finish")
    await engine.drain()


async def logged(
    runtime: Runtime,
    rule: str,
    action: str,
    *,
    target: str | None = None,
    result: str = "ok",
    after: datetime | None = None,
) -> EnforcementRecord:
    """Wait for riskman's enforcement log to record this action (at or after `after`, on
    riskman's clock); return the record."""
    engine = engine_of(runtime)

    def find() -> EnforcementRecord | None:
        for record in engine.recent_log():
            if (
                record.rule == rule
                and record.action == action
                and record.result == result
                and (target is None or record.target == target)
                and (after is None or record.ts >= after)
            ):
                return record
        return None

    try:
        await eventually(lambda: find() is not None)
    except AssertionError:
        seen_log = "\n".join(
            f"  {r.rule} {r.action} {r.target}: {r.result} ({r.reason})"
            for r in engine.recent_log()
        )
        raise AssertionError(
            f"no {rule} {action} {target or ''} -> {result} in the log:\n{seen_log}"
        ) from None
    found = find()
    assert found is not None
    return found


async def wait_close(sim: Simulator, account_id: int, contract_id: str, since: float) -> None:
    """The simulator received a close of this position and the position is gone."""
    request = await sim.wait_for_request(
        "Position/closeContract",
        lambda r: r.body == {"accountId": account_id, "contractId": contract_id},
        timeout=10,
        since=since,
    )
    assert request.response is not None and request.response["success"] is True
    await eventually(lambda: contract_id not in sim_positions(sim, account_id))


async def gate_closes_new_position(
    sim: Simulator, runtime: Runtime, account_id: int, contract_id: str, size: int = 1
) -> None:
    """Open a position as the trader would and check that the lockout gate closes it."""
    since, now = mark(), engine_of(runtime).clock.now()
    buy(sim, account_id, contract_id, size)
    await wait_close(sim, account_id, contract_id, since)
    await logged(runtime, "LOCKOUT", "close", target=contract_id, after=now)


class ShiftedClock(SystemClock):
    """The real clock moved forward by a fixed offset, so a session boundary (whole minutes
    in the configuration) can be reached in a few seconds instead of waiting for the wall
    clock. `minute` is the boundary it is about to reach."""

    def __init__(self, offset: timedelta, minute: datetime) -> None:
        self.offset = offset
        self.minute = minute

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    @classmethod
    def before_next_minute(cls, seconds: float) -> ShiftedClock:
        """A clock that reads `seconds` before a whole minute. It runs ahead of the real clock
        (never behind), so the simulator's fill times are never in riskman's future."""
        real = datetime.now(UTC)
        minute = (real + timedelta(seconds=seconds)).replace(second=0, microsecond=0)
        minute += timedelta(minutes=1)
        return cls(minute - timedelta(seconds=seconds) - real, minute)
