"""`riskman init` against the simulator: unattended (every answer a flag) and interactive in a
real pseudo-terminal; the written config loads, keeps its secrets in 0600 files and guards the
picked account; a wrong key writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import stat
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from riskman.admin import PasswordStore
from riskman.config import load_config
from riskman.sim import Simulator

RISKMAN = [sys.executable, "-m", "riskman.cli"]
PASSWORD = "calm-coach-42"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """The simulator with a key that cannot be mistaken for other text."""
    simulator = Simulator(seed=7, quote_interval=None, credentials={"trader1": "K3y-9f8e7d6c5b4a"})
    await simulator.start(port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMAN_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _run(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *RISKMAN,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.e2e
async def test_unattended_init_writes_a_working_config_checked_against_the_gateway(
    sim: Simulator, tmp_path: Path
) -> None:
    second = sim.add_account("COMBINE-2")
    config = tmp_path / "etc" / "riskman.yaml"
    code, out, err = await _run(
        "init",
        "--config",
        str(config),
        "--firm",
        "custom",
        "--api-url",
        sim.base_url,
        "--rtc-url",
        sim.base_url,
        "--username",
        sim.username,
        "--api-key-stdin",
        "--accounts",
        str(second),
        "--template",
        "topstep-50k",
        "--notify-url",
        "json://127.0.0.1:9/hook?token=SECRETTOKEN",
        "--admin-password-stdin",
        "--no-install-service",
        stdin=f"{sim.api_key}\n{PASSWORD}\n",
    )
    assert code == 0, err
    assert "Logged in." in out and "COMBINE-2" in out
    assert "sudo riskman service install --config" in out
    assert sim.api_key not in out + err and "SECRETTOKEN" not in out + err
    settings = load_config(config)
    assert settings.account_ids == [second]
    assert settings.gateway.api_url == sim.base_url
    assert settings.gateway.user_hub_url == sim.user_hub_url
    assert settings.rules.max_loss_limit.enabled and settings.rules.max_loss_limit.drawdown == 2000
    assert settings.rules.daily_realized_loss.limit == 1000
    assert settings.api_key_value() == sim.api_key
    assert settings.notify_urls() == ["json://127.0.0.1:9/hook?token=SECRETTOKEN"]
    assert _mode(config.parent / "api_key") == 0o600
    assert _mode(config.parent / "notify_urls") == 0o600
    assert sim.api_key not in config.read_text() and "SECRETTOKEN" not in config.read_text()
    assert PasswordStore(settings.password_file).verify(PASSWORD)
    # It really works: riskman's own check of the file passes.
    code, out, _ = await _run("check-config", "--config", str(config))
    assert code == 0 and "valid" in out


@pytest.mark.e2e
async def test_a_refused_key_writes_nothing(sim: Simulator, tmp_path: Path) -> None:
    config = tmp_path / "riskman.yaml"
    code, _out, err = await _run(
        "init",
        "--config",
        str(config),
        "--firm",
        "custom",
        "--api-url",
        sim.base_url,
        "--rtc-url",
        sim.base_url,
        "--username",
        sim.username,
        "--api-key-stdin",
        "--accounts",
        "all",
        "--template",
        "day-trader",
        "--admin-password-stdin",
        "--no-install-service",
        stdin=f"wrong-key\n{PASSWORD}\n",
    )
    assert code == 1
    assert "refused the login" in err and "nothing was written" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.e2e
async def test_without_a_terminal_a_missing_answer_names_its_flag(tmp_path: Path) -> None:
    code, _out, err = await _run("init", "--config", str(tmp_path / "r.yaml"), "--firm", "demo")
    assert code == 1 and "give --username" in err
    assert os.listdir(tmp_path) == []


class Terminal:
    """`riskman init` on a real pseudo-terminal (its controlling tty: getpass reads it)."""

    def __init__(self, master: int, proc: asyncio.subprocess.Process) -> None:
        self.master = master
        self.proc = proc
        self.seen = ""

    @classmethod
    async def start(cls, *args: str) -> Terminal:
        master, slave = pty.openpty()

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = await asyncio.create_subprocess_exec(
            *RISKMAN,
            *args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=_env(),
            start_new_session=True,
            preexec_fn=controlling_tty,
        )
        os.close(slave)
        os.set_blocking(master, False)
        return cls(master, proc)

    async def expect(self, text: str, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.master, readable.set)
        try:
            async with asyncio.timeout(timeout):
                while text not in self.seen:
                    await readable.wait()
                    readable.clear()
                    try:
                        chunk = os.read(self.master, 4096)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        raise AssertionError(f"ended before {text!r}: {self.seen[-800:]!r}")
                    self.seen += chunk.decode(errors="replace")
        except TimeoutError:
            raise AssertionError(f"no {text!r} on the screen: {self.seen[-800:]!r}") from None
        finally:
            loop.remove_reader(self.master)
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\r").encode())

    async def close(self) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            os.close(self.master)


@pytest.mark.e2e
async def test_interactive_init_in_a_terminal_asks_each_question(
    sim: Simulator, tmp_path: Path
) -> None:
    config = tmp_path / "riskman.yaml"
    first = sim.account_ids[0]
    term = await Terminal.start("init", "--config", str(config))
    try:
        await _answer_everything(term, sim)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            term.proc.kill()
        await term.close()
        raise
    assert await term.close() == 0
    settings = load_config(config)
    assert settings.account_ids == [first]
    assert settings.rules.max_loss_limit.starting_balance == 100000
    assert settings.notify.urls == [] and settings.notify.urls_file is None


async def _answer_everything(term: Terminal, sim: Simulator) -> None:
    await term.expect("Which firm's gateway?")
    await term.expect("Your choice (number or name) [1]: ")
    term.type("4")  # custom URLs
    await term.expect("REST API URL (https://...): ")
    term.type(sim.base_url)
    await term.expect("without /hubs): ")
    term.type(sim.base_url)
    await term.expect("Your gateway username: ")
    term.type(sim.username)
    await term.expect("not shown): ")
    term.type(sim.api_key)
    await term.expect("Logged in.")
    await term.expect("Which to guard (numbers or ids, comma-separated, or all) [all]: ")
    term.type("1")
    await term.expect("Your choice (number or name) [4]: ")
    term.type("topstep-100k")
    await term.expect("Enter for none): ")
    term.type("")
    await term.expect("give it to someone calm): ")
    term.type(PASSWORD)
    await term.expect("Repeat it: ")
    term.type(PASSWORD)
    await term.expect("(y/n) [n]: ")
    term.type("n")
    await term.expect("Written:")
    assert sim.api_key not in term.seen and PASSWORD not in term.seen  # never echoed
