"""Push notifications through Apprise (ntfy, Discord, Telegram, Slack, Pushover, e-mail, ...).

The notifier subscribes to the engine's changes like any screen does: its listener only turns a
change into a short message and puts it on a queue. One background task sends them, each in a
worker thread (Apprise blocks), with retries and backoff. Enforcement never waits for it; a
send that fails is logged and dropped, never raised. At most one message per event kind and
account goes out every `notify.min_interval` seconds; what is held back meanwhile follows as
one summary when the interval ends.

Notification URLs carry tokens: they are never logged. A URL is named by its position and
scheme only ("URL 2 (tgram://)").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from riskman.config import NOTIFY_EVENTS, NotifyConfig, _url_scheme
from riskman.core.clock import Clock
from riskman.core.locks import LockKind, Unlock
from riskman.core.views import (
    EnforcementRecord,
    EngineChange,
    FeedHealth,
    FeedState,
    LimitWarning,
    LockoutChange,
    PendingChange,
    ResetDone,
)

if TYPE_CHECKING:
    from riskman.engine.engine import Engine

log = logging.getLogger("riskman.notify")

QUEUE_MAX = 1000
"""Messages waiting beyond this are dropped oldest first (and counted): a dead receiver must
not grow memory without bound."""
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 60.0
TITLE = "riskman"


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    """One of NOTIFY_EVENTS, or "test"."""
    account_id: int | None
    body: str
    title: str = TITLE
    admitted: bool = False
    """Already counted against the rate limit (a summary of held-back messages)."""


class Sender(Protocol):
    """Delivers one message; blocking (it runs in a worker thread)."""

    labels: list[str]
    """One per target, safe to log ("URL 2 (tgram://)")."""

    def send(self, title: str, body: str, only: Sequence[int] | None = None) -> list[int]:
        """Send to every target (or to the `only` indexes); return the indexes that failed."""
        ...


def url_label(index: int, url: str) -> str:
    """How a URL is named in logs and on screen: never its tokens."""
    return f"URL {index} ({_url_scheme(url)})"


def quiet_apprise() -> None:
    """Apprise's own log lines can carry a URL's token (the request URL of some services):
    keep them out of riskman's logs; riskman logs each URL's outcome by its label."""
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)


class AppriseSender:
    """Apprise, one instance per URL, so each URL's outcome is known and retried alone."""

    def __init__(self, urls: Sequence[str], timeout: float = 10.0) -> None:
        import apprise

        quiet_apprise()
        self.timeout = timeout
        self.labels = [url_label(index, url) for index, url in enumerate(urls, 1)]
        self._targets: list[apprise.Apprise | None] = []
        for url in urls:
            one = apprise.Apprise()
            self._targets.append(one if one.add(url) else None)
        self.invalid = [
            label
            for label, target in zip(self.labels, self._targets, strict=True)
            if target is None
        ]
        if self.invalid:
            log.warning("notification URLs not understood by Apprise: %s", ", ".join(self.invalid))

    def send(self, title: str, body: str, only: Sequence[int] | None = None) -> list[int]:
        failed = []
        for index in range(len(self._targets)) if only is None else only:
            target = self._targets[index]
            try:
                ok = target is not None and bool(target.notify(body=body, title=title))
            except Exception:  # a plugin bug must not stop the other URLs
                ok = False
            if not ok:
                failed.append(index)
        return failed

    def send_each(self, title: str, body: str) -> list[tuple[str, bool, str]]:
        """Send to every URL: (label, delivered, why not)."""
        results = []
        failed = set(self.send(title, body))
        for index, label in enumerate(self.labels):
            if self._targets[index] is None:
                results.append((label, False, "not a URL Apprise understands"))
            elif index in failed:
                results.append((label, False, "the service did not accept it (or is unreachable)"))
            else:
                results.append((label, True, ""))
        return results


@dataclass
class _Window:
    sent_at: float
    held: list[Message] = field(default_factory=list)
    flush: asyncio.Task[None] | None = None


@dataclass
class NotifyStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0
    held_back: int = 0
    dropped: int = 0


