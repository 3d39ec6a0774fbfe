"""The guard and an attached terminal as a trader runs them: `riskman sim`, the guard
(`riskman --no-ui`), and `riskman --config` in a real terminal (tmux) that attaches to it. `q`
detaches at once (no question: enforcement goes on), and a breach after that is still closed."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest

from riskman.config import load_config
from riskman.core.enums import OrderSide, OrderType
from riskman.gateway.rest import RestClient
from riskman.sim import Simulator
from tests.fakes import MNQ
from tests.tui.conftest import write_config
from tests.tui.test_demo_tmux import RISKMAN, TMUX, Terminal

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (needed for a real terminal)"),
    pytest.mark.skipif(not RISKMAN.exists(), reason=f"{RISKMAN} is not installed"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


async def breach_and_wait_closed(env: dict[str, str], config: Path, account: int) -> int:
    """Buy one more than max_contracts (5) at the broker; the size riskman leaves."""
    for name, value in env.items():
        os.environ[name] = value
    try:
        settings = load_config(config)
    finally:
        for name in env:
            os.environ.pop(name, None)
    rest = RestClient(settings.gateway, env["RISKMAN_GATEWAY__API_KEY"])
    try:
        await rest.login()
        await rest.place_order(account, MNQ, OrderType.MARKET, OrderSide.BID, 6)
        size = 6
        async with asyncio.timeout(20):
            while True:
                positions = await rest.search_open_positions(account)
                size = sum(p.size for p in positions if p.contract_id == MNQ)
                if 0 < size <= 5:
                    return size
                await asyncio.sleep(0.2)
    finally:
        await rest.aclose()


def test_guard_runs_on_after_the_attached_terminal_quits(tmp_path: Path) -> None:
    config = write_config(tmp_path / "guard")
    port = free_port()
    reference = Simulator(seed=5)
    env = {
        "RISKMAN_GATEWAY__API_URL": f"http://127.0.0.1:{port}",
        "RISKMAN_GATEWAY__USER_HUB_URL": f"http://127.0.0.1:{port}/hubs/user",
        "RISKMAN_GATEWAY__MARKET_HUB_URL": f"http://127.0.0.1:{port}/hubs/market",
        "RISKMAN_GATEWAY__USERNAME": reference.username,
        "RISKMAN_GATEWAY__API_KEY": reference.api_key,
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("RISKMAN_")}
    procs: list[subprocess.Popen[bytes]] = []
    terminal: Terminal | None = None
    try:
        procs.append(
            subprocess.Popen(
                [str(RISKMAN), "sim", "--port", str(port), "--seed", "5"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=base,
            )
        )
        guard = subprocess.Popen(
            [str(RISKMAN), "--no-ui", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**base, **env},
        )
        procs.append(guard)

        def armed() -> bool:
            status = subprocess.run(
                [str(RISKMAN), "status", "--config", str(config)],
                capture_output=True,
                env=base,
                timeout=20,
            )
            return status.returncode == 0

        wait_until(armed, 60, "the guard to be armed (riskman status exit 0)")
        exit_file = tmp_path / "exit-status"
        command = (
            f"env -u COLUMNS -u LINES {shlex.quote(str(RISKMAN))} --config "
            f"{shlex.quote(str(config))}; echo $? > {shlex.quote(str(exit_file))}"
        )
        terminal = Terminal(command)
        screen = terminal.wait(
            lambda s: f"attached to riskman (pid {guard.pid}" in s and "ENFORCING" in s,
            40,
            "the terminal attached to the guard",
        )
        assert "embedded" not in screen
        terminal.keys("q")
        wait_until(exit_file.exists, 10, "the terminal to detach and exit")
        assert exit_file.read_text().strip() == "0"
        assert "Quit riskman?" not in terminal.screen()
        assert guard.poll() is None, "quitting the attached terminal stopped the guard"
        account = reference.account_ids[0]
        size = asyncio.run(breach_and_wait_closed(env, config, account))
        assert size == 5
        assert armed()
    finally:
        if terminal is not None:
            terminal.close()
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
