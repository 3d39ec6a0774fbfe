"""One engine per database: an OS lock (flock) on a file beside it, held while the engine
runs. The kernel drops the lock when the process dies, even by SIGKILL, so a stale file never
blocks a restart. The file names the holder (pid, socket) for the refusal message."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path


class EngineRunning(Exception):
    """Another engine already runs on this database (the message names it)."""


class EngineLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, socket: Path) -> None:
        """Take the lock or raise EngineRunning naming the engine that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise EngineRunning(
                f"another riskman engine already runs on {self.database} ({holder})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "socket": str(socket)}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    @property
    def database(self) -> Path:
        return self.path.with_name(self.path.name.removesuffix(".lock"))


def _describe(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(data['pid'])}, socket {data['socket']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"
