"""Start: time from process start to armed (logged in, hubs subscribed, positions, orders and
trades reconciled over REST), for the real ``riskman --no-ui`` command and, with milestones,
for riskman headless and inside the Textual app.

Each run is a fresh process with a fresh database, guarding one account, against a simulator
that is already up (the gateway is not part of the start time).
"""

from __future__ import annotations

import re
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .common import MODE_NAMES, Options, is_floor
from .harness import API_KEY, Bench, BenchError, Child, base_rules, step, table, write_config

RUNS = 5
ARMED = re.compile(r"armed: logged in, subscribed and reconciled in ([0-9.]+) s")


def run(opts: Options) -> str:
    runs = 1 if opts.quick else RUNS
    rows: dict[str, list[dict[str, float]]] = {}
    with Bench(keep=opts.keep) as bench:
        sim, info = bench.start_sim(accounts=1, contracts=20)
        account = info["account_ids"][0]
        with step(f"start: riskman --no-ui ×{runs}"):
            rows["cli"] = [cli_once(bench, info, account, f"start-cli-{i}") for i in range(runs)]
        for mode in [m for m in opts.modes if not is_floor(m)]:
            with step(f"start: {MODE_NAMES[mode]} ×{runs}"):
                rows[mode] = [
                    sut_once(bench, info, account, mode, f"start-{mode}-{i}") for i in range(runs)
                ]
        bench.discard(sim)
    return render(rows, runs)


def cli_once(bench: Bench, info: dict[str, Any], account: int, name: str) -> dict[str, float]:
    """`riskman --no-ui`: spawn to the "armed" line in its log (polled every 2 ms)."""
    config = write_config(bench.dir, name, info, [account], base_rules())
    command = str(Path(sys.executable).parent / "riskman")
    child = bench.spawn(
        "riskman-no-ui",
        [command, "--no-ui", "--config", str(config)],
        env={"RISKMAN_GATEWAY__API_KEY": API_KEY},
        connect=False,
    )
    try:
        armed_at, inside = _wait_armed_line(child, timeout=60)
    finally:
        child.proc.send_signal(signal.SIGINT)
        child.proc.wait(30)
    total = armed_at - child.spawned
    # The log line gives the time from Runtime.start(); the rest is interpreter, imports and
    # reading the configuration.
    return {"imported": total - inside, "armed": total}


def _wait_armed_line(child: Child, timeout: float) -> tuple[float, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = child.log_path.read_text(errors="replace")
        found = ARMED.search(text)
        if found:
            return time.monotonic(), float(found.group(1))
        if child.proc.poll() is not None:
            raise BenchError(
                f"riskman --no-ui exited ({child.proc.returncode})\n{child.log_tail()}"
            )
        time.sleep(0.002)
    raise BenchError(f"riskman --no-ui did not arm in {timeout:g} s\n{child.log_tail()}")


def sut_once(
    bench: Bench, info: dict[str, Any], account: int, mode: str, name: str
) -> dict[str, float]:
    config = write_config(bench.dir, name, info, [account], base_rules())
    sut = bench.start_sut(mode, config)
    times = sut.call("wait_armed", timeout=120)
    bench.discard(sut)
    return {
        key: times[key] - sut.spawned
        for key in ("import_began", "imported", "logged_in", "engine_ready", "armed")
        if key in times
    }


def render(rows: dict[str, list[dict[str, float]]], runs: int) -> str:
    names = {"cli": "`riskman --no-ui` (the command)", **MODE_NAMES}
    columns = [
        ("import_began", "Python up"),
        ("imported", "imports done"),
        ("logged_in", "logged in"),
        ("engine_ready", "engine ready"),
        ("armed", "armed"),
    ]
    out = []
    for key, samples in rows.items():
        cells = [names[key], str(len(samples))]
        for column, _ in columns:
            values = [s[column] for s in samples if column in s]
            cells.append(_cell(values))
        out.append(cells)
    return table(
        "Start: process start to armed",
        ["system", "runs", *[label for _, label in columns]],
        out,
        "Seconds from spawning the process, median (max) over the runs; each milestone is "
        "cumulative. Armed = logged in, user hub subscribed, positions / orders / trades "
        "reconciled over REST, feed trusted. The command's imports figure includes reading "
        "the configuration; its milestones are not logged, only the total.",
    )


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.2f} ({max(values):.2f})"
