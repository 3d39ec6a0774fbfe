"""Latency: the trader's order fills over the max-contracts limit; how long until riskman's
close call reaches the gateway? riskman headless, riskman inside the Textual app, and two
floors (the same minimal client with aiohttp's and with httpx's HTTP client).

The gateway is modelled as it sends a fill (issue 16): the order update, the trade, the
position update and the account update, back to back (`benchmarks.simproc.SimDriver.cmd_fills`).
`max_contracts` limit 1, `reduce_to_limit`: each breach opens 2 lots through the simulated
exchange, the clock runs from the position update's send to the arrival of
`Position/partialCloseContract`, then the trader flattens and the next breach comes 0.4–0.6 s
later (about 2 a second: inside the gateway's 200 calls a minute, so riskman's own REST limiter
runs as shipped and never holds a close back).

Each system is measured alone (one process at a time), in `rounds` alternating rounds so a
change of machine load during the run hits all of them alike.

The push model (`measure_pushes`: bare `GatewayUserPosition` pushes 5-15 ms apart, limit 2) is
what the scale benchmark still uses: it measures memory and latency against the number of
accounts, where the event pattern matters less than the pace.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from .common import MODE_NAMES, Options, contract_price, is_floor, start_armed
from .harness import Bench, BenchError, Child, Distribution, base_rules, mb, ms, step, table

LIMIT = 1
LOTS = 2
CONTRACT = "CON.F.US.MNQ.Z26"
PACE = (0.4, 0.6)
TARGETS = {"headless": 1.5, "ui": 2.0, "streamed": 1.6}
"""riskman ÷ the aiohttp floor, at p50 and at p99, in the same run (issue 16)."""
STREAM_CLIENTS = 3
STREAMED_TARGET = 1.1
"""p99 with STREAM_CLIENTS attached ÷ p99 headless alone (issue 12)."""


def attach_stream_clients(bench: Bench, name: str, count: int) -> list[Child]:
    """`count` processes following the engine's snapshot stream, each streaming already."""
    config = bench.dir / name / "riskman.yaml"
    clients = [
        bench.spawn(
            f"stream-{i}", ["benchmarks.streamclient", "--config", str(config)], connect=False
        )
        for i in range(count)
    ]
    deadline = time.monotonic() + 60
    while not all("first frame" in client.log_tail() for client in clients):
        for client in clients:
            if client.proc.poll() is not None:
                raise BenchError(f"{client.role} exited\n{client.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError("the stream clients did not get a first frame in 60 s")
        time.sleep(0.1)
    return clients


def detach(bench: Bench, clients: list[Child]) -> None:
    for client in clients:
        client.proc.terminate()
        bench.discard(client)


def latency_rules() -> dict[str, Any]:
    """The example's rules with max_contracts at 1 and the limits a benchmark trader would
    hit by trading twice a second for minutes raised out of reach (they still run)."""
    rules = base_rules()
    rules["max_contracts"]["limit"] = LIMIT
    rules["trade_frequency_limit"].update(per_minute=100_000, per_hour=100_000, per_session=100_000)
    rules["daily_realized_loss"]["limit"] = 1_000_000
    rules["daily_unrealized_loss"]["limit"] = 1_000_000
    rules["cooldown_after_loss"]["tiers"] = [{"loss": 1_000_000, "cooldown": 300}]
    return rules


def measure_fills(
    sim: Child,
    sut: Child,
    targets: list[tuple[int, str]],
    n: int,
    warmup: int,
    seed: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    common: dict[str, Any] = {"targets": targets, "lots": LOTS, "pace": PACE}
    if warmup:
        sim.call("fills", n=warmup, seed=seed + 1000, **common)
    if profile is not None:
        sut.call("profile_start")
    load_before = os.getloadavg()[0]
    cpu_before = sut.call("cpu")
    result: dict[str, Any] = sim.call("fills", n=n, seed=seed, **common)
    result["cpu"] = sut.call("cpu") - cpu_before
    result["load"] = (load_before, os.getloadavg()[0])
    if profile is not None:
        sut.call("profile_stop", path=str(profile))
    return result


def start_flat(bench: Bench, sim: Child, info: dict[str, Any], mode: str, name: str, **kw: Any):  # type: ignore[no-untyped-def]
    """A system under test guarding the first account, flat, its limiter as shipped."""
    account = info["account_ids"][0]
    return start_armed(
        bench, sim, info, mode, name, [account], latency_rules(), [], real_limit=True, **kw
    )


def run(opts: Options) -> str:
    n_total = opts.breaches
    rounds = max(1, opts.rounds)
    per_round = max(1, n_total // rounds)
    warmup = 5 if opts.quick else 15
    results = {mode: Distribution() for mode in opts.modes}
    timeouts = dict.fromkeys(opts.modes, 0)
    loads: dict[str, list[float]] = {mode: [] for mode in opts.modes}
    rss: dict[str, int | None] = {}
    cpu: dict[str, list[float]] = {mode: [] for mode in opts.modes}
    with Bench(keep=opts.keep) as bench:
        sim, info = bench.start_sim(accounts=1, contracts=20)
        account = info["account_ids"][0]
        for round_no in range(rounds):
            for mode in opts.modes:
                with step(f"latency: {MODE_NAMES[mode]}, round {round_no + 1}/{rounds}"):
                    name = f"latency-{mode}-{round_no}"
                    sut, _ = start_flat(bench, sim, info, mode, name)
                    clients = (
                        attach_stream_clients(bench, name, STREAM_CLIENTS)
                        if mode == "streamed"
                        else []
                    )
                    profile = None
                    if opts.profile_dir is not None and round_no == 0:
                        opts.profile_dir.mkdir(parents=True, exist_ok=True)
                        profile = opts.profile_dir / f"latency-{mode}.txt"
                    result = measure_fills(
                        sim,
                        sut,
                        [(account, CONTRACT)],
                        per_round,
                        warmup,
                        seed=round_no,
                        profile=profile,
                    )
                    results[mode].add(result["latencies"])
                    timeouts[mode] += result["timeouts"]
                    loads[mode].extend(result["load"])
                    cpu[mode].append(result["cpu"] / per_round)
                    rss[mode] = sut.rss_kb()
                    detach(bench, clients)
                    bench.discard(sut)
        bench.discard(sim)
    return render(results, timeouts, rss, loads, cpu)


def ratios(s: dict[str, float], floor: dict[str, float] | None) -> list[float] | None:
    if floor is None:
        return None
    return [s[q] / floor[q] for q in ("p50", "p90", "p99")]


def render(
    results: dict[str, Distribution],
    timeouts: dict[str, int],
    rss: dict[str, int | None],
    loads: dict[str, list[float]],
    cpu: dict[str, list[float]] | None = None,
) -> str:
    summaries = {mode: dist.summary() for mode, dist in results.items() if dist.values}
    floor = summaries.get("floor")
    floor_httpx = summaries.get("floor-httpx")
    rows = []
    for mode, s in summaries.items():
        by_aiohttp = ratios(s, floor) if mode != "floor" else None
        by_httpx = ratios(s, floor_httpx) if not is_floor(mode) else None
        target = "—"
        goal = TARGETS.get(mode)
        if goal is not None and by_aiohttp is not None:
            met = by_aiohttp[0] <= goal and by_aiohttp[2] <= goal
            target = f"≤ {goal:g}× {'met' if met else 'NOT met'}"
        load = loads.get(mode) or []
        rows.append(
            [
                MODE_NAMES[mode],
                str(int(s["n"])) + (f" ({timeouts[mode]} timed out)" if timeouts[mode] else ""),
                ms(s["p50"]),
                ms(s["p90"]),
                ms(s["p99"]),
                ms(s["max"]),
                " / ".join(f"{r:.2f}×" for r in by_aiohttp) if by_aiohttp else "—",
                " / ".join(f"{r:.2f}×" for r in by_httpx) if by_httpx else "—",
                target,
                f"{min(load):.1f}–{max(load):.1f}" if load else "—",
                ms(sum(c := (cpu or {}).get(mode) or [math.nan]) / len(c)),
                mb(rss.get(mode)),
            ]
        )
    notes = (
        "The trader's 2-lot market order fills with `max_contracts.limit` 1 (`reduce_to_limit`); "
        "the gateway sends the fill as its four events back to back (order update, trade, "
        "position update, account update). Time from the simulator queueing that "
        "`GatewayUserPosition` to the simulator receiving `Position/partialCloseContract`, in "
        "milliseconds, both ends on the simulator's clock (separate process, loopback). One "
        "breach every 0.4–0.6 s (random), inside the gateway's 200 calls a minute; riskman's "
        "REST limiter as shipped. Ratios are p50 / p90 / p99 of the system ÷ the same "
        "percentile of the floor in the same run; the target is on p50 and p99 against the "
        "aiohttp floor. Load: the machine's 1-minute load average at the start and end of each "
        "measurement (2 cores; above ~1 the systems compete for a core). CPU: the system under "
        "test's own CPU time (all threads) per breach, its whole cycle (the fill, the close's "
        "fill, the trader's flatten): the load-independent cost. RSS: resident memory of the "
        "system under test after the run."
    )
    streamed, headless = summaries.get("streamed"), summaries.get("headless")
    if streamed is not None and headless is not None:
        ratio = streamed["p99"] / headless["p99"]
        verdict = "met" if ratio <= STREAMED_TARGET else "NOT met"
        notes += (
            f" With {STREAM_CLIENTS} attached stream clients (separate processes following the "
            f"control API's snapshot stream) p99 is {ratio:.2f}× headless alone (target "
            f"≤ {STREAMED_TARGET:g}×: {verdict})."
        )
    return table(
        "Latency: fill to enforcement (max-contracts breach, gateway event order)",
        [
            "system",
            "breaches",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "÷ aiohttp floor (p50/p90/p99)",
            "÷ httpx floor (p50/p90/p99)",
            "target (p50, p99)",
            "load 1-min",
            "CPU ms/breach",
            "RSS MB",
        ],
        rows,
        notes,
    )


# --- the push model (scale) -------------------------------------------------------------------

PUSH_LIMIT = 2


def push_rules() -> dict[str, Any]:
    rules = base_rules()
    rules["max_contracts"]["limit"] = PUSH_LIMIT
    return rules


def measure_pushes(
    sim: Child,
    info: dict[str, Any],
    targets: list[tuple[int, str]],
    n: int,
    warmup: int,
    seed: int,
) -> dict[str, Any]:
    """`n` bare position pushes over the limit (2 → 3), 5-15 ms apart (see simproc)."""
    priced = [(a, c, contract_price(info, c)) for a, c in targets]
    common: dict[str, Any] = {"targets": priced, "limit": PUSH_LIMIT}
    if warmup:
        sim.call("latency", n=warmup, seed=seed + 1000, **common)
    result: dict[str, Any] = sim.call("latency", n=n, seed=seed, **common)
    return result
