"""Breakdown: where a breach's time goes inside riskman, stage by stage (a diagnostic run with
timestamps at each stage, see :mod:`benchmarks.trace`; the wrappers add a few microseconds, so
the total is a little above the latency table's)."""

from __future__ import annotations

from typing import Any

from .common import MODE_NAMES, Options, is_floor
from .harness import Bench, Distribution, ms, step, table
from .latency import CONTRACT, LOTS, measure_fills, start_flat
from .trace import STAGES

BREACHES = 200
TAIL = 3
"""The slowest traced breaches shown stage by stage (where the tail's time goes)."""
LABELS = {
    "recv": "simulator send → the burst read on the event loop (HubSocket)",
    "loop": "→ its frames cut and decoded (websockets' protocol)",
    "feed": "→ its records decoded, the position update handed to the feed (JSON)",
    "submit": "→ the position update parsed and submitted to the engine (pydantic)",
    "route": "→ router takes the position update (engine queue, consumer task)",
    "dispatch": "→ the position update: state, lockout gate, rules, plan, dispatch",
    "rest": "→ action task calls the REST client",
    "post": "→ httpx.Request handed to the transport (token, rate limiter)",
    "wire": "→ first bytes written to the socket (h11)",
    "end": "→ simulator's view receives the close (loopback, uvicorn, routing)",
}


def run(opts: Options) -> str:
    breaches = 40 if opts.quick else BREACHES
    sections = []
    with Bench(keep=opts.keep) as bench:
        sim, info = bench.start_sim(accounts=1, contracts=20)
        account = info["account_ids"][0]
        for mode in opts.modes:
            with step(f"breakdown: {MODE_NAMES[mode]}"):
                sut, _ = start_flat(bench, sim, info, mode, f"breakdown-{mode}", trace=LOTS)
                targets = [(account, CONTRACT)]
                measure_fills(sim, sut, targets, 5, 0, seed=8)
                sut.call("reset_stats")
                result = measure_fills(sim, sut, targets, breaches, 0, seed=7)
                traced = sut.call("trace")
                result["gc"] = sut.call("stats")["gc"]
                bench.discard(sut)
            sections.append(render(mode, result, traced["records"]))
            sections.append(render_stalls(mode, traced["stalls"], result))
        bench.discard(sim)
    return "\n".join(sections)


FLOOR_LABELS = {
    "loop": "simulator send → frame on the event loop (aiohttp WebSocket)",
    "post": "→ records decoded, request handed to the HTTP client",
    "wire": "→ first bytes written to the socket (the HTTP client)",
}


def render(mode: str, result: dict[str, Any], records: list[dict[str, float]]) -> str:
    pairs = result["pairs"]
    stages = ["loop", "post", "wire", "end"] if is_floor(mode) else [*STAGES, "end"]
    labels = {**LABELS, **FLOOR_LABELS} if is_floor(mode) else LABELS
    deltas: dict[str, Distribution] = {stage: Distribution() for stage in stages}
    used = 0
    traced: list[tuple[float, list[float]]] = []
    # Match each measured breach with the trace whose first stage falls inside it.
    starts = sorted(
        (record[stages[0]], i) for i, record in enumerate(records) if stages[0] in record
    )
    cursor = 0
    for sent, received in pairs:
        while cursor < len(starts) and starts[cursor][0] < sent:
            cursor += 1
        if cursor == len(starts) or starts[cursor][0] > received:
            continue
        marks = {**records[starts[cursor][1]], "end": received}
        if any(stage not in marks for stage in stages):
            continue
        used += 1
        previous = sent
        steps = []
        for stage in stages:
            deltas[stage].add([marks[stage] - previous])
            steps.append(marks[stage] - previous)
            previous = marks[stage]
        traced.append((received - sent, steps))
    rows = []
    for stage in stages:
        s = deltas[stage].summary()
        rows.append([labels[stage], ms(s["p50"], 3), ms(s["p90"], 3), ms(s["p99"], 3)])
    total = Distribution([r - s for s, r in pairs]).summary()
    rows.append(
        ["total (sent → received)", ms(total["p50"], 3), ms(total["p90"], 3), ms(total["p99"], 3)]
    )
    gc_text = ", ".join(
        f"{name} {g['count']}× (max {g['max_ms']:.2f} ms)" for name, g in result["gc"].items()
    )
    slowest = sorted(traced, key=lambda item: -item[0])[:TAIL]
    tail = "; ".join(
        f"{total * 1000:.2f} ms ("
        + ", ".join(f"{stage} {took * 1000:.2f}" for stage, took in zip(stages, steps, strict=True))
        + ")"
        for total, steps in slowest
    )
    return table(
        f"Breakdown: {MODE_NAMES[mode]}, stage by stage",
        ["stage", "p50 ms", "p90 ms", "p99 ms"],
        rows,
        f"{used} of {len(pairs)} breaches traced end to end; load avg (1 min) "
        f"{result['load'][0]:.2f} → {result['load'][1]:.2f}. Percentiles are per stage, so "
        "they do not add up to the total's percentiles. Garbage collections during the run: "
        f"{gc_text}. The {len(slowest)} slowest traced breaches, stage by stage in ms (each "
        f"stage's time since the one before): {tail}.",
    )


def render_stalls(mode: str, stalls: list[tuple[str, float]], result: dict[str, Any]) -> str:
    """The loop callbacks that ran over 1 ms during the run, by what they ran."""
    pairs = result["pairs"]
    span = pairs[-1][1] - pairs[0][0] if pairs else 0.0
    by_name: dict[str, list[float]] = {}
    for name, took in stalls:
        by_name.setdefault(name, []).append(took)
    rows = []
    for name, values in sorted(by_name.items(), key=lambda item: -sum(item[1])):
        s = Distribution(values).summary()
        share = f"{sum(values) / span * 100:.1f} %" if span else "—"
        rows.append([f"`{name}`", str(len(values)), ms(s["p50"]), ms(s["max"]), share])
    if not rows:
        rows.append(["(none)", "0", "—", "—", "—"])
    return table(
        f"Loop stalls: {MODE_NAMES[mode]} (callbacks over 1 ms during the breakdown run)",
        ["callback", "count", "p50 ms", "max ms", "share of the run"],
        rows[:12],
        "A breach that arrives while one of these runs waits for it to finish.",
    )
