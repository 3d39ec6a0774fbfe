"""Soak: riskman headless for a long time at a realistic load, watched for drift.

    python -m benchmarks.soak --minutes 30          # the real run (~32 min)
    python -m benchmarks.soak --minutes 1           # a quick check
    python -m benchmarks.soak --minutes 30 --readme # ... and write the table into README.md

The load, on one account, against the simulator in its own process (`benchmarks.harness`):

- quotes for 10 contracts at 50 a second each (500/s), each contract held long 1 (so every
  quote is routed through the quote tracker, the open P&L and the quote-triggered rules);
- a fill every 2 seconds: every 4 s a measured breach, alternately one of these two, each two
  real trades at the simulated exchange:
  - **event lag**: one of the 10 contracts gets a quote where its open loss reaches $300; the
    time from that quote leaving the simulator to riskman's `closeContract` arriving is the
    lag a breach waits behind the quote stream plus its enforcement. The contract is bought
    back afterwards;
  - **enforcement latency**: the trader buys a third Micro Gold contract over a limit of 2
    (RULE-002); the time from that `GatewayUserPosition` leaving the simulator to riskman's
    `partialCloseContract` arriving;
- both hubs' sockets dropped every 2 minutes (every 20 s in runs under 5 minutes); the time
  to recover is from the drop to the user hub resubscribed and reconciled (`Trade/search` on
  the new connection) and every quote subscription back.

Every window (1 minute; 10 s in runs under 5 minutes) prints a row: riskman's resident memory
(RSS), the event lag and enforcement latency percentiles, the fills, drops and recovery times.
At the end a verdict compares the first and last thirds: memory growth and lag growth.
Timestamps of every measured interval are both taken in the simulator (its own
`time.monotonic()`); riskman is the unmodified `Runtime` (`benchmarks.sut --mode headless`),
with the REST limiter widened as in the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import signal
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from riskman.core.enums import OrderSide

from .common import breach_price
from .harness import (
    Bench,
    ControlServer,
    Distribution,
    base_rules,
    machine_line,
    mb,
    ms,
    step,
    table,
    write_config,
)
from .simproc import CLOSE, PARTIAL_CLOSE, SimDriver

README = Path(__file__).resolve().parent / "README.md"
QUOTED = 10
QUOTES_PER_CONTRACT = 50.0
BREACH_CONTRACT = "CON.F.US.MGC.G27"
BREACH_LIMIT = 2
PROBE_LOSS = Decimal(300)
EVENT_EVERY = 4.0
"""Seconds between measured breaches (alternately a lag probe and a position breach); each
makes two fills, so a fill every 2 s."""
DROP_EVERY = 120.0
QUICK_DROP_EVERY = 20.0
"""In runs under 5 minutes, so a quick check sees the reconnect path too."""
EVENT_TIMEOUT = 15.0
_TICK = 0.0005
BAND_TICKS = 4


def soak_rules() -> dict[str, Any]:
    """The example configuration's rules, every one that looks at quotes, fills or positions
    on, with limits that only the measured breaches reach (so the soak never locks itself)."""
    rules = base_rules()
    rules["max_contracts"]["limit"] = 100
    rules["max_contracts_per_instrument"] = {
        "enabled": True,
        "default_limit": 10,
        "limits": {"MGC": BREACH_LIMIT},
        "unknown_symbol": "allow",
        "action": "reduce_to_limit",
    }
    # Every probe realizes a $300 loss: the daily limit must not lock the account.
    rules["daily_realized_loss"] = {"enabled": True, "limit": 10**7, "include_unrealized": True}
    rules["daily_unrealized_loss"] = {"enabled": True, "limit": int(PROBE_LOSS)}
    rules["trade_frequency_limit"] = {
        "enabled": True,
        "per_minute": 10_000,
        "per_hour": 100_000,
        "per_session": 1_000_000,
    }
    rules["cooldown_after_loss"] = {"enabled": True, "tiers": [{"loss": 10**7, "cooldown": 60}]}
    return rules


# --- the simulator side ------------------------------------------------------------------------


class SoakDriver(SimDriver):
    """The simulator process of the soak: `benchmarks.simproc`'s driver plus the soak load."""

    def __init__(self) -> None:
        super().__init__()
        self._turn = 0
        self._next_event = 0.0
        self._next_drop = 0.0
        self._probe_next = True
        self._probe_index = 0
        self._reconciled = False
        """Since the last drop, the user hub has read the fills again (`Trade/search`)."""
        self._drop_every = DROP_EVERY

    async def cmd_soak_setup(
        self,
        account: int,
        quoted: list[str],
        breach: str,
        breach_limit: int,
        drop_every: float = DROP_EVERY,
    ) -> None:
        """Open the positions the soak holds: long 1 of each quoted contract, `breach_limit`
        of the breach contract (real orders at the simulated exchange)."""
        sim = self._sim()
        for contract_id in [*quoted, breach]:
            sim.set_price(contract_id, self._specs[contract_id].start_price)
        for contract_id in quoted:
            sim.submit_order(account, contract_id, OrderSide.BID, 1)
        sim.submit_order(account, breach, OrderSide.BID, breach_limit)
        now = time.monotonic()
        self._drop_every = drop_every
        self._next_event = now + EVENT_EVERY
        self._next_drop = now + drop_every

    async def cmd_soak_window(
        self,
        seconds: float,
        account: int,
        quoted: list[str],
        breach: str,
        breach_limit: int,
        probe_prices: dict[str, str],
    ) -> dict[str, Any]:
        sim = self._sim()
        log, requests = sim.event_log, sim.requests
        bands = {
            c: [
                self._specs[c].start_price + self._specs[c].tick_size * k for k in range(BAND_TICKS)
            ]
            for c in quoted
        }
        rate = QUOTES_PER_CONTRACT * len(quoted)
        lags: list[float] = []
        latencies: list[float] = []
        recoveries: list[float] = []
        # unstarted: a measured breach that could not even begin (riskman not subscribed to
        # the contract it needs, or the exchange sent no position event): counted, not hidden.
        missed = {"probe": 0, "breach": 0, "recovery": 0, "unstarted": 0}
        drops = 0
        fills_before = len(sim.trades(account))
        # What is in flight: ("probe", contract, sent) / ("breach", contract, sent) /
        # ("drop", None, dropped).
        pending: tuple[str, str | None, float] | None = None
        self._forget()
        start = time.monotonic()
        end = start + seconds
        sent = 0
        while True:
            now = time.monotonic()
            if now >= end and pending is None:
                break
            due = int((now - start) * rate)
            while sent < due:
                contract_id = quoted[self._turn % len(quoted)]
                if pending is not None and pending[0] == "probe" and pending[1] == contract_id:
                    sim.push_quote(contract_id, probe_prices[contract_id])
                else:
                    band = bands[contract_id]
                    sim.push_quote(contract_id, band[(self._turn // len(quoted)) % len(band)])
                sent += 1
                self._turn += 1
            if pending is None and now < end:
                if now >= self._next_drop:
                    sim.faults.drop_connections()
                    drops += 1
                    self._reconciled = False
                    pending = ("drop", None, time.monotonic())
                    self._next_drop = now + self._drop_every
                elif now >= self._next_event:
                    pending = self._start_event(account, quoted, breach, breach_limit, probe_prices)
                    if pending is None:
                        missed["unstarted"] += 1
                    self._next_event = now + EVENT_EVERY
            log.clear()
            if pending is not None:
                kind, target, began = pending
                if kind == "drop":
                    if self._recovered(requests, account, quoted, began):
                        recoveries.append(time.monotonic() - began)
                        pending = None
                        requests.clear()
                else:
                    endpoint = CLOSE if kind == "probe" else PARTIAL_CLOSE
                    arrived = _arrival(requests, endpoint, target, began)
                    requests.clear()
                    if arrived is not None:
                        (lags if kind == "probe" else latencies).append(arrived - began)
                        self._settle_event(kind, account, target, bands)
                        pending = None
                if pending is not None and time.monotonic() - began > EVENT_TIMEOUT:
                    missed["recovery" if kind == "drop" else kind] += 1
                    if kind != "drop":
                        self._settle_event(kind, account, target, bands)
                    pending = None
            else:
                requests.clear()
            await asyncio.sleep(_TICK)
        elapsed = time.monotonic() - start
        return {
            "elapsed": elapsed,
            "sent": sent,
            "achieved": sent / elapsed if elapsed > 0 else math.nan,
            "lags": lags,
            "latencies": latencies,
            "recoveries": recoveries,
            "drops": drops,
            "missed": missed,
            "fills": len(sim.trades(account)) - fills_before,
        }

    def _start_event(
        self,
        account: int,
        quoted: list[str],
        breach: str,
        breach_limit: int,
        probe_prices: dict[str, str],
    ) -> tuple[str, str | None, float] | None:
        """Start the next measured breach; None when riskman is not subscribed to what it
        needs (the probe's contract was just re-bought: its quotes are being resubscribed)."""
        sim = self._sim()
        self._probe_next = not self._probe_next
        log = sim.event_log
        log.clear()
        if not self._probe_next:
            contract_id = quoted[self._probe_index % len(quoted)]
            self._probe_index += 1
            sim.push_quote(contract_id, probe_prices[contract_id])
            if not log:
                return None
            return ("probe", contract_id, log[-1][0])
        # The trader buys one more Micro Gold contract: the exchange streams the order, the
        # fill, then the position over the limit; the clock starts with that position event.
        sim.submit_order(account, breach, OrderSide.BID, 1)
        sent = next((at for at, _, target, _ in log if target == "GatewayUserPosition"), None)
        return None if sent is None else ("breach", breach, sent)

    def _settle_event(
        self, kind: str, account: int, contract_id: str | None, bands: dict[str, list[Decimal]]
    ) -> None:
        """Put the market and the position back as they were before the measured breach."""
        sim = self._sim()
        if kind != "probe" or contract_id is None:
            return
        sim.set_price(contract_id, bands[contract_id][0])
        positions = {p.contract_id: p.size for p in sim.positions(account)}
        if positions.get(contract_id, 0) == 0:
            sim.submit_order(account, contract_id, OrderSide.BID, 1)

    def _recovered(
        self, requests: list[Any], account: int, quoted: list[str], dropped: float
    ) -> bool:
        sim = self._sim()
        # The requests are cleared every turn: remember a reconcile once seen.
        self._reconciled = self._reconciled or any(
            r.endpoint == "Trade/search" and r.received >= dropped for r in requests
        )
        subscriptions = sim.subscriptions("market")
        quotes_back = all(("SubscribeContractQuotes", c) in subscriptions for c in quoted)
        user_back = ("SubscribePositions", account) in sim.subscriptions("user")
        return self._reconciled and quotes_back and user_back


def _arrival(
    requests: list[Any], endpoint: str, contract_id: str | None, since: float
) -> float | None:
    for request in requests:
        if (
            request.endpoint == endpoint
            and request.received >= since
            and request.body.get("contractId") == contract_id
        ):
            return float(request.received)
    return None


async def _sim_main() -> None:
    loop = asyncio.get_running_loop()
    driver = SoakDriver()
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    control = ControlServer("sim", driver, loop, driver.stopped.set)
    control.start()
    await driver.stopped.wait()
    if driver.sim is not None and driver.sim.running:
        await driver.sim.stop()


# --- the orchestrator ------------------------------------------------------------------------


def run(
    minutes: float, window: float, keep: bool, drop_every: float
) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    with Bench(keep=keep) as bench:
        sim = bench.spawn("sim", ["benchmarks.soak", "--sim"])
        info = sim.call("start", accounts=1, contracts=12, ping_interval=10.0)
        account = info["account_ids"][0]
        by_id = {c["id"]: c for c in info["contracts"]}
        quoted = [c["id"] for c in info["contracts"] if c["id"] != BREACH_CONTRACT][:QUOTED]
        probe_prices = {c: breach_price(by_id[c], PROBE_LOSS) for c in quoted}
        config = write_config(bench.dir, "soak", info, [account], soak_rules())
        with step("soak: riskman headless armed, positions open"):
            sut = bench.start_sut("headless", config)
            sut.call("wait_armed", timeout=120)
            sim.call("wait_subscribed", accounts=[account], quotes=[], timeout=60)
            sim.call(
                "soak_setup",
                account=account,
                quoted=quoted,
                breach=BREACH_CONTRACT,
                breach_limit=BREACH_LIMIT,
                drop_every=drop_every,
            )
            sim.call("wait_subscribed", accounts=[], quotes=quoted, timeout=60)
            sim.call("idle", seconds=2.0)
        began = time.monotonic()
        windows = max(1, round(minutes * 60 / window))
        print(_row_header(), file=sys.stderr, flush=True)
        for index in range(windows):
            result = sim.call(
                "soak_window",
                call_timeout=window + 120,
                seconds=window,
                account=account,
                quoted=quoted,
                breach=BREACH_CONTRACT,
                breach_limit=BREACH_LIMIT,
                probe_prices=probe_prices,
            )
            stats = sut.call("stats")
            result["at"] = time.monotonic() - began
            result["rss_kb"] = sut.rss_kb()
            result["quotes_in"] = stats["counts"].get("quotes_in", 0)
            rows.append(result)
            print(_row_text(index, result), file=sys.stderr, flush=True)
        peak = sut.peak_rss_kb()
        bench.discard(sut)
        bench.discard(sim)
    return render(rows, minutes, window, peak, drop_every), rows


def _row_header() -> str:
    return "  window  RSS MB  lag p50/p99 ms  enforce p50/p99 ms  fills  drops  recovery ms"


def _row_text(index: int, r: dict[str, Any]) -> str:
    lag = Distribution(r["lags"]).summary()
    enf = Distribution(r["latencies"]).summary()
    rec = ", ".join(f"{x * 1000:.0f}" for x in r["recoveries"]) or "—"
    return (
        f"  {index + 1:>6}  {mb(r['rss_kb']):>6}  {ms(lag['p50'], 1):>6}/{ms(lag['p99'], 1):<7}"
        f"  {ms(enf['p50'], 1):>7}/{ms(enf['p99'], 1):<9}  {r['fills']:>5}  {r['drops']:>5}  {rec}"
    )


def render(
    rows: list[dict[str, Any]],
    minutes: float,
    window: float,
    peak_kb: int | None,
    drop_every: float,
) -> str:
    body = []
    for r in rows:
        lag = Distribution(r["lags"]).summary()
        enf = Distribution(r["latencies"]).summary()
        missed = sum(r["missed"].values())
        body.append(
            [
                f"{r['at'] / 60:.1f}",
                mb(r["rss_kb"]),
                f"{r['achieved']:,.0f}",
                f"{len(r['lags'])}",
                ms(lag["p50"], 1),
                ms(lag["p99"], 1),
                f"{len(r['latencies'])}",
                ms(enf["p50"], 1),
                ms(enf["p99"], 1),
                str(r["fills"]),
                str(r["drops"]),
                ", ".join(f"{x * 1000:.0f}" for x in r["recoveries"]) or "—",
                str(missed),
            ]
        )
    over_time = table(
        f"Soak: {minutes:g} min at 500 quotes/s, a fill every 2 s, "
        f"both hubs dropped every {drop_every:g} s",
        [
            "min",
            "RSS MB",
            "quotes/s",
            "lag n",
            "lag p50 ms",
            "lag p99 ms",
            "enf n",
            "enf p50 ms",
            "enf p99 ms",
            "fills",
            "drops",
            "recovery ms",
            "missed",
        ],
        body,
        f"One row per {window:g} s window. lag: a quote putting a held contract at a $300 loss "
        "→ riskman's closeContract (the wait behind the quote stream + enforcement). enf: a "
        "position over its limit → riskman's partialCloseContract. recovery: both hubs' sockets "
        "cut → user hub resubscribed and reconciled and every quote subscription back. missed: "
        f"measured breaches not enforced within {EVENT_TIMEOUT:g} s, drops not recovered within "
        f"{EVENT_TIMEOUT:g} s, and breaches that could not start (should be 0).",
    )
    return over_time + "\n" + verdict(rows, peak_kb)


def verdict(rows: list[dict[str, Any]], peak_kb: int | None) -> str:
    third = max(1, len(rows) // 3)
    first, last = rows[:third], rows[-third:]

    def pooled(part: list[dict[str, Any]], key: str) -> dict[str, float]:
        return Distribution([x for r in part for x in r[key]]).summary()

    rss_first = statistics.median(r["rss_kb"] or 0 for r in first)
    rss_last = statistics.median(r["rss_kb"] or 0 for r in last)
    slope = _slope([(r["at"] / 60, (r["rss_kb"] or 0) / 1024) for r in rows[third:]])
    lag_first, lag_last = pooled(first, "lags"), pooled(last, "lags")
    enf_first, enf_last = pooled(first, "latencies"), pooled(last, "latencies")
    missed = sum(r["missed"]["probe"] + r["missed"]["breach"] for r in rows)
    unstarted = sum(r["missed"].get("unstarted", 0) for r in rows)
    drops = sum(r["drops"] for r in rows)
    recovered = sum(len(r["recoveries"]) for r in rows)
    fills = sum(r["fills"] for r in rows)
    rows_out = [
        [
            "RSS (median of the window)",
            mb(int(rss_first)),
            mb(int(rss_last)),
            f"{(rss_last - rss_first) / 1024:+.1f} MB; after the first third "
            f"{slope:+.2f} MB/min; peak {mb(peak_kb)} MB",
        ],
        [
            "event lag p50 / p99 ms",
            f"{ms(lag_first['p50'], 1)} / {ms(lag_first['p99'], 1)}",
            f"{ms(lag_last['p50'], 1)} / {ms(lag_last['p99'], 1)}",
            "",
        ],
        [
            "enforcement p50 / p99 ms",
            f"{ms(enf_first['p50'], 1)} / {ms(enf_first['p99'], 1)}",
            f"{ms(enf_last['p50'], 1)} / {ms(enf_last['p99'], 1)}",
            "",
        ],
        ["drops recovered", "", "", f"{recovered} of {drops}"],
        ["fills at the exchange", "", "", str(fills)],
        ["breaches not enforced in time", "", "", str(missed)],
        ["breaches that could not start", "", "", str(unstarted)],
    ]
    return table(
        "Soak: first third against last third",
        ["", "first third", "last third", "over the run"],
        rows_out,
    )


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (MB per minute) of RSS over time."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    denominator = sum((x - mean_x) ** 2 for x in xs)
    if denominator == 0:
        return 0.0
    return float(sum((x - mean_x) * (y - mean_y) for x, y in points) / denominator)


def write_readme(output: str) -> None:
    """Replace the block between `<!-- results:soak -->` and `<!-- /results:soak -->`."""
    text = README.read_text()
    pattern = re.compile(r"(<!-- results:soak -->\n).*?(<!-- /results:soak -->)", flags=re.DOTALL)
    if not pattern.search(text):
        print("README.md has no results:soak block; not written", file=sys.stderr)
        return
    README.write_text(pattern.sub(lambda m: m.group(1) + output + m.group(2), text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument(
        "--window", type=float, default=None, help="seconds per row (default 60; 10 under 5 min)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    parser.add_argument("--readme", action="store_true", help="write the tables into README.md")
    parser.add_argument("--sim", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sim:
        asyncio.run(_sim_main())
        return 0
    quick = args.minutes < 5
    window = args.window or (10.0 if quick else 60.0)
    print(f"riskman soak: {args.minutes:g} min\n_{machine_line()}_\n", flush=True)
    output, _ = run(args.minutes, window, args.keep, QUICK_DROP_EVERY if quick else DROP_EVERY)
    print(output, flush=True)
    if args.readme:
        write_readme(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
