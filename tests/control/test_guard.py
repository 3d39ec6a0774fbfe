"""The headless guard as systemd runs it: the notify/watchdog datagrams on a real socket, one
engine per database, and `riskman status` exit codes, with real processes and the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from riskman.cli import main
from riskman.config import load_config
from riskman.control.paths import socket_path
from riskman.control.sdnotify import Notifier
from riskman.sim import Simulator
from tests.control.conftest import ServedFactory
from tests.e2e.test_daemon_e2e import Daemon, shipped_config, sim_env

pytestmark = pytest.mark.e2e


class Datagrams:
    """A real datagram socket, as systemd's NOTIFY_SOCKET, collecting what is sent to it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    async def wait_for(self, field: str, count: int = 1, timeout: float = 30.0) -> list[float]:
        """When `field` (e.g. READY=1) was received, once it was received `count` times."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                times = [at for at, text in self.messages if field in text.split("\n")]
                if len(times) >= count:
                    return times
                data = await loop.sock_recv(self.sock, 4096)
                self.messages.append((loop.time(), data.decode()))

    def drain(self) -> list[str]:
        out = []
        with contextlib.suppress(BlockingIOError):
            while True:
                out.append(self.sock.recv(4096).decode())
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def datagrams() -> Iterator[Datagrams]:
    # A short folder: sun_path is 108 bytes, a pytest tmp_path may be longer.
    folder = tempfile.mkdtemp(prefix="rm-notify-")
    receiver = Datagrams(os.path.join(folder, "notify"))
    try:
        yield receiver
    finally:
        receiver.close()
        with contextlib.suppress(OSError):
            os.unlink(receiver.path)
            os.rmdir(folder)


async def test_notifier_sends_ready_and_pings_the_watchdog_at_a_third_of_its_timeout(
    datagrams: Datagrams,
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": datagrams.path, "WATCHDOG_USEC": "300000"})
    assert notifier.watchdog == pytest.approx(0.3)
    notifier.start_watchdog()
    try:
        notifier.ready("armed")
        await datagrams.wait_for("READY=1", timeout=5)
        pings = await datagrams.wait_for("WATCHDOG=1", count=4, timeout=5)
    finally:
        notifier.close()
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    # Every 0.1 s: the median gap within WATCHDOG_USEC / 2 even on a loaded machine.
    assert gaps[len(gaps) // 2] < 0.3 / 2, gaps
    assert any(text.startswith("READY=1\nSTATUS=armed") for _, text in datagrams.messages)


def test_notifier_is_silent_outside_systemd_and_for_another_pid() -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).send("READY=1") is False
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog is None


async def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"riskman-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send("READY=1")
        assert receiver.recv(100) == b"READY=1"
        notifier.close()
    finally:
        receiver.close()


# --- the real daemon ------------------------------------------------------------------------


@pytest.fixture
async def guard_daemons() -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []

    async def start(config: Path, env: dict[str, str]) -> Daemon:
        daemon = await Daemon.start(config, env)
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            with contextlib.suppress(ProcessLookupError):
                daemon.process.send_signal(signal.SIGCONT)
            await daemon.kill()


def riskman_status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riskman.cli", "status", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("RISKMAN_")},
    )


async def test_guard_notifies_systemd_serves_status_and_refuses_a_second_engine(
    sim: Simulator,
    tmp_path: Path,
    datagrams: Datagrams,
    guard_daemons: Callable[..., Any],
) -> None:
    config = shipped_config(tmp_path / "guard", lambda data: data.update(accounts=[]))
    env = sim_env(sim, NOTIFY_SOCKET=datagrams.path, WATCHDOG_USEC="2000000")
    daemon = await guard_daemons(config, env)
    await daemon.armed()
    await datagrams.wait_for("READY=1")
    await datagrams.wait_for("WATCHDOG=1", count=2, timeout=10)

    # riskman status: armed -> exit 0; its JSON is the API's.
    answer = await asyncio.to_thread(riskman_status, config, "--json")
    assert answer.returncode == 0, answer.stderr
    status = json.loads(answer.stdout)
    assert status["armed"] is True and status["pid"] == daemon.process.pid
    human = await asyncio.to_thread(riskman_status, config)
    assert human.returncode == 0 and "ARMED" in human.stdout

    # A second engine on the same database refuses before it logs in: exit 3, one line.
    logins = len([r for r in sim.requests if r.endpoint == "Auth/loginKey"])
    second = await guard_daemons(config, sim_env(sim))
    assert await second.wait_exit() == 3
    [line] = [text for text in second.raw if text.strip()]
    assert f"pid {daemon.process.pid}" in line
    assert str(socket_path(load_config(config))) in line
    assert len([r for r in sim.requests if r.endpoint == "Auth/loginKey"]) == logins

    # Frozen: the watchdog pings stop (systemd would kill it) and status says nothing answers.
    daemon.process.send_signal(signal.SIGSTOP)
    await asyncio.sleep(0.2)
    datagrams.drain()
    frozen = await asyncio.to_thread(riskman_status, config)
    assert frozen.returncode == 3, frozen.stdout + frozen.stderr
    assert "no riskman engine answers" in frozen.stderr
    assert not any("WATCHDOG=1" in text for text in datagrams.drain())
    daemon.process.send_signal(signal.SIGCONT)
    await datagrams.wait_for("WATCHDOG=1", count=len(datagrams.messages) + 1, timeout=10)

    # SIGTERM: STOPPING=1, exit 0, the socket file gone; then nothing answers.
    assert await daemon.stop(signal.SIGTERM) == 0
    await datagrams.wait_for("STOPPING=1", timeout=5)
    assert not socket_path(load_config(config)).exists()
    gone = await asyncio.to_thread(riskman_status, config)
    assert gone.returncode == 3 and gone.stderr.count("\n") == 1


async def test_status_exits_1_when_the_engine_is_not_armed(served: ServedFactory) -> None:
    engine, _server, _client = await served()
    config = type(engine.settings).config_path
    assert config is not None
    code = await asyncio.to_thread(main, ["status", "--config", str(config)])
    assert code == 1


async def test_status_exits_3_when_nothing_answers(tmp_path: Path) -> None:
    from tests.control.conftest import write_config

    config = write_config(tmp_path, {})
    answer = await asyncio.to_thread(riskman_status, config)
    assert answer.returncode == 3
    assert answer.stdout == ""
    assert answer.stderr.startswith("riskman: no riskman engine answers on ")
