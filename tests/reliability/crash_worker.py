"""The process the crash tests SIGKILL: the real engine on a real SQLite file, fed a scripted
burst of fills and positions that breaks rules and crosses the daily reset.

It runs in a child of a multiprocessing *forkserver* that has imported riskman once, so each
of the many runs starts in milliseconds (a fresh interpreter would take most of a second).

What the child says it did is written, one JSON line per change the engine *reported* to its
subscribers (a lock set or cleared, a reset done), with `os.write` on an O_APPEND descriptor:
a line that reached the file was reported, so the state behind it must be in the database
whatever instant the kill came. The test compares the two.

Times: the script is laid out on a fixed timeline around a daily reset (`RESET_AT`). The child
runs it in real time on a clock shifted onto that timeline, so the reset timer really fires in
the middle of the burst; the restart (in the test process) uses a fake clock at `END`.

`run_runtime_child` is the other kind of run: the whole riskman (`Runtime`: REST client, hubs,
engine) against the simulator in the test process, killed while the test trades at it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from riskman.config import Settings
from riskman.core.clock import SystemClock
from riskman.core.enums import OrderSide, PositionType
from riskman.core.models import Position, Trade
from riskman.core.ports import PositionEvent, TradeEvent
from riskman.core.views import EngineChange, LockoutChange, ResetDone
from riskman.engine.engine import Engine
from riskman.rules import ALL_RULES
from riskman.runtime import Runtime
from tests.fakes import CONTRACTS, FakeGateway, account, contract

ACC = 7
MNQ = "CON.F.US.MNQ.Z26"
HOLIDAYS = Path(__file__).resolve().parents[2] / "config" / "holidays.yaml"

# Wednesday 2026-11-18, 17:00 America/Chicago (CST, UTC-6): the reset that ends that trading day.
RESET_AT = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)
OLD_DAY = date(2026, 11, 18)
NEW_DAY = date(2026, 11, 19)
START = RESET_AT - timedelta(milliseconds=150)
"""The first scripted event; the child's engine starts a little before it."""
STEP_MS = 14
ROUND_TRIPS_OLD = 3
ROUND_TRIPS_NEW = 9
END = RESET_AT + timedelta(milliseconds=20 + 2 * STEP_MS * ROUND_TRIPS_NEW + 500)
"""When the restart happens (after the whole script)."""

RULES: dict[str, Any] = {
    # Crossed once before the reset (that lock ends at the reset) and again after it.
    "daily_realized_loss": {"limit": 250, "include_unrealized": False},
    # The -150 fill before the reset starts a 5-minute cooldown that outlives the reset.
    "cooldown_after_loss": {"tiers": [{"loss": 100, "cooldown": 300}]},
    # Only the new session has more than 7 trades in a minute (the counter restarts at the
    # reset, so a cooldown earned just before it could not be re-derived after it).
    "trade_frequency_limit": {
        "per_minute": 7,
        "per_hour": 500,
        "per_session": 500,
        "cooldowns": {"per_minute": 120, "per_hour": 60, "per_session": 60},
    },
}

# Net loss of each round trip's closing fill (fees 0.74 a fill on top).
OLD_LOSSES = ("-40", "-150", "-80")  # old day: -270 - fees -> locked, then the reset
NEW_LOSSES = ("-20", "-30", "-25", "-60", "-35", "-45", "-50", "-20", "-10")  # new day: -295


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    event: PositionEvent | TradeEvent


def settings(db_path: Path) -> Settings:
    return Settings.model_validate(
        {"holidays_file": HOLIDAYS, "database": db_path, "accounts": [ACC], "rules": RULES}
    )


def script() -> list[Step]:
    """The broker's truth: every fill and position change of the burst, in time order."""
    steps: list[Step] = []
    losses = [*OLD_LOSSES, *NEW_LOSSES]
    for k, loss in enumerate(losses):
        if k < ROUND_TRIPS_OLD:
            opened = START + timedelta(milliseconds=2 * k * STEP_MS)
        else:
            later = 20 + 2 * (k - ROUND_TRIPS_OLD) * STEP_MS
            opened = RESET_AT + timedelta(milliseconds=later)
        closed = opened + timedelta(milliseconds=STEP_MS)
        long = Position(
            id=100 + k,
            account_id=ACC,
            contract_id=MNQ,
            creation_timestamp=opened,
            type=PositionType.LONG,
            size=1,
            average_price=Decimal("21000"),
        )
        steps.append(Step(opened, TradeEvent(_fill(10 * k + 1, 2 * k + 1, opened, None))))
        steps.append(Step(opened, PositionEvent(long)))
        steps.append(Step(closed, TradeEvent(_fill(10 * k + 2, 2 * k + 2, closed, loss))))
        flat = long.model_copy(update={"size": 0, "type": PositionType.UNDEFINED})
        steps.append(Step(closed, PositionEvent(flat)))
    return steps