class Notifier:
    """Turns engine changes into messages and sends them in the background."""

    def __init__(
        self,
        config: NotifyConfig,
        sender: Sender | None,
        clock: Clock,
        *,
        zone: ZoneInfo | None = None,
        account_name: Callable[[int], str] = str,
    ) -> None:
        self.config = config
        self.sender = sender
        self.clock = clock
        self.zone = zone or ZoneInfo("UTC")
        self.account_name = account_name
        self.stats = NotifyStats()
        self._events = set(config.events)
        self._queue: deque[Message] = deque()
        self._wakeup = asyncio.Event()
        self._windows: dict[tuple[str, int | None], _Window] = {}
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self.backing_off = False
        """Waiting before the next attempt of a failed send."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._armed: bool | None = None
        self._market_stale = False
        self._unsubscribe: Callable[[], None] | None = None
        self.summary_text: Callable[[ResetDone], list[Message]] | None = None
        """Builds the day's summary messages at a reset (set by whoever knows the history)."""

    @classmethod
    def for_engine(cls, engine: Engine, sender: Sender | None = None) -> Notifier | None:
        """A notifier for the engine's settings, or None when no URL is configured."""
        settings = engine.settings
        if sender is None:
            try:
                urls = settings.notify_urls()
            except OSError as exc:
                log.warning("notifications off: cannot read notify.urls_file (%s)", exc.strerror)
                return None
            if not urls:
                return None
            sender = AppriseSender(urls, settings.notify.timeout)

        def name(account_id: int) -> str:
            account = engine.state.get_account(account_id)
            return account.name if account is not None else str(account_id)

        notifier = cls(settings.notify, sender, engine.clock, zone=settings.zone, account_name=name)
        notifier.attach(engine)
        return notifier

    # --- life cycle ----------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        self._unsubscribe = engine.subscribe(self.on_change)
        for news in engine.pending_news:  # found at start, before anyone listened
            if news.change in engine.pending:
                self.on_change(news)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="riskman-notify")

    async def stop(self, grace: float = 3.0) -> None:
        """Give queued messages `grace` seconds to go out, then stop."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle(), grace)
        for window in self._windows.values():
            if window.flush is not None:
                window.flush.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def idle(self) -> None:
        """Wait until the queue is empty and nothing is being sent."""
        while self._queue or self._busy:
            self._idle.clear()
            await self._idle.wait()

    # --- engine changes -> messages -----------------------------------------------------

    def on_change(self, change: EngineChange) -> None:
        """The engine's listener: builds the message and enqueues it; never blocks."""
        try:
            for message in self._messages_for(change):
                self.post(message)
        except Exception:
            log.exception("could not build a notification")

    def post(self, message: Message) -> None:
        if message.kind != "test" and message.kind not in self._events:
            return
        if len(self._queue) >= QUEUE_MAX:
            self._queue.popleft()
            self.stats.dropped += 1
        self._queue.append(message)
        self.stats.queued += 1
        self._idle.clear()
        self._wakeup.set()

    def _messages_for(self, change: EngineChange) -> list[Message]:
        if isinstance(change, LockoutChange):
            return [self._lock_message(change)]
        if isinstance(change, EnforcementRecord):
            if change.result == "failed":
                return [self._failed_message(change)]
            return []
        if isinstance(change, FeedHealth):
            return self._feed_messages(change)
        if isinstance(change, LimitWarning):
            return [
                Message(
                    "warning",
                    change.account_id,
                    f"{self._who(change.account_id)}: {change.text}",
                )
            ]
        if isinstance(change, PendingChange):
            return [self._pending_message(change)]
        if isinstance(change, ResetDone) and self.summary_text is not None:
            return self.summary_text(change)
        return []

    def _who(self, account_id: int) -> str:
        name = self.account_name(account_id)
        return name if name == str(account_id) else f"{name} ({account_id})"

    def _local(self, when: datetime) -> str:
        local = when.astimezone(self.zone)
        today = self.clock.now().astimezone(self.zone).date()
        fmt = "%H:%M %Z" if local.date() == today else "%a %d %b %H:%M %Z"
        return local.strftime(fmt)

    def _until(self, lock_unlock: Unlock, until: datetime | None) -> str:
        if until is not None and lock_unlock in (Unlock.TIME, Unlock.RESET, Unlock.SESSION):
            what = {
                Unlock.TIME: "until",
                Unlock.RESET: "until the daily reset,",
                Unlock.SESSION: "until the next session,",
            }[lock_unlock]
            return f"{what} {self._local(until)}"
        return lock_unlock.describe(until)

    def _lock_message(self, change: LockoutChange) -> Message:
        lock = change.lockout
        who = self._who(lock.account_id)
        scope = f" {lock.symbol}" if lock.symbol else ""
        if change.cleared_by is not None:
            why = f" ({change.reason})" if change.reason else ""
            return Message(
                "unlock",
                lock.account_id,
                f"{who}: {lock.rule}{scope} {lock.kind.value} ended, by {change.cleared_by}{why}.",
            )
        word = "LOCKED" if lock.kind is LockKind.LOCKOUT else "COOLDOWN"
        kind = "lockout" if lock.kind is LockKind.LOCKOUT else "cooldown"
        return Message(
            kind,
            lock.account_id,
            f"{who}{scope} {word} by {lock.rule}: {lock.reason}; "
            f"{self._until(lock.unlock, lock.until)}.",
        )

    def _pending_message(self, event: PendingChange) -> Message:
        """A looser change (issue 13): it waits for the reset, was cancelled, or is in force."""
        change = event.change
        who = "All accounts" if change.account is None else self._who(change.account)
        move = f"{change.key} {_value(change.old)} -> {_value(change.new)}"
        when = "the daily reset" if change.effective is None else self._local(change.effective)
        if event.what == "cancelled":
            text = f"{move} cancelled: {_value(change.old)} stays."
        elif event.what == "in_force":
            text = f"{move} now in force (daily reset)."
        else:
            text = f"{move} is looser: it takes effect at {when}."
        return Message("pending_change", change.account, f"{who}: {text}")

    def _failed_message(self, record: EnforcementRecord) -> Message:
        detail = f": {record.detail}" if record.detail else ""
        return Message(
            "action_failed",
            record.account_id,
            f"{self._who(record.account_id)}: {record.rule} could not {record.action} "
            f"{record.target}{detail}. Check the account now.",
        )

    def _feed_messages(self, health: FeedHealth) -> list[Message]:
        messages = []
        if health.hub == "user":
            armed = health.trusted
            if self._armed is True and not armed:
                messages.append(
                    Message(
                        "not_armed",
                        None,
                        f"riskman is NOT enforcing: the user feed is {health.state.value}"
                        + (f" ({health.detail})" if health.detail else "")
                        + ". It reconnects by itself.",
                    )
                )
            elif self._armed is False and armed:
                messages.append(Message("not_armed", None, "riskman is enforcing again."))
            self._armed = armed
        else:
            stale = health.state in (FeedState.STALE, FeedState.DOWN, FeedState.RECONNECTING)
            if stale and not self._market_stale:
                messages.append(
                    Message(
                        "stale_feed",
                        None,
                        f"Market data is {health.state.value}: open positions are priced from "
                        "REST bars until it is back.",
                    )
                )
            elif self._market_stale and health.trusted:
                messages.append(Message("stale_feed", None, "Market data is live again."))
            if stale or health.trusted:
                self._market_stale = stale
        return messages

    # --- sending -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            message = self._queue.popleft()
            self._busy = True
            try:
                if message.admitted or self._admit(message):
                    await self.deliver(message)
            except Exception:
                log.exception("notification failed")
            finally:
                self._busy = False

    def _admit(self, message: Message) -> bool:
        """Rate limit per kind and account: False when the message is held back."""
        if message.kind == "test":
            return True
        key = (message.kind, message.account_id)
        now = self.clock.monotonic()
        window = self._windows.get(key)
        if window is None or now - window.sent_at >= self.config.min_interval:
            if window is not None and window.held:
                # The summary's timer has not run yet; it goes out first, as one message.
                message = self._summary(key, window, then=message)
            self._windows[key] = _Window(now)
            return True
        window.held.append(message)
        self.stats.held_back += 1
        if window.flush is None:
            wait = self.config.min_interval - (now - window.sent_at)
            window.flush = asyncio.get_running_loop().create_task(self._flush_later(key, wait))
        return False

    def _summary(
        self, key: tuple[str, int | None], window: _Window, then: Message | None = None
    ) -> Message:
        held = window.held + ([then] if then is not None else [])
        window.held = []
        if len(held) == 1:
            return held[0]
        lines = [held[-1].body, f"({len(held) - 1} earlier {key[0]} message(s) held back:)"]
        lines += [f"- {m.body}" for m in held[:-1][-5:]]
        return Message(key[0], key[1], "\n".join(lines))

    async def _flush_later(self, key: tuple[str, int | None], wait: float) -> None:
        await self.clock.sleep(wait)
        window = self._windows.get(key)
        if window is None or not window.held:
            return
        summary = self._summary(key, window)
        self._windows[key] = _Window(self.clock.monotonic())
        self._queue.appendleft(
            Message(summary.kind, summary.account_id, summary.body, admitted=True)
        )
        self._idle.clear()
        self._wakeup.set()

    async def deliver(self, message: Message) -> bool:
        """Send one message with retries and backoff (only to the URLs that failed); log a
        failure, never raise."""
        if self.sender is None:
            return False
        attempts = self.config.retries + 1
        delay = BACKOFF_FIRST
        pending: list[int] | None = None
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(self.config.timeout * len(self.sender.labels) + 5):
                    pending = await asyncio.to_thread(
                        self.sender.send, message.title, message.body, pending
                    )
            except Exception as exc:
                log.warning(
                    "notification %s: attempt %d failed (%s)",
                    message.kind,
                    attempt,
                    type(exc).__name__,
                )
            else:
                if not pending:
                    self.stats.sent += 1
                    return True
            if attempt < attempts:
                self.backing_off = True
                try:
                    await self.clock.sleep(delay)
                finally:
                    self.backing_off = False
                delay = min(BACKOFF_MAX, delay * 2)
        self.stats.failed += 1
        where = ", ".join(self.sender.labels[i] for i in pending) if pending else "every URL"
        log.warning(
            "notification %s for account %s not delivered to %s after %d attempts",
            message.kind,
            message.account_id if message.account_id is not None else "-",
            where,
            attempts,
        )
        return False


def _value(value: object) -> str:
    """A rule value (plain JSON data) in a message."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


async def send_test(urls: Sequence[str], timeout: float = 10.0) -> list[tuple[str, bool, str]]:
    """`riskman notify-test`: one test message to each URL on its own."""
    sender = AppriseSender(urls, timeout)
    return await asyncio.to_thread(
        sender.send_each,
        TITLE,
        "riskman test message: notifications reach you. Nothing is wrong.",
    )


__all__ = ["NOTIFY_EVENTS", "AppriseSender", "Message", "Notifier", "Sender", "send_test"]
