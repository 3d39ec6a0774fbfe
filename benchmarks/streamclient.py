"""An attached terminal's load on the engine, without the screen: a process that follows the
control API's snapshot stream and decodes every frame as the terminal does.

    python -m benchmarks.streamclient --config riskman.yaml

Prints "first frame" once streaming, then a count of frames when it ends (SIGTERM or the
engine going away). The latency benchmark runs riskman headless with three of these
("streamed" mode) beside plain headless, to show what attached terminals cost enforcement.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from riskman.config import load_config
from riskman.control.client import ControlClient

READY = "first frame"


async def follow(config: Path) -> int:
    settings = load_config(config)
    frames = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ControlClient.for_settings(settings) as client, client.stream() as stream:

        async def read() -> None:
            nonlocal frames
            async for _frame in stream:
                frames += 1
                if frames == 1:
                    print(READY, flush=True)

        reader = asyncio.create_task(read())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        waiter.cancel()
    print(f"{frames} frames", flush=True)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streamclient")
    parser.add_argument("--config", type=Path, required=True)
    asyncio.run(follow(parser.parse_args().config))


if __name__ == "__main__":
    main()
