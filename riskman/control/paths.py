"""Where an engine's socket and lock file are, computed the same way by every command."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from riskman.config import Settings

SOCKET_NAME = "riskman.sock"
MAX_SOCKET_PATH = 107
"""sun_path holds 108 bytes on Linux, the terminating NUL included."""


def socket_path(settings: Settings) -> Path:
    """`control.socket`, else riskman.sock beside the database; a path too long for a Unix
    socket becomes a short one under $XDG_RUNTIME_DIR (or the temp dir), named from a hash of
    the long one, so the engine and its clients find the same file."""
    wanted = settings.control.socket or settings.database.parent / SOCKET_NAME
    if len(os.fsencode(str(wanted))) <= MAX_SOCKET_PATH:
        return wanted
    digest = hashlib.sha256(os.fsencode(str(wanted))).hexdigest()[:16]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"riskman-{os.getuid()}-{digest}.sock"


def lock_path(settings: Settings) -> Path:
    """The lock file one engine holds while it runs on the database."""
    return settings.database.with_name(settings.database.name + ".lock")
