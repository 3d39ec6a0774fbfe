"""MOD-003 Timer manager: named countdown timers that fire on the event loop.

Timers are not persisted: whoever owns a deadline (lockouts, grace periods, sessions) stores
the deadline itself and starts the timer again on start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from riskman.core.clock import Clock, TimerHandle

log = logging.getLogger(__name__)


@dataclass
class _Timer:
    deadline: datetime
    handle: TimerHandle


class TimerManager:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._timers: dict[str, _Timer] = {}

    def start_timer(self, name: str, seconds: float, callback: Callable[[], object]) -> datetime:
        """(Re)start timer `name`; `callback` runs once when it ends. Returns the deadline."""
        deadline = self._clock.now() + timedelta(seconds=max(0.0, seconds))
        self.start_timer_at(name, deadline, callback)
        return deadline

    def start_timer_at(self, name: str, deadline: datetime, callback: Callable[[], object]) -> None:
        self.cancel_timer(name)

        def fire() -> None:
            timer = self._timers.get(name)
            if timer is None or timer.deadline != deadline:
                return
            del self._timers[name]
            try:
                callback()
            except Exception:  # a failing callback must not take the loop down
                log.exception("timer %s callback failed", name)

        self._timers[name] = _Timer(deadline, self._clock.call_at(deadline, fire))

    def get_remaining_time(self, name: str) -> float | None:
        """Seconds left on timer `name`, or None if it is not running."""
        timer = self._timers.get(name)
        if timer is None:
            return None
        return max(0.0, (timer.deadline - self._clock.now()).total_seconds())

    def deadline(self, name: str) -> datetime | None:
        timer = self._timers.get(name)
        return None if timer is None else timer.deadline

    def cancel_timer(self, name: str) -> bool:
        timer = self._timers.pop(name, None)
        if timer is None:
            return False
        timer.handle.cancel()
        return True

    def names(self) -> list[str]:
        return sorted(self._timers)

    def cancel_all(self) -> None:
        for name in list(self._timers):
            self.cancel_timer(name)
