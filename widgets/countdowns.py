"""Every active lockout and cooldown of an account, each with a live countdown.

The widget keeps the locks' deadlines and repaints from its own 1 s interval, computing what is
left from the clock each time (late ticks are harmless: nothing is counted). The interval is
paused while no lock has a deadline. A lock whose deadline has passed disappears at once, even
before the engine's own expiry reaches the screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo

from textual.content import Content
from textual.timer import Timer
from textual.widget import Widget

from riskman.engine.snapshot import LockView
from widgets.formatting import clock_time, countdown

Now = Callable[[], datetime]

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


class LockList(Widget):
    """One line per lock: kind, rule, reason, and what ends it (a countdown when time does)."""

    DEFAULT_CSS = """
    LockList {
        height: auto;
    }
    """

    def __init__(
        self,
        now: Now,
        zone: tzinfo = UTC,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._now = now
        self.zone = zone
        self._locks: tuple[LockView, ...] = ()
        self._timer: Timer | None = None
        self._ticking = False
        self._count = 0

    def on_mount(self) -> None:
        self._timer = self.set_interval(1.0, self._tick, pause=True)
        self._arm()

    @property
    def ticking(self) -> bool:
        """Whether the 1 s interval runs (some shown lock has a deadline)."""
        return self._ticking

    def set_locks(self, locks: Sequence[LockView], zone: tzinfo | None = None) -> None:
        if zone is not None:
            self.zone = zone
        locks = tuple(locks)
        if locks == self._locks:
            return
        self._locks = locks
        self._count = len(self.in_force())
        self._arm()
        self.refresh(layout=True)

    def in_force(self) -> list[LockView]:
        return live(self._locks, self._now())

    def _arm(self) -> None:
        if self._timer is None:
            return
        ticking = any(lock.until is not None for lock in self.in_force())
        if ticking != self._ticking:
            self._ticking = ticking
            if ticking:
                self._timer.resume()
            else:
                self._timer.pause()

    def _tick(self) -> None:
        # A layout pass only when a lock ended (a line fewer); otherwise just repaint.
        count = len(self.in_force())
        self.refresh(layout=count != self._count)
        self._count = count
        self._arm()

    def render(self) -> Content:
        now = self._now()
        shown = live(self._locks, now)
        if not shown:
            return Content.from_markup("[$text-muted]No lockout or cooldown.[/]")
        lines = [self._line(lock, now) for lock in shown]
        return Content("\n").join(lines)

    def _line(self, lock: LockView, now: datetime) -> Content:
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
                f" (at {clock_time(lock.until or now, self.zone, seconds=True)})",
            )
        return Content.assemble(
            badge, " ", (lock.rule, "bold"), f"  {lock.reason}  ", ("·", "dim"), " ", ends
        )
