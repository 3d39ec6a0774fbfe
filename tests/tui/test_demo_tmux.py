"""`riskman demo` in a real terminal (tmux): the keys a new user presses break a rule, and the
lock and its countdown are read off the screen; then quitting ends the process cleanly."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
RISKMAN = Path(sys.executable).with_name("riskman")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        TMUX is None, reason="tmux is not installed (needed to drive a real terminal)"
    ),
    pytest.mark.skipif(
        not RISKMAN.exists(), reason=f"{RISKMAN} is not installed (pip install -e .)"
    ),
]


class Terminal:
    """A detached tmux session on a private server socket."""

    def __init__(self, command: str, width: int = 160, height: int = 48) -> None:
        self.socket = f"riskman-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.session = "demo"
        self._tmux(
            "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), command
        )

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert TMUX is not None
        return subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", self.session, key)

    @property
    def alive(self) -> bool:
        return self._tmux("has-session", "-t", self.session).returncode == 0

    def close(self) -> None:
        self._tmux("kill-server")

    def wait(self, predicate: Callable[[str], object], timeout: float, what: str) -> str:
        """Poll the screen until `predicate` holds; fail with the last screen after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{screen}")
            time.sleep(0.1)


def countdown(screen: str) -> str | None:
    match = re.search(r"COOLDOWN\s+RULE-006.*ends in (\d+:\d\d)", screen)
    return match.group(1) if match else None


def test_riskman_demo_breaks_a_rule_and_shows_the_cooldown_countdown(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    status = tmp_path / "exit-status"
    # TMPDIR: the demo's temporary folder lands here, so its removal on quit can be checked;
    # COLUMNS/LINES (set by pytest) would override the real terminal size.
    command = (
        f"env -u COLUMNS -u LINES TMPDIR={shlex.quote(str(scratch))} "
        f"{shlex.quote(str(RISKMAN))} demo --seed 11; "
        f"echo $? > {shlex.quote(str(status))}"
    )
    terminal = Terminal(command)
    try:
        terminal.wait(lambda s: "ENFORCING" in s and "DEMO-50K-1" in s, 30, "the dashboard")
        assert any(scratch.iterdir()), "the demo folder should exist while the demo runs"
        terminal.keys("b", "b", "b", "b")
        screen = terminal.wait(countdown, 20, "a RULE-006 cooldown with a countdown")
        assert "COOLDOWN" in screen and "4 trades within a minute" in screen
        first = countdown(screen)
        # The countdown moves by itself (a repaint every second, no key pressed).
        terminal.wait(lambda s: countdown(s) not in (None, first), 5, "the countdown to tick")
        terminal.keys("l")
        terminal.wait(lambda s: re.search(r"RULE-006\s+cooldown", s), 5, "the log line")
        terminal.keys("q")
        terminal.wait(lambda s: "Quit riskman?" in s, 5, "the quit confirmation")
        terminal.keys("y")
        deadline = time.monotonic() + 15
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status.exists(), f"riskman did not exit:\n{terminal.screen()}"
        assert status.read_text().strip() == "0"
        assert not any(scratch.iterdir()), "the demo's temporary folder was left behind"
        deadline = time.monotonic() + 5
        while terminal.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not terminal.alive
    finally:
        terminal.close()
