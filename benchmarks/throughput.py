"""Throughput: the highest quote rate riskman sustains with the event lag under 100 ms.

One account holds 20 positions (one contract each, 20 instruments). The simulator streams
quotes round-robin over the 20 contracts at a fixed rate, in steps of increasing rate. Every
quote that riskman routes updates the quote tracker, the open P&L and the rules with a quote
trigger (RULE-003 with open P&L, RULE-004, RULE-005) for the account.

The lag is measured with probes that need no instrumentation inside riskman: every 250 ms one
of four contracts is moved to a loss where RULE-004 must close it, and the simulator times the
first breaching quote to the close call. A probe waits behind whatever quote backlog riskman
has, so when riskman falls behind, the probes show it. A step passes when the simulator really
sent the rate (±5 %), every probe closed, and the slowest probe took at most 100 ms.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

from .common import MODE_NAMES, Options, breach_price, is_floor, start_armed
from .harness import Bench, Distribution, base_rules, ms, step, table

LAG_LIMIT = 0.100
RATES = (1000, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000)
QUICK_RATES = (1000, 5000, 10000)
SECONDS = 5.0
PROBE_LOSS = Decimal(300)
TARGET = 5000


def throughput_rules() -> dict[str, Any]:
    rules = base_rules()
    # 20 open contracts must not be a breach; the account's total open P&L (RULE-003) must not
    # reach its limit while one probe position is at -$300: the limit is raised so that only
    # the per-position rule (RULE-004) fires, on the probes.
    rules["max_contracts"]["limit"] = 50
    rules["daily_realized_loss"]["limit"] = 5000
    rules["max_unrealized_profit"] = {"enabled": True, "target": 1000}
    return rules


def run(opts: Options) -> str:
    rates = QUICK_RATES if opts.quick else RATES
    seconds = 3.0 if opts.quick else SECONDS
    modes = [m for m in opts.modes if not is_floor(m)]
    steps: dict[str, list[dict[str, Any]]] = {}
    with Bench(keep=opts.keep) as bench:
        sim, info = bench.start_sim(accounts=1, contracts=20)
        account = info["account_ids"][0]
        contracts = [c["id"] for c in info["contracts"]]
        by_id = {c["id"]: c for c in info["contracts"]}
        probe_ids = contracts[:4]
        probes = [(account, cid, breach_price(by_id[cid], PROBE_LOSS)) for cid in probe_ids]
        for mode in modes:
            with step(f"throughput: {MODE_NAMES[mode]}"):
                sut, _ = start_armed(
                    bench,
                    sim,
                    info,
                    mode,
                    f"throughput-{mode}",
                    [account],
                    throughput_rules(),
                    [(account, cid, 1) for cid in contracts],
                )
                steps[mode] = []
                for rate in rates:
                    before = sut.call("stats")["counts"]
                    profile = None
                    if opts.profile_dir is not None and rate == TARGET:
                        opts.profile_dir.mkdir(parents=True, exist_ok=True)
                        profile = opts.profile_dir / f"throughput-{mode}-{rate}.txt"
                        sut.call("profile_start")
                    result = sim.call(
                        "quote_load",
                        call_timeout=seconds + 60,
                        rate=rate,
                        seconds=seconds,
                        contracts=contracts,
                        probes=probes,
                    )
                    if profile is not None:
                        sut.call("profile_stop", path=str(profile))
                    after = sut.call("stats")["counts"]
                    result["rate"] = rate
                    result["routed"] = after.get("quotes_routed", 0) - before.get(
                        "quotes_routed", 0
                    )
                    result["received"] = after.get("quotes_in", 0) - before.get("quotes_in", 0)
                    result["passed"] = passed(result, rate)
                    steps[mode].append(result)
                    print(
                        f"  {rate:>6} quotes/s: sent {result['achieved']:.0f}/s, "
                        f"slowest probe {ms(max(result['lags'], default=None))} ms"
                        + ("" if result["passed"] else "  -> over the limit"),
                        flush=True,
                        file=sys.stderr,
                    )
                    if not result["passed"]:
                        break
                    sim.call("idle", seconds=1.0)
                bench.discard(sut)
        bench.discard(sim)
    return render(steps, seconds)


def passed(result: dict[str, Any], rate: float) -> bool:
    lags = result["lags"]
    return (
        bool(lags)
        and result["unfinished"] is None
        and result["achieved"] >= 0.95 * rate
        and max(lags) <= LAG_LIMIT
    )


def render(steps: dict[str, list[dict[str, Any]]], seconds: float) -> str:
    summary_rows = []
    detail_rows = []
    for mode, results in steps.items():
        best = max((r for r in results if r["passed"]), key=lambda r: r["rate"], default=None)
        failed = next((r for r in results if not r["passed"]), None)
        best_text = f"{best['rate']:,}" if best else "< first step"
        if failed is None:
            limit_text = f"not reached (all {len(results)} steps passed)"
        else:
            limit_text = f"{failed['rate']:,}/s: {_why(failed)}"
        target = "—"
        if mode == "headless":
            target = f"≥ {TARGET:,}/s " + ("met" if best and best["rate"] >= TARGET else "NOT met")
        summary_rows.append([MODE_NAMES[mode], best_text, limit_text, target])
        for r in results:
            dist = Distribution(list(r["lags"]))
            s = dist.summary()
            detail_rows.append(
                [
                    MODE_NAMES[mode],
                    f"{r['rate']:,}",
                    f"{r['achieved']:,.0f}",
                    f"{r['received'] / r['elapsed']:,.0f}",
                    f"{r['routed'] / r['elapsed']:,.0f}",
                    str(len(r["lags"])),
                    ms(s["p50"], 1),
                    ms(s["p99"], 1),
                    ms(s["max"], 1) if r["unfinished"] is None else f"> {ms(r['unfinished'], 0)}",
                    "yes" if r["passed"] else "no",
                ]
            )
    summary = table(
        "Throughput: sustained quote rate (20 contracts with open positions)",
        ["system", "max sustained quotes/s", "first step over the limit", "target"],
        summary_rows,
        "A step passes when the simulator sent the rate (±5 %) for "
        f"{seconds:g} s and every lag probe closed within {LAG_LIMIT * 1000:.0f} ms.",
    )
    detail = table(
        "Throughput: every step",
        [
            "system",
            "quotes/s asked",
            "sent/s",
            "received/s",
            "routed/s",
            "probes",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "pass",
        ],
        detail_rows,
        "received/s: quotes parsed and handed to the engine; routed/s: quotes the router "
        "applied (price, open P&L, rules). Under load a quote still waiting in the engine's "
        "queue is replaced by a newer one for the same contract, so routed/s can be lower than "
        "received/s without any price being late: the newest price is the one evaluated. "
        "Lag: time from the simulator sending a breaching quote to riskman's close call.",
    )
    return summary + "\n" + detail


def _why(result: dict[str, Any]) -> str:
    if result["achieved"] < 0.95 * result["rate"]:
        return f"the simulator sent only {result['achieved']:,.0f}/s"
    if result["unfinished"] is not None:
        return f"a probe was not closed after {result['unfinished'] * 1000:,.0f} ms"
    if not result["lags"]:
        return "no probe closed"
    return f"slowest probe {max(result['lags']) * 1000:,.0f} ms"
