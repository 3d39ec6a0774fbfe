"""``python -m benchmarks.notify``: notifications never delay enforcement.

One process runs riskman as the daemon does (the `Runtime`: REST client, signalrcore hubs, the
engine on a real SQLite file, the notifier with real Apprise) against the embedded simulator
on loopback. Each breach is a position over RULE-001's limit; riskman reduces it. The
enforcement latency riskman records (event in -> gateway's answer) is compared with:

- notifications off;
- one message per breach to a receiver that answers at once (``json://`` on loopback);
- one message per breach to a receiver that hangs 2 s on every message (a slow service).

The receiver is a separate process, so its work does not share riskman's GIL. The rate limit
is set to 1 ms so every breach's message is really sent (the product's default, 10 s per kind
and account, would hold most of them back). As in every benchmark, riskman's client-side REST
limiter is widened (or three hundred closes would wait for its window).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from riskman.config import Settings
from riskman.core.views import EnforcementRecord, EngineChange
from riskman.notify import Message
from riskman.runtime import Runtime
from riskman.sim import Simulator

from .harness import table

MNQ = "CON.F.US.MNQ.Z26"
REPO = Path(__file__).resolve().parent.parent

RECEIVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
delay = float(sys.argv[1])
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(delay)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def _receiver(delay: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(delay)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


async def _measure(breaches: int, url: str | None, folder: Path) -> dict[str, Any]:
    import riskman.gateway.rest as rest

    from .sut import BENCH_LIMIT

    rest.DEFAULT_LIMIT = BENCH_LIMIT  # as every benchmark does (benchmarks/README.md)
    sim = Simulator(seed=7, quote_interval=None, ping_interval=2.0)
    await sim.start(port=0)
    account = sim.add_account("BENCH")

    settings = Settings(
        gateway={
            "api_url": sim.base_url,
            "user_hub_url": sim.user_hub_url,
            "market_hub_url": sim.market_hub_url,
            "username": "demo",
        },
        holidays_file=REPO / "config" / "holidays.yaml",
        database=folder / f"bench-{time.monotonic_ns()}.db",
        accounts=[account],
        rules={"max_contracts": {"enabled": True, "limit": 1, "action": "reduce_to_limit"}},
        notify={"urls": [url] if url else [], "min_interval": 0.001, "retries": 0},
    )
    runtime = Runtime(settings, api_key="demo", start_wait=10)
    records: list[EnforcementRecord] = []
    done = asyncio.Event()
    try:
        engine = await runtime.start()
        assert await runtime.wait_armed(30), "not armed"
        notifier = runtime.notifier

        def on_change(change: EngineChange) -> None:
            if isinstance(change, EnforcementRecord) and change.action.startswith("reduce"):
                records.append(change)
                if notifier is not None:
                    notifier.post(
                        Message("action_failed", change.account_id, f"breach {len(records)}")
                    )
                done.set()

        engine.subscribe(on_change)
        for n in range(breaches):
            done.clear()
            sim.push_position(account, MNQ, 3, "21000")
            await asyncio.wait_for(done.wait(), 10)
            sim.push_position(account, MNQ, 0, "21000")
            await asyncio.sleep(0.02)
            if n % 50 == 0:
                print(f"  {n}/{breaches}", file=sys.stderr)
        stats = None if notifier is None else notifier.stats
        latencies = sorted(r.latency_ms or 0.0 for r in records)
        return {
            "n": len(latencies),
            "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99) - 1],
            "max": latencies[-1],
            "queued": 0 if stats is None else stats.queued,
            "sent": 0 if stats is None else stats.sent,
        }
    finally:
        await runtime.stop()
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notify")
    parser.add_argument("--breaches", type=int, default=300)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        modes = (("off", None), ("fast receiver", 0.0), ("receiver hangs 2 s", 2.0))
        for name, delay in modes:
            print(f"{name} ...", file=sys.stderr)
            proc = None
            url = None
            if delay is not None:
                proc, port = _receiver(delay)
                url = f"json://127.0.0.1:{port}/hook?rto=30"
            try:
                result = asyncio.run(_measure(args.breaches, url, Path(tmp)))
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
            rows.append(
                [
                    name,
                    str(result["n"]),
                    f"{result['p50']:.2f}",
                    f"{result['p99']:.2f}",
                    f"{result['max']:.2f}",
                    f"{result['sent']} / {result['queued']}",
                ]
            )
    print(
        table(
            "Enforcement latency with notifications (ms, event in -> gateway's answer)",
            ["notifications", "breaches", "p50", "p99", "max", "sent / queued"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
