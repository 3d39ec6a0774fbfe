"""systemd's notify protocol, by hand: READY=1 once armed, WATCHDOG=1 from the event loop.

A `Type=notify` unit with `WatchdogSec` kills and restarts the engine when the pings stop:
they are sent by a task on the engine's own event loop, so a frozen loop (or a process
stopped with SIGSTOP) misses them. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("riskman")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading "@" and bound with a leading NUL.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog: float | None = None
        """The watchdog timeout in seconds (WATCHDOG_USEC), when this process is watched."""
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = int(usec) / 1_000_000
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when there is no one to tell."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: flushing state")

    def start_watchdog(self) -> None:
        """Ping at a third of the timeout (systemd asks for at least every half)."""
        if self.watchdog is None or not self.address or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._ping(self.watchdog / 3), name="riskman-watchdog"
        )

    async def _ping(self, every: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(every)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
