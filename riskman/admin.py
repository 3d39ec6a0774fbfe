"""The admin password: a salted scrypt hash in a 0600 file, and brute-force throttling.

The password itself is never stored, logged or shown. After three wrong passwords the admin
screens lock for a delay that doubles with every further failure; the count and the deadline
live in a file beside the hash (`admin.hash.tries`), so neither a restart nor a new database
resets them. Once a password has existed (the anchor file beside the config and the audit
table remember it), a missing hash file locks the admin screens: riskman never offers to
create a new password then.
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

from riskman.config import Settings, check_private_file
from riskman.core.clock import Clock
from riskman.core.files import write_private
from riskman.engine.commitment import ANCHOR_NAME, read_anchor, update_anchor
from riskman.storage.db import Database

# scrypt cost: 64 MiB and >= 100 ms per check on a fast machine, so offline guessing of a
# copied hash file is slow (issue 13). Stored hashes carry their own parameters.
SCRYPT_N = 2**16
_N, _R, _P = SCRYPT_N, 8, 1
_MAXMEM = 128 * 2**17 * _R * 2
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
    """The hash file (mode 0600). `None` from `load()` means no password is set yet.

    `anchor` is riskman's anchor file (beside the config): it remembers that a password has
    existed, so a deleted hash file cannot be replaced from the trader's chair.
    """

    def __init__(self, path: Path, anchor: Path | None = None) -> None:
        self.path = path
        self.anchor = anchor

    @classmethod
    def of(cls, settings: Settings) -> PasswordStore:
        return cls(settings.password_file, settings.state_dir / ANCHOR_NAME)

    @property
    def tries_file(self) -> Path:
        return self.path.with_name(self.path.name + ".tries")

    def exists(self) -> bool:
        return self.path.exists()

    def existed(self) -> bool:
        """A password has been set here before (whether or not its file is still there)."""
        return self.anchor is not None and bool(
            (read_anchor(self.anchor) or {}).get("password_existed")
        )

    def note_existed(self) -> None:
        if self.anchor is not None:
            update_anchor(self.anchor, {"password_existed": True})

    def missing_message(self) -> str:
        return (
            f"The admin password file {self.path} is missing: the admin screens stay locked. "
            "Restore it, or run `riskman set-admin-password --reset` as root or as "
            "riskman's own user."
        )

    def load(self) -> str | None:
        if not self.path.exists():
            if self.existed():
                raise PasswordError(self.missing_message())
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
        write_private(self.path, hash_password(password))
        self.note_existed()

    def create(self, password: str) -> None:
        """The first password: written only if no hash file exists, atomically (a hash made
        in a private temporary file, then hard-linked to its name, which fails if the name
        was taken meanwhile). Never replaces a password: PasswordError if one is set or has
        been (a deleted hash file)."""
        check_strength(password)
        if self.existed() and not self.exists():
            raise PasswordError(self.missing_message())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(hash_password(password))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                raise PasswordError("an admin password is already set") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.note_existed()

    # --- failed tries (beside the hash) ----------------------------------------------------

    def read_tries(self) -> tuple[int, datetime | None]:
        try:
            data = json.loads(self.tries_file.read_text(encoding="utf-8"))
            until = data.get("locked_until")
            return int(data["failures"]), None if until is None else datetime.fromisoformat(until)
        except FileNotFoundError:
            return 0, None
        except (OSError, ValueError, KeyError, TypeError):
            # A damaged counter is read as a lock of the longest delay, never as no failures.
            return FREE_TRIES + 10, None

    def write_tries(self, failures: int, until: datetime | None) -> None:
        if failures == 0 and until is None:
            with contextlib.suppress(FileNotFoundError):
                self.tries_file.unlink()
            return
        data = {"failures": failures, "locked_until": None if until is None else until.isoformat()}
        write_private(self.tries_file, json.dumps(data))

    def check(self, password: str, now: datetime) -> Attempt:
        """One throttled try (blocking: scrypt): the command line and the screens share it."""
        failures, until = self.read_tries()
        if until is not None and until > now:
            return Attempt(False, until, failures)
        if self.verify(password):
            self.write_tries(0, None)
            return Attempt(True)
        failures += 1
        locked = None
        if failures >= FREE_TRIES:
            delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - FREE_TRIES))
            locked = now + timedelta(seconds=delay)
        self.write_tries(failures, locked)
        return Attempt(False, locked, failures)


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    locked_until: datetime | None = None
    """Set when the admin screens are locked (after this attempt, or already before it)."""
    failures: int = 0


class AdminGuard:
    """Password checks with a growing delay after repeated failures, kept beside the hash."""

    def __init__(self, store: PasswordStore, db: Database, clock: Clock) -> None:
        self.store = store
        self._db = db
        self._clock = clock

    async def remember_password(self) -> None:
        """If the audit table says a password was set, note it in the anchor file too."""
        if self.store.exists() or self.store.existed():
            if self.store.exists():
                self.store.note_existed()
            return
        row = await self._db.fetchone("SELECT 1 FROM admin_audit WHERE action = 'password' LIMIT 1")
        if row is not None:
            self.store.note_existed()

    async def locked_until(self) -> datetime | None:
        _, until = self.store.read_tries()
        if until is not None and until > self._clock.now():
            return until
        return None

    async def try_password(self, password: str) -> Attempt:
        # scrypt takes >= 0.1 s: off the event loop, so enforcement never waits for a login.
        return await asyncio.to_thread(self.store.check, password, self._clock.now())
