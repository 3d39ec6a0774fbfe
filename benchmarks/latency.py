"""Latency: a position grows over the max-contracts limit; how long until the close call
reaches the gateway? riskman headless, riskman inside the Textual app, and the floor.

Each system is measured alone (one process at a time), in `rounds` alternating rounds so a
change of machine load during the run hits all of them alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import MODE_NAMES, Options, contract_price, start_armed
from .harness import Bench, Child, Distribution, base_rules, mb, ms, step, table

LIMIT = 2
CONTRACT = "CON.F.US.MNQ.Z26"
TARGETS = {"headless": (2.0, "≤ 2×"), "ui": (3.0, "≤ 3×")}


def latency_rules() -> dict[str, Any]:
    rules = base_rules()
    rules["max_contracts"]["limit"] = LIMIT
    return rules


def measure(
    bench: Bench,
    sim: Child,
    info: dict[str, Any],
    sut: Child,
    targets: list[tuple[int, str]],
    n: int,
    warmup: int,
    seed: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    priced = [(a, c, contract_price(info, c)) for a, c in targets]
    common: dict[str, Any] = {"targets": priced, "limit": LIMIT}
    if warmup:
        sim.call("latency", n=warmup, seed=seed + 1000, **common)
    if profile is not None:
        sut.call("profile_start")
    result: dict[str, Any] = sim.call("latency", n=n, seed=seed, **common)
    if profile is not None:
        sut.call("profile_stop", path=str(profile))
    return result


def run(opts: Options) -> str:
    n_total = opts.breaches
    rounds = max(1, opts.rounds)
    per_round = max(1, n_total // rounds)
    results = {mode: Distribution() for mode in opts.modes}
    timeouts = dict.fromkeys(opts.modes, 0)
    rss: dict[str, int | None] = {}
    with Bench(keep=opts.keep) as bench:
        sim, info = bench.start_sim(accounts=1, contracts=20)
        account = info["account_ids"][0]
        targets = [(account, CONTRACT)]
        for round_no in range(rounds):
            for mode in opts.modes:
                with step(f"latency: {MODE_NAMES[mode]}, round {round_no + 1}/{rounds}"):
                    sut, _ = start_armed(
                        bench,
                        sim,
                        info,
                        mode,
                        f"latency-{mode}-{round_no}",
                        [account],
                        latency_rules(),
                        [(account, CONTRACT, LIMIT)],
                    )
                    profile = None
                    if opts.profile_dir is not None and round_no == 0:
                        opts.profile_dir.mkdir(parents=True, exist_ok=True)
                        profile = opts.profile_dir / f"latency-{mode}.txt"
                    result = measure(
                        bench,
                        sim,
                        info,
                        sut,
                        targets,
                        per_round,
                        opts.warmup,
                        seed=round_no,
                        profile=profile,
                    )
                    results[mode].add(result["latencies"])
                    timeouts[mode] += result["timeouts"]
                    rss[mode] = sut.rss_kb()
                    bench.discard(sut)
        bench.discard(sim)
    return render(results, timeouts, rss)


def render(
    results: dict[str, Distribution], timeouts: dict[str, int], rss: dict[str, int | None]
) -> str:
    summaries = {mode: dist.summary() for mode, dist in results.items()}
    floor = summaries.get("floor")
    rows = []
    verdicts = []
    for mode, s in summaries.items():
        ratio_p50 = ratio_p99 = "—"
        target = "—"
        if floor is not None and mode != "floor":
            r50 = s["p50"] / floor["p50"]
            r99 = s["p99"] / floor["p99"]
            ratio_p50, ratio_p99 = f"{r50:.2f}×", f"{r99:.2f}×"
            goal, label = TARGETS.get(mode, (None, ""))
            if goal is not None:
                met = r99 <= goal
                target = f"{label} {'met' if met else 'NOT met'}"
                verdicts.append(f"{MODE_NAMES[mode]}: p99 {r99:.2f}× the floor ({label} target)")
        rows.append(
            [
                MODE_NAMES[mode],
                str(int(s["n"])) + (f" ({timeouts[mode]} timed out)" if timeouts[mode] else ""),
                ms(s["p50"]),
                ms(s["p90"]),
                ms(s["p99"]),
                ms(s["max"]),
                ratio_p50,
                ratio_p99,
                target,
                mb(rss.get(mode)),
            ]
        )
    notes = (
        "Time from the simulator queueing the `GatewayUserPosition` that takes the account over "
        f"`max_contracts.limit` ({LIMIT} → {LIMIT + 1} contracts) to the simulator receiving "
        "`Position/partialCloseContract`, in milliseconds, both ends on the simulator's clock "
        "(separate process, loopback). One breach at a time, 5–15 ms apart (random). "
        "Ratios are riskman ÷ floor at the same percentile. RSS: resident memory of the system "
        "under test after the run."
    )
    return table(
        "Latency: event to enforcement (max-contracts breach)",
        [
            "system",
            "breaches",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "p50 ÷ floor",
            "p99 ÷ floor",
            "target",
            "RSS MB",
        ],
        rows,
        notes,
    )
