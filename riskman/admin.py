"""The admin password: a salted scrypt hash in a 0600 file, and brute-force throttling.

The password itself is never stored, logged or shown. After three wrong passwords the admin
screens lock for a delay that doubles with every further failure; the count and the deadline
live in the database, so restarting riskman does not reset them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from riskman.config import check_private_file
from riskman.core.clock import Clock
from riskman.storage.db import Database, from_db_time, to_db_time

# scrypt cost: ~50 ms on a laptop; enough to make offline guessing of a stolen hash slow.
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 128 * _N * _R * 2
MIN_LENGTH = 8
FREE_TRIES = 3
FIRST_DELAY = 30.0
MAX_DELAY = 3600.0


class PasswordError(Exception):
    """The password file is missing, unreadable, unsafe, or the password is unacceptable."""


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32
    )


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the password must have at least {MIN_LENGTH} characters")
    if password.strip() != password:
        raise PasswordError("the password must not start or end with a space")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, _N, _R, _P)
    return json.dumps(
        {
            "algorithm": "scrypt",
            "n": _N,
            "r": _R,
            "p": _P,
            "salt": base64.b64encode(salt).decode(),
            "hash": base64.b64encode(digest).decode(),
        }
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        data = json.loads(stored)
        if data.get("algorithm") != "scrypt":
            return False
        salt = base64.b64decode(data["salt"])
        expected = base64.b64decode(data["hash"])
        digest = _derive(password, salt, int(data["n"]), int(data["r"]), int(data["p"]))
    except (ValueError, KeyError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


class PasswordStore:
    """The hash file (mode 0600). `None` from `load()` means no password is set yet."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> str | None:
        if not self.path.exists():
            return None
        try:
            check_private_file(self.path, "admin password file")
        except ValueError as exc:
            raise PasswordError(str(exc)) from None
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordError(f"cannot read {self.path}: {exc.strerror}") from None

    def verify(self, password: str) -> bool:
        stored = self.load()
        return stored is not None and verify_password(password, stored)

    def set(self, password: str) -> None:
        """Write a new hash atomically, created 0600 (never readable by others)."""
        check_strength(password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".admin-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(hash_password(password))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    locked_until: datetime | None = None
    """Set when the admin screens are locked (after this attempt, or already before it)."""
    failures: int = 0


class AdminGuard:
    """Password checks with a growing delay after repeated failures, kept in the database."""

    def __init__(self, store: PasswordStore, db: Database, clock: Clock) -> None:
        self.store = store
        self._db = db
        self._clock = clock

    async def _state(self) -> tuple[int, datetime | None]:
        row = await self._db.fetchone("SELECT failures, locked_until FROM admin_throttle")
        if row is None:
            return 0, None
        return int(row["failures"]), from_db_time(row["locked_until"])

    async def locked_until(self) -> datetime | None:
        _, until = await self._state()
        if until is not None and until > self._clock.now():
            return until
        return None

    async def try_password(self, password: str) -> Attempt:
        failures, until = await self._state()
        now = self._clock.now()
        if until is not None and until > now:
            return Attempt(False, until, failures)
        # scrypt takes ~0.1 s: off the event loop, so enforcement never waits for a login.
        if await asyncio.to_thread(self.store.verify, password):
            await self._write(0, None)
            return Attempt(True)
        failures += 1
        locked = None
        if failures >= FREE_TRIES:
            delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - FREE_TRIES))
            locked = now + timedelta(seconds=delay)
        await self._write(failures, locked)
        return Attempt(False, locked, failures)

    async def _write(self, failures: int, until: datetime | None) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO admin_throttle (id, failures, locked_until) VALUES (1, ?, ?)",
            (failures, to_db_time(until)),
        )