def broker_trades() -> list[Trade]:
    return [s.event.trade for s in script() if isinstance(s.event, TradeEvent)]


def _fill(trade_id: int, order_id: int, at: datetime, pnl: str | None) -> Trade:
    return Trade(
        id=trade_id,
        account_id=ACC,
        contract_id=MNQ,
        creation_timestamp=at,
        price=Decimal("21000"),
        profit_and_loss=None if pnl is None else Decimal(pnl),
        fees=Decimal("0.74"),
        side=OrderSide.BID if pnl is None else OrderSide.ASK,
        size=1,
        order_id=order_id,
    )


class ShiftedClock(SystemClock):
    """Real time, moved onto the script's timeline: timers fire at real intervals."""

    def __init__(self, offset: timedelta) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return super().now() + self._offset


def preloaded_gateway() -> FakeGateway:
    gateway = FakeGateway()
    gateway.accounts[ACC] = account(ACC)
    return gateway


def warm_contracts(engine: Engine) -> None:
    for contract_id in CONTRACTS:
        engine.contracts.cache_contract(contract(contract_id))


# --- the child ---------------------------------------------------------------------------------


def run_engine_child(db_path: str, report_path: str, ready: Any) -> None:
    """Entry point of one run (in a forkserver child): start, signal `ready`, run the script."""
    asyncio.run(_child(Path(db_path), Path(report_path), ready))


async def _child(db_path: Path, report_path: Path, ready: Any) -> None:
    fd = os.open(report_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    clock = ShiftedClock(START - timedelta(milliseconds=40) - datetime.now(UTC))
    gateway = preloaded_gateway()
    engine = await Engine.open(settings(db_path), gateway, clock=clock, rule_classes=ALL_RULES)
    warm_contracts(engine)
    gateway.sink = engine.submit
    engine.subscribe(lambda change: _report(fd, change))
    await engine.start()
    ready.set()
    for step in script():
        delay = (step.at - clock.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        # The gateway is not told of the positions: closes the lockout gate sends are answered
        # "already flat", so every fill of the burst is the trader's own (the broker's truth
        # is the script, and it must survive the kill: it cannot depend on riskman's actions).
        engine.submit(step.event)
    await engine.drain()
    await engine.actions.wait_idle()
    await engine.close()
    _write(fd, {"kind": "done"})
    os.close(fd)


def _report(fd: int, change: EngineChange) -> None:
    if isinstance(change, LockoutChange):
        lock = change.lockout
        _write(
            fd,
            {
                "kind": "lock",
                "cleared": change.cleared_by is not None,
                "account": lock.account_id,
                "rule": lock.rule,
                "symbol": lock.symbol or "",
                "until": None if lock.until is None else lock.until.isoformat(),
            },
        )
    elif isinstance(change, ResetDone):
        _write(fd, {"kind": "reset", "ended": change.ended.isoformat(), "how": change.how})


def _write(fd: int, line: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(line) + "\n").encode())


# --- the whole riskman, against the simulator in the test process -------------------------------


def run_runtime_child(
    settings_data: dict[str, Any], api_key: str, log_path: str, ready: Any
) -> None:
    """riskman as the daemon runs it (REST client, hubs, engine), until it is killed."""
    logging.basicConfig(filename=log_path, level=logging.INFO)
    asyncio.run(_runtime_child(settings_data, api_key, ready))


async def _runtime_child(settings_data: dict[str, Any], api_key: str, ready: Any) -> None:
    runtime = Runtime(Settings.model_validate(settings_data), api_key=api_key, start_wait=10)
    await runtime.start()
    if not await runtime.wait_armed(10):
        raise SystemExit("riskman did not arm against the simulator")
    ready.set()
    await asyncio.Event().wait()  # until the test kills this process
