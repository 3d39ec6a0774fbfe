"""Locks as everyone sees them: what kind, what ends it, and one lock as stored.

Standard library only: the views, the intents and the rules all use these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class LockKind(StrEnum):
    LOCKOUT = "lockout"
    COOLDOWN = "cooldown"


class Unlock(StrEnum):
    """What ends a lock."""

    TIME = "time"  # `until` passes (cooldowns)
    RESET = "reset"  # the daily reset (`until` is that reset)
    SESSION = "session"  # the next session start (`until` is that start)
    CAN_TRADE = "can_trade"  # the gateway says the account can trade again
    ADMIN = "admin"  # only an admin clears it
    CONFIG = "config"  # the symbol is removed from the block list

    def describe(self, until: datetime | None) -> str:
        """What a trader reads about when the lock ends (the time as ISO, shown local on screen)."""
        when = None if until is None else until.isoformat(timespec="seconds")
        if self is Unlock.TIME:
            return f"until {when}"
        if self is Unlock.RESET:
            return f"until the daily reset at {when}"
        if self is Unlock.SESSION:
            return f"until the next session starts at {when}"
        if self is Unlock.CAN_TRADE:
            return "until the broker lets the account trade again"
        if self is Unlock.ADMIN:
            return "until an admin clears it"
        return "until the symbol is taken off the block list"


@dataclass(frozen=True, slots=True)
class Lockout:
    id: int
    account_id: int
    symbol: str | None
    rule: str
    kind: LockKind
    reason: str
    unlock: Unlock
    until: datetime | None
    created: datetime

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.account_id, self.symbol or "", self.rule)

    def remaining(self, now: datetime) -> float | None:
        """Seconds left, or None when no time ends it."""
        if self.until is None:
            return None
        return max(0.0, (self.until - now).total_seconds())

    def outlasts(self, other: Lockout) -> bool:
        if self.until is None:
            return other.until is not None
        return other.until is not None and self.until > other.until
