"""`riskman --no-ui`: the engine as a daemon. Never imports Textual."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from riskman.config import Settings
from riskman.control.sdnotify import Notifier
from riskman.runtime import Runtime, StartError
from riskman.storage.db import DatabaseError

log = logging.getLogger("riskman")

EXIT_OK = 0
EXIT_START = 3
EXIT_DATABASE = 4


async def run_headless(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or `stop` is set); flush state; return the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    runtime = Runtime(settings)
    notifier = Notifier()
    # The watchdog pings from the first moment: a long login retry is not a hang.
    notifier.start_watchdog()
    notifier.status("starting: logging in")
    try:
        try:
            engine = await runtime.start()
        except StartError as exc:
            print(f"riskman: {exc}", file=sys.stderr)
            return EXIT_START
        except DatabaseError as exc:
            print(f"riskman: {exc}", file=sys.stderr)
            return EXIT_DATABASE
        log.info(
            "riskman started: %d rules enabled, database %s",
            sum(rule.enabled(0) for rule in engine.rules),
            settings.database,
        )
        loaded = type(settings)
        if loaded.overlay_problem:
            log.warning("%s", loaded.overlay_problem)
        elif loaded.overlay_path is not None:
            log.info("admin changes from %s win over the config file", loaded.overlay_path)
        armed = asyncio.create_task(_announce_armed(runtime, notifier))
        await stop.wait()
        armed.cancel()
        log.info("stopping: flushing state")
        notifier.stopping()
    finally:
        try:
            await runtime.stop()
        finally:
            notifier.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    log.info("stopped")
    return EXIT_OK


async def _announce_armed(runtime: Runtime, notifier: Notifier) -> None:
    if await runtime.wait_armed():
        log.info(
            "armed: logged in, subscribed and reconciled in %.2f s", runtime.times.armed or 0.0
        )
        notifier.ready(f"armed: enforcing; control API on {runtime.socket}")
