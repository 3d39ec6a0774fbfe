"""What the scenarios share: options, starting a system under test against the simulator and
getting it to the point where a breach can be measured."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from .harness import Bench, Child, write_config

MODES = ("floor", "floor-httpx", "headless", "ui")
OPTIONAL_MODES = ("floor-httpx-h11", "floor-httpx-aiohttp", "streamed")
"""Measured when asked for (`--modes headless,streamed`): streamed in the latency benchmark
only; floor-httpx-h11 is the floor with riskman's REST transport (httpx on h11),
floor-httpx-aiohttp with the one before it (httpx on aiohttp, still used through proxies)."""
MODE_NAMES = {
    "floor": "floor (aiohttp WebSocket + aiohttp HTTP)",
    "floor-httpx": "floor, httpx (aiohttp WebSocket + httpx HTTP)",
    "floor-httpx-h11": "floor, httpx on h11 (riskman's REST transport)",
    "floor-httpx-aiohttp": "floor, httpx on aiohttp (riskman's proxy transport)",
    "headless": "riskman headless",
    "streamed": "riskman headless + 3 attached stream clients",
    "ui": "riskman + Textual app",
}


def is_floor(mode: str) -> bool:
    return mode.startswith("floor")


@dataclass
class Options:
    breaches: int = 1000
    rounds: int = 2
    warmup: int = 50
    quick: bool = False
    keep: bool = False
    profile_dir: Path | None = None
    modes: tuple[str, ...] = MODES


def contract_price(info: dict[str, Any], contract_id: str) -> str:
    return str(next(c["price"] for c in info["contracts"] if c["id"] == contract_id))


def breach_price(contract: dict[str, Any], loss: Decimal) -> str:
    """A price where one long contract bought at the start price loses at least `loss`."""
    ticks = math.ceil(loss / Decimal(contract["tick_value"]))
    return str(Decimal(contract["price"]) - ticks * Decimal(contract["tick_size"]))


def start_armed(
    bench: Bench,
    sim: Child,
    info: dict[str, Any],
    mode: str,
    name: str,
    accounts: list[int],
    rules: dict[str, Any],
    positions: list[tuple[int, str, int]],
    trace: int | None = None,
    real_limit: bool = False,
) -> tuple[Child, dict[str, float]]:
    """Start a system under test guarding `accounts`, open `positions` (account, contract,
    size) at the contracts' start prices, and wait until it holds them with prices and
    contract specs (so every rule has what it needs on the first measured event)."""
    config: Path = write_config(bench.dir, name, info, accounts, rules)
    sut = bench.start_sut(mode, config, trace=trace, real_limit=real_limit)
    times: dict[str, float] = sut.call("wait_armed", timeout=120)
    sim.call("wait_subscribed", accounts=accounts, quotes=[], timeout=60)
    contracts = sorted({contract for _, contract, _ in positions})
    sim.call("push_quotes", quotes=[(c, contract_price(info, c)) for c in contracts])
    sim.call(
        "push_positions",
        positions=[(a, c, size, contract_price(info, c)) for a, c, size in positions],
    )
    if not is_floor(mode) and contracts:
        sim.call("wait_subscribed", accounts=[], quotes=contracts, timeout=60)
        sim.call("wait_requests", endpoint="Contract/searchById", count=len(contracts))
    sim.call("idle", seconds=1.0)
    return sut, times
