"""`riskman demo`: the simulator started, the demo folder written, the terminal run on it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from riskman.admin import PasswordStore
from riskman.config import load_config
from riskman.control.inprocess import InProcessControl
from riskman.demo.desk import DEMO_PASSWORD, QUOTE_INTERVAL, DemoDesk, write_config
from riskman.demo.screens import DemoApp
from riskman.runtime import Runtime, RuntimeSource
from riskman.sim.simulator import Simulator
from riskman.tui.app import run_app


def run_demo(seed: int | None = None, keep: Path | None = None) -> int:
    """`riskman demo [--seed S] [--keep FOLDER]`."""
    folder = keep.expanduser().resolve() if keep else Path(tempfile.mkdtemp(prefix="riskman-demo-"))
    try:
        return asyncio.run(_demo(folder, seed, keep=keep is not None))
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


async def _demo(folder: Path, seed: int | None, *, keep: bool) -> int:
    async with demo_session(folder, seed=seed, keep=keep) as app:
        return await run_app(app)


@contextlib.asynccontextmanager
async def demo_session(
    folder: Path, *, seed: int | None = None, keep: bool = False
) -> AsyncIterator[DemoApp]:
    """The simulator running, the demo folder written, and the app ready to run (not started:
    its engine connects when it mounts). Everything is stopped on the way out."""
    sim = Simulator(
        seed=seed if seed is not None else random.randrange(1, 1_000_000),
        quote_interval=QUOTE_INTERVAL,
    )
    await sim.start(port=0)
    runtime: Runtime | None = None
    desk: DemoDesk | None = None
    try:
        config_path = await asyncio.to_thread(write_config, folder, sim)
        settings = load_config(config_path)
        store = PasswordStore.of(settings)
        if not store.exists():
            await asyncio.to_thread(store.set, DEMO_PASSWORD)
        # A kept folder may hold a password the user chose: show the demo one only if it holds.
        known = await asyncio.to_thread(store.verify, DEMO_PASSWORD)
        runtime = Runtime(settings, api_key=sim.api_key, start_wait=10)
        desk = DemoDesk(sim, runtime, folder, keep=keep, password=DEMO_PASSWORD if known else None)
        control = InProcessControl(RuntimeSource(runtime), config_path)
        yield DemoApp(settings, config_path, control, desk)
    finally:
        if desk is not None:
            await desk.stop()
        if runtime is not None:
            await runtime.stop()
        await sim.stop()
