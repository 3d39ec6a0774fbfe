"""Scale: latency and memory with 1, 10 and 50 guarded accounts.

Every guarded account holds a position at the max-contracts limit in its own contract (the
accounts spread over the 20 contracts, so quotes stream for up to 20). The breaches go round
the accounts. Memory is the resident set of the system under test once armed and after the
breaches; "per account" is the growth from 1 to N accounts divided by N - 1.
"""

from __future__ import annotations

from typing import Any

from .common import MODE_NAMES, Options, is_floor, start_armed
from .harness import Bench, Child, Distribution, mb, ms, step, table
from .latency import PUSH_LIMIT, measure_pushes, push_rules

ACCOUNTS = (1, 10, 50)
BREACHES = 300


def run(opts: Options) -> str:
    breaches = 100 if opts.quick else BREACHES
    modes = [m for m in opts.modes if not is_floor(m)]
    rows: list[dict[str, Any]] = []
    with Bench(keep=opts.keep) as bench:
        sim, info = bench.start_sim(accounts=max(ACCOUNTS), contracts=20)
        contracts = [c["id"] for c in info["contracts"]]
        for mode in modes:
            for count in ACCOUNTS:
                with step(f"scale: {MODE_NAMES[mode]}, {count} account(s)"):
                    rows.append(
                        measure_one(bench, sim, info, mode, count, contracts, breaches, opts)
                    )
        bench.discard(sim)
    return render(rows, breaches)


def measure_one(
    bench: Bench,
    sim: Child,
    info: dict[str, Any],
    mode: str,
    count: int,
    contracts: list[str],
    breaches: int,
    opts: Options,
) -> dict[str, Any]:
    accounts = info["account_ids"][:count]
    targets = [(a, contracts[i % len(contracts)]) for i, a in enumerate(accounts)]
    sut, _ = start_armed(
        bench,
        sim,
        info,
        mode,
        f"scale-{mode}-{count}",
        accounts,
        push_rules(),
        [(a, c, PUSH_LIMIT) for a, c in targets],
    )
    armed_rss = sut.rss_kb()
    result = measure_pushes(sim, info, targets, breaches, opts.warmup, seed=count)
    after_rss = sut.rss_kb()
    bench.discard(sut)
    return {
        "mode": mode,
        "accounts": count,
        "latency": Distribution(result["latencies"]).summary(),
        "timeouts": result["timeouts"],
        "armed_rss": armed_rss,
        "after_rss": after_rss,
    }


def render(rows: list[dict[str, Any]], breaches: int) -> str:
    out = []
    base: dict[str, int | None] = {}
    for row in rows:
        if row["accounts"] == 1:
            base[row["mode"]] = row["after_rss"]
        s = row["latency"]
        growth = "—"
        first = base.get(row["mode"])
        if row["accounts"] > 1 and first is not None and row["after_rss"] is not None:
            growth = f"{(row['after_rss'] - first) / (row['accounts'] - 1):.0f}"
        n = str(int(s["n"])) + (f" ({row['timeouts']} timed out)" if row["timeouts"] else "")
        out.append(
            [
                MODE_NAMES[row["mode"]],
                str(row["accounts"]),
                n,
                ms(s["p50"]),
                ms(s["p99"]),
                ms(s["max"]),
                mb(row["armed_rss"]),
                mb(row["after_rss"]),
                growth,
            ]
        )
    return table(
        "Scale: latency and memory by guarded accounts",
        [
            "system",
            "accounts",
            "breaches",
            "p50 ms",
            "p99 ms",
            "max ms",
            "RSS armed MB",
            "RSS after MB",
            "kB per extra account",
        ],
        out,
        f"{breaches} max-contracts breaches per row, going round the accounts: bare "
        "`GatewayUserPosition` pushes over the limit (2 → 3), 5–15 ms apart, from the push to "
        "the close call's arrival. Each account holds one position (its own contract; 20 contracts "
        "shared out), so quotes stream for min(accounts, 20) contracts.",
    )
