"""`riskman sim`: run the gateway simulator alone until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .simulator import Simulator

# A fixed default, so a rehearsal config can point at the simulator once and for all.
DEFAULT_PORT = 8765


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riskman sim",
        description="Run the embedded ProjectX gateway simulator (REST + SignalR hubs).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (0: any free port)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random quote walk")
    parser.add_argument(
        "--quote-interval",
        type=float,
        default=1.0,
        help="seconds between automatic quote ticks (0: quotes move only on demand)",
    )
    parser.add_argument(
        "--ping-interval", type=float, default=10.0, help="seconds between SignalR pings"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"riskman sim: invalid port {args.port}", file=sys.stderr)
        return 2
    sim = Simulator(
        seed=args.seed,
        quote_interval=args.quote_interval or None,
        ping_interval=args.ping_interval or None,
    )
    try:
        asyncio.run(_serve(sim, args.host, args.port))
    except OSError as exc:
        print(
            f"riskman sim: cannot listen on {args.host}:{args.port}: {exc} "
            "(use --port to pick another port, --port 0 for any free one)",
            file=sys.stderr,
        )
        return 1
    return 0


async def _serve(sim: Simulator, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await sim.start(host=host, port=port)
    try:
        accounts = ", ".join(f"{a} {sim.account(a).name}" for a in sim.account_ids)
        print(
            "riskman gateway simulator\n"
            f"  REST API:    {sim.base_url}\n"
            f"  user hub:    {sim.user_hub_url}\n"
            f"  market hub:  {sim.market_hub_url}\n"
            f"  credentials: userName {sim.username!r}, apiKey {sim.api_key!r}\n"
            f"  accounts:    {accounts}\n"
            "Press Ctrl+C to stop.",
            flush=True,
        )
        await stop.wait()
    finally:
        await sim.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


if __name__ == "__main__":
    sys.exit(main())
