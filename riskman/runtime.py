"""riskman connected: REST client, realtime feed, engine and reset scheduler, started and
stopped together. The headless daemon and the terminal both run one `Runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from riskman.config import Settings
from riskman.control.interface import CannotStart
from riskman.control.lockfile import EngineLock, EngineRunning
from riskman.control.paths import lock_path, socket_path
from riskman.control.server import ControlServer, SocketInUse
from riskman.core.backoff import Backoff
from riskman.core.clock import Clock, SystemClock
from riskman.core.rules import Rule
from riskman.core.views import ResetDone
from riskman.engine.engine import Engine
from riskman.gateway.errors import AuthError, GatewayError, GatewayUnavailable, RateLimited
from riskman.gateway.feed import GatewayFeed
from riskman.gateway.rest import RestClient
from riskman.notify import Message, Notifier
from riskman.report import day_report, store_day, summary_message
from riskman.rules import ALL_RULES

log = logging.getLogger("riskman")

FREEZE_AFTER = 1.0
"""Seconds after arming before the start-up heap is frozen (start-up enforcement goes first)."""
_heap_frozen = False


class DailyHistory:
    """At each daily reset: the finished day's summary stored (`daily_history`, the History
    tab) and sent as a `daily_summary` notification. Off the enforcement path: a task after
    the reset is done."""

    def __init__(self, engine: Engine, notifier: Notifier | None) -> None:
        self.engine = engine
        self.notifier = notifier
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe = engine.subscribe(self._on_change)
        self._spawn(self.catch_up())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_change(self, change: object) -> None:
        if isinstance(change, ResetDone):
            self._spawn(self.record(change.ended))

    async def catch_up(self, days: int = 30) -> None:
        """Store the days whose reset ran while nothing recorded them (riskman was down, or a
        database from before the history): without a notification, they are old news."""
        try:
            rows = await self.engine.db.fetchall(
                "SELECT trading_day FROM reset_log WHERE trading_day NOT IN "
                "(SELECT DISTINCT trading_day FROM daily_history) "
                "ORDER BY trading_day DESC LIMIT ?",
                (days,),
            )
        except Exception:
            log.exception("the missing daily summaries could not be looked up")
            return
        for row in rows:
            await self.record(date.fromisoformat(row["trading_day"]), notify=False)

    async def record(self, day: date, *, notify: bool = True) -> None:
        engine = self.engine
        try:
            await engine.db.flush()
            report = await day_report(engine.db, engine.resets.schedule, day)
            balances = {a.id: a.balance for a in engine.state.accounts() if engine.is_guarded(a.id)}
            await store_day(engine.db, report, balances, engine.clock.now())
        except Exception:
            log.exception("the summary of %s could not be stored", day)
            return
        if notify and self.notifier is not None:
            for a in report.accounts:
                account = engine.state.get_account(a.account_id)
                name = account.name if account is not None else str(a.account_id)
                self.notifier.post(
                    Message("daily_summary", a.account_id, summary_message(a, day, name))
                )

    async def close(self) -> None:
        self._unsubscribe()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class StartError(CannotStart):
    """riskman cannot start: one clear line for the user (bad config, credentials, gateway)."""


@dataclass
class StartTimes:
    """Seconds from `Runtime.start()` to each milestone (for the start-up benchmark)."""

    logged_in: float | None = None
    engine_ready: float | None = None
    armed: float | None = None


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        api_key: str | None = None,
        clock: Clock | None = None,
        rule_classes: Sequence[type[Rule]] | None = None,
        start_wait: float | None = None,
        control: bool = True,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._api_key = api_key
        self._rule_classes: Sequence[type[Rule]] = (
            ALL_RULES if rule_classes is None else rule_classes
        )
        self.start_wait = settings.gateway.start_wait if start_wait is None else start_wait
        """How long to keep retrying an unreachable gateway at start (0: forever); default
        `gateway.start_wait`."""
        self.rest: RestClient | None = None
        self.engine: Engine | None = None
        self.feed: GatewayFeed | None = None
        self.notifier: Notifier | None = None
        self.history: DailyHistory | None = None
        self.times = StartTimes()
        self._freezer: asyncio.Task[None] | None = None
        self.socket = socket_path(settings)
        """Where the control API answers (with `control`)."""
        self._control_wanted = control
        self.control: ControlServer | None = None
        self._lock: EngineLock | None = None

    async def start(self) -> Engine:
        """Log in, open the engine, connect the hubs. Raises StartError with the reason."""
        began = time.monotonic()
        key = self._api_key if self._api_key is not None else self._read_key()
        if not self.settings.gateway.username:
            raise StartError(
                "no gateway username: set gateway.username or RISKMAN_GATEWAY__USERNAME"
            )
        # One engine per database, checked before anything else (before the login).
        lock = EngineLock(lock_path(self.settings))
        try:
            lock.acquire(self.socket)
        except EngineRunning as exc:
            raise StartError(str(exc)) from None
        except OSError as exc:
            raise StartError(f"cannot lock {lock.path}: {exc.strerror}") from None
        self._lock = lock
        try:
            self.rest = RestClient(self.settings.gateway, key, clock=self.clock)
            # The database first: a corrupt or unusable file is reported at once, not after
            # minutes of retrying an unreachable gateway.
            self.engine = await Engine.open(
                self.settings, self.rest, clock=self.clock, rule_classes=self._rule_classes
            )
            if self._control_wanted:
                await self._serve_control(self.engine)
            await self._login()
            self.times.logged_in = time.monotonic() - began
            await self.engine.start()
            self.notifier = Notifier.for_engine(self.engine)
            if self.notifier is not None:
                self.notifier.start()
            self.history = DailyHistory(self.engine, self.notifier)
            self.times.engine_ready = time.monotonic() - began
            engine = self.engine
            # The accounts in force (an account dropped from the file stays guarded until
            # the daily reset), not the file's list.
            if not engine.settings.account_ids:
                await self._guard_active_accounts()
            else:
                await self._note_unguarded()
            self.feed = GatewayFeed(
                self.rest,
                self.settings.gateway,
                engine,
                engine.settings.account_ids,
                self.clock,
                quote_stale_after=lambda: engine.settings.quotes.stale_after,
            )
            self.engine.quote_subscriptions = self.feed
            await self.feed.start()
            self._freezer = asyncio.get_running_loop().create_task(
                self._freeze_heap_when_armed(self.feed), name="riskman-gc-freeze"
            )
        except BaseException:
            await self.stop()
            raise
        return self.engine

    async def wait_armed(self, timeout: float | None = None) -> bool:
        """Wait until the user hub is connected, subscribed and reconciled."""
        if self.feed is None:
            return False
        began = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await self.feed.wait_trusted()
        except TimeoutError:
            return False
        if self.times.armed is None:
            self.times.armed = (self.times.engine_ready or 0.0) + time.monotonic() - began
        return True

    @property
    def phase(self) -> str:
        """starting (logging in, restoring state) or running (routing events)."""
        return "running" if self.engine is not None and self.engine.started else "starting"

    async def stop(self) -> None:
        """Stop everything, flushing state; safe to call more than once."""
        feed, engine, rest, notifier = self.feed, self.engine, self.rest, self.notifier
        control, lock = self.control, self._lock
        self.feed = self.engine = self.rest = self.notifier = None
        self.control = self._lock = None
        if self._freezer is not None:
            self._freezer.cancel()
            self._freezer = None
        try:
            if control is not None:
                await control.stop()
            if feed is not None:
                await feed.stop()
            if self.history is not None:
                await self.history.close()
                self.history = None
            if notifier is not None:
                await notifier.stop()
        finally:
            try:
                if engine is not None:
                    await engine.close()
            finally:
                try:
                    if rest is not None:
                        await rest.aclose()
                finally:
                    if lock is not None:
                        lock.release()

    # --- internals -----------------------------------------------------------------------

    async def _serve_control(self, engine: Engine) -> None:
        control = ControlServer(self.settings, engine, self.socket, phase=lambda: self.phase)
        try:
            await control.start()
        except SocketInUse as exc:
            raise StartError(str(exc)) from None
        except ValueError as exc:
            raise StartError(str(exc)) from None
        except OSError as exc:
            raise StartError(
                f"cannot open the control socket {self.socket}: {exc.strerror or exc}"
            ) from None
        self.control = control

    async def _freeze_heap_when_armed(self, feed: GatewayFeed) -> None:
        """Take everything alive once armed (modules, config, the screens, the restored state)
        out of the garbage collector's full collections, once per process.

        A full collection walks every tracked object: with the Textual app loaded that is a
        pause of tens of milliseconds, a few times a minute, and an event arriving meanwhile
        waits for it. Frozen objects are still freed normally when their last reference goes;
        the collection before the freeze means no garbage is frozen with them.
        """
        global _heap_frozen
        await feed.wait_trusted()
        await asyncio.sleep(FREEZE_AFTER)
        if _heap_frozen:
            return
        _heap_frozen = True
        gc.collect()
        gc.freeze()

    def _read_key(self) -> str:
        try:
            key = self.settings.api_key_value()
        except OSError as exc:
            raise StartError(f"cannot read the API key file: {exc.strerror}") from None
        if not key:
            raise StartError(
                "no API key: set RISKMAN_GATEWAY__API_KEY or gateway.api_key_file (mode 0600)"
            )
        return key

    async def _login(self) -> None:
        assert self.rest is not None
        deadline = None if self.start_wait <= 0 else self.clock.monotonic() + self.start_wait
        backoff = Backoff(self.clock, base=2.0, maximum=30.0, jitter=(0.8, 1.2))
        attempt = 0
        url = self.settings.gateway.api_url
        while True:
            attempt += 1
            try:
                await self.rest.login()
                return
            except AuthError as exc:
                raise StartError(f"the gateway refused the login at {url}: {exc}") from None
            except (GatewayUnavailable, RateLimited) as exc:
                delay = backoff.delay(attempt)
                if deadline is not None and self.clock.monotonic() + delay > deadline:
                    raise StartError(f"cannot reach the gateway at {url}: {exc}") from None
                log.warning(
                    "gateway at %s unreachable (attempt %d: %s); retrying in %.0f s",
                    url,
                    attempt,
                    exc,
                    delay,
                )
                await self.clock.sleep(delay)
            except GatewayError as exc:
                raise StartError(f"login at {url} failed: {exc}") from None

    async def _note_unguarded(self) -> None:
        """The gateway's other accounts are shown as NOT GUARDED (issue 13)."""
        assert self.rest is not None and self.engine is not None
        try:
            accounts = await self.rest.search_accounts(only_active=True)
        except GatewayError as exc:
            log.warning("could not list the gateway's accounts: %s", exc)
            return
        self.engine.note_reported(accounts)
        others = [a for a in accounts if not self.engine.is_guarded(a.id)]
        if others:
            log.warning(
                "NOT GUARDED (not in accounts:): %s",
                ", ".join(f"{a.name} ({a.id})" for a in others),
            )

    async def _guard_active_accounts(self) -> None:
        assert self.rest is not None and self.engine is not None
        accounts = await self.rest.search_accounts(only_active=True)
        if not accounts:
            log.warning("the gateway reports no active account to guard")
        names = ", ".join(f"{a.name} ({a.id})" for a in accounts)
        log.info("guarding every active account: %s", names or "none")


class RuntimeSource:
    """The in-process interface's engine source in production: log in, open the engine,
    connect the hubs."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def where(self) -> str:
        return f"the gateway at {self.runtime.settings.gateway.api_url}"

    async def start(self) -> Engine:
        return await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()
