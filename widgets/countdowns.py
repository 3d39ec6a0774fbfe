"""The lines of an account's active lockouts and cooldowns, each with what ends it.

A countdown is computed from the lock's deadline and the clock each time it is drawn (never
by counting ticks), and a lock whose deadline has passed is no longer shown, even before the
engine's own expiry reaches the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from textual.content import Content

from riskman.core.views import LockView
from widgets.formatting import clock_time, countdown

# What ends a lock that no deadline ends (LockView.unlock).
_OPEN_ENDED = {
    "can_trade": "until the gateway lets the account trade again",
    "admin": "until an admin clears it",
    "config": "while the symbol is on the block list",
}
_ENDS_AT = {
    "reset": "until the daily reset",
    "session": "until the session opens",
}


def lock_label(lock: LockView) -> str:
    kind = "COOLDOWN" if lock.kind == "cooldown" else "LOCKED"
    return f"{kind} {lock.symbol}" if lock.symbol else kind


def remaining(lock: LockView, now: datetime) -> float | None:
    """Seconds left, or None when no deadline ends the lock."""
    if lock.until is None:
        return None
    return (lock.until - now).total_seconds()


def live(locks: Sequence[LockView], now: datetime) -> list[LockView]:
    """The locks still in force at `now` (a passed deadline means over)."""
    return [lock for lock in locks if lock.until is None or lock.until > now]


def lock_lines(
    locks: Sequence[LockView], now: datetime, zone: tzinfo, muted: str = "dim"
) -> list[Content]:
    """One line per lock still in force at `now`, or a single (`muted`) line saying there is
    none."""
    shown = live(locks, now)
    if not shown:
        return [Content.styled("No lockout or cooldown.", muted)]
    return [lock_line(lock, now, zone) for lock in shown]


def lock_line(lock: LockView, now: datetime, zone: tzinfo) -> Content:
    """A lock's badge, rule and reason, and what ends it (the time left when time does)."""
    colour = "$warning" if lock.kind == "cooldown" else "$error"
    badge = Content.styled(f" {lock_label(lock)} ", f"bold reverse {colour}")
    left = remaining(lock, now)
    if left is None:
        ends = Content(_OPEN_ENDED.get(lock.unlock, "until it is cleared"))
    else:
        prefix = _ENDS_AT.get(lock.unlock, "ends")
        ends = Content.assemble(
            f"{prefix} in ",
            (countdown(left), f"bold {colour}"),
            f" (at {clock_time(lock.until or now, zone, seconds=True)})",
        )
    return Content.assemble(
        badge, " ", (lock.rule, "bold"), f"  {lock.reason}  ", ("·", "dim"), " ", ends
    )
