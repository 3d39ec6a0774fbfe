"""The engine: the core modules wired together behind one object.

The same `Engine` runs headless (`riskman --no-ui`) and inside the Textual app. It is the
`EventSink` the gateway feed pushes into; it publishes small change events to subscribers and
builds immutable snapshots on request. Plain asyncio: no Textual, no Rich.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path

from riskman.calendar import HolidayCalendar, ResetSchedule
from riskman.config import Settings, _parse_seconds
from riskman.core.clock import Clock, SystemClock
from riskman.core.intents import ModifyStop, PlaceStop, Plan
from riskman.core.locks import LockKind, Lockout, Unlock
from riskman.core.models import Account, Position
from riskman.core.ports import (
    AccountEvent,
    AccountSnapshot,
    GatewayEvent,
    GatewayPort,
    OrderEvent,
    PositionEvent,
    QuoteEvent,
    QuoteSubscriptions,
    TradeEvent,
)
from riskman.core.rules import Rule, RuleContext
from riskman.core.views import (
    AccountChanged,
    AccountView,
    Breach,
    EnforcementRecord,
    EngineChange,
    EngineSnapshot,
    FeedHealth,
    LockoutChange,
    LockView,
    OrderLine,
    OrderView,
    Pending,
    PendingChange,
    PositionView,
    ResetDone,
    RuleView,
    UnlockView,
)
from riskman.engine.actions import EnforcementActions
from riskman.engine.commitment import (
    ANCHOR_NAME,
    OUTSIDE,
    CommitmentStore,
    commit,
    schedule_of,
    with_committed,
    without_pending,
)
from riskman.engine.contracts import ContractCache
from riskman.engine.durable import DurableWriter
from riskman.engine.fills import SETTLE_AFTER
from riskman.engine.limit_warnings import LimitWarnings
from riskman.engine.lockouts import LockoutManager
from riskman.engine.pnl import PnlTracker
from riskman.engine.quotes import QuoteTracker
from riskman.engine.reports import BreachReports
from riskman.engine.resets import ResetScheduler
from riskman.engine.router import (
    CheckEvent,
    EventRouter,
    PositionsSnapshot,
    ReconcileEvent,
    RouterEvent,
    SettleEvent,
    TimerEvent,
)
from riskman.engine.state import StateManager
from riskman.engine.timers import TimerManager
from riskman.engine.trade_counter import TradeCounter
from riskman.engine.unlocks import MIN_REASON, UnlockRequest, UnlockRequests
from riskman.storage.db import Database, to_db_time
from riskman.symbols import display_symbol, root_of
from riskman.yamlfile import parse_hhmm

log = logging.getLogger(__name__)

SELF_LOCK = "SELF"
"""The rule id of a lock the trader set on himself ("lock me out"): it ends only on time."""

Listener = Callable[[EngineChange], None]
AUDIT_CALLER: ContextVar[int | None] = ContextVar("riskman_audit_caller", default=None)
"""The uid an admin change is audited under: the control API sets its caller's (from
SO_PEERCRED) around each admin call; otherwise the change is this process's own."""
LOG_KEEP = 500
HISTORY_KEEP = 720
HISTORY_EVERY = 5.0
BACKGROUND_WAIT = 0.25
"""Seconds background work (fill and lock writes, quote subscription changes) waits for the
enforcement actions in flight before it takes the loop anyway (issue 16: a breach's close
goes out first)."""
VIEW_REUSE = 0.9
"""Seconds an unchanged account's view is reused by `snapshot()` (under the terminal's 1 s
forced redraw, so what moves with time alone is as fresh as before)."""


_SNAPSHOTS = (PositionsSnapshot, ReconcileEvent)


class BurstQueue(asyncio.Queue[RouterEvent]):
    """The engine's queue: first in, first out, except where a fill's events wait together:
    its position update goes first, then its trade, then the order updates queued before them.

    The gateway sends a fill as its order update, trade, position update and account update,
    back to back. The position update of an addition is taken at once and gated (issue 11: the
    engine's view is the same in any order of a fill's events, the property test in
    tests/engine/test_fill_order.py), so it decides a breach with the least work in front of it
    (issue 16); the trade's bookkeeping and rules follow, and a lock it sets is enforced then.
    Order updates only move the order book. A position update overtakes only order updates and
    the one trade of its own contract before it; a trade overtakes only order updates; neither
    overtakes a working order of its contract; nothing overtakes an account update, a
    snapshot, a timer or a quote (`asyncio.Queue`'s own extension point, as `PriorityQueue`
    uses it).
    """

    _queue: deque[RouterEvent]

    def _get(self) -> RouterEvent:
        queue = self._queue
        kind = type(queue[0])
        if kind is not OrderEvent and kind is not TradeEvent:
            return queue.popleft()
        working: set[tuple[int, str]] = set()
        trade: TradeEvent | None = None
        trade_at = 0
        for index, event in enumerate(queue):
            if type(event) is OrderEvent:
                if event.order.status.is_working:
                    working.add((event.order.account_id, event.order.contract_id))
                continue
            if type(event) is not TradeEvent and type(event) is not PositionEvent:
                break
            contract = _contract_of(event)
            if contract in working:
                # A working order of that contract waits (the market order this fill fills,
                # say): routed after its own fill, the lockout gate would see an order placed
                # while a lock the fill set is in force, and cancel it.
                break
            if isinstance(event, TradeEvent):
                if trade is not None:
                    break  # trades keep their order: a second one ends the search
                trade, trade_at = event, index
                continue
            if trade is not None and _contract_of(trade) != contract:
                break  # another contract's position update does not pass this trade
            del queue[index]
            return event
        if trade is not None:
            del queue[trade_at]
            return trade
        return queue.popleft()


def _contract_of(event: RouterEvent) -> tuple[int, str]:
    if isinstance(event, TradeEvent):
        return event.trade.account_id, event.trade.contract_id
    assert isinstance(event, PositionEvent)
    return event.position.account_id, event.position.contract_id


def load_calendar(settings: Settings) -> HolidayCalendar:
    path = Path(settings.holidays_file)
    return HolidayCalendar.load(path) if path.exists() else HolidayCalendar()


class RuleStateStore:
    """The rules' persistent state, one payload per (rule, account), in the `rule_state` table."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def load_rule_state(self, rule_id: str) -> dict[int, str]:
        rows = await self._db.fetchall(
            "SELECT account_id, payload FROM rule_state WHERE rule = ?", (rule_id,)
        )
        return {row["account_id"]: row["payload"] for row in rows}

    async def save_rule_state(self, rule_id: str, account_id: int, payload: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO rule_state (rule, account_id, payload, updated) "
            "VALUES (?, ?, ?, ?)",
            (rule_id, account_id, payload, to_db_time(self._clock.now())),
        )

    def defer_rule_state(self, rule_id: str, account_id: int, payload: str) -> None:
        self._db.defer(
            "INSERT OR REPLACE INTO rule_state (rule, account_id, payload, updated) "
            "VALUES (?, ?, ?, ?)",
            (rule_id, account_id, payload, to_db_time(self._clock.now())),
        )


class Engine:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        gateway: GatewayPort,
        *,
        clock: Clock | None = None,
        calendar: HolidayCalendar | None = None,
        rule_classes: Sequence[type[Rule]],
    ) -> None:
        self.settings = settings
        """The settings in force (what the rules read): see `apply_settings`."""
        self.desired = settings
        """The settings last proposed (file, environment, admin); looser parts wait."""
        self.pending: tuple[Pending, ...] = ()
        self.pending_news: list[PendingChange] = []
        """The loosenings found at start (file or environment changed outside riskman), for
        whoever subscribes after `start()` (the notifier)."""
        self._committed_day: date | None = None
        """The trading day the settings in force were committed for."""
        self.commitments = CommitmentStore(db, settings.state_dir / ANCHOR_NAME)
        self.db = db
        self.gateway = gateway
        self.clock: Clock = clock or SystemClock()
        self.calendar = calendar if calendar is not None else load_calendar(settings)
        self._schedule = ResetSchedule(settings.daily_reset, settings.zone)
        self.timers = TimerManager(self.clock)
        self.lockouts = LockoutManager(db, self.clock, self.timers, self._on_lock_change)
        self.state = StateManager(db, self.clock)
        self.quotes = QuoteTracker(self.clock, settings.quotes.stale_after)
        self.contracts = ContractCache(db, gateway, self.clock)
        self.pnl = PnlTracker(
            db, self.clock, lambda: self._schedule, self.state, self.quotes, self.contracts
        )
        self.counter = TradeCounter(db, self.clock)
        self.actions = EnforcementActions(
            gateway,
            self.state,
            self.clock,
            db,
            settings.enforcement,
            self._on_record,
            self._positions_seen,
            lambda account_id: self.submit_check("after enforcement", account_id),
        )
        self.resets = ResetScheduler(
            db, self.clock, self._schedule, self.calendar, self._on_reset, self._on_reset_done
        )
        self.context = RuleContext(
            settings=lambda: self.settings,
            clock=self.clock,
            store=RuleStateStore(db, self.clock),
            state=self.state,
            pnl=self.pnl,
            quotes=self.quotes,
            contracts=self.contracts,
            counter=self.counter,
            lockouts=self.lockouts,
            timers=self.timers,
            reset_schedule=lambda: self._schedule,
            calendar=lambda: self.calendar,
            fire_timer=self._fire_rule_timer,
        )
        self.rules: list[Rule] = [cls(self.context) for cls in rule_classes]
        self.writer = DurableWriter(wait_turn=lambda: self.actions.quiet(BACKGROUND_WAIT))
        self.unlocks = UnlockRequests(db, self.clock, self._unlock_due)
        self.router = EventRouter(
            state=self.state,
            lockouts=self.lockouts,
            pnl=self.pnl,
            quotes=self.quotes,
            counter=self.counter,
            actions=self.actions,
            rules=self.rules,
            is_guarded=self.is_guarded,
            on_state_change=self._account_changed,
            on_positions_changed=self._positions_changed,
            ensure_contract=self._ensure_contract,
            writer=self.writer,
            on_plan=self._on_plan,
            settle_later=self._settle_later,
            reread_positions=self._reread_positions,
            let_actions_start=self._let_actions_start,
        )
        self._rereads: dict[int, asyncio.Task[None]] = {}
        self.guarded: set[int] | None = set(settings.account_ids) or None
        self.reported: dict[int, Account] = {}
        self.quote_subscriptions: QuoteSubscriptions | None = None
        self._quotes_wanted: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[RouterEvent] = BurstQueue()
        self._pending_quotes: dict[str, QuoteEvent] = {}
        self._queued_sizes: dict[tuple[int, str], deque[int]] = {}
        """The sizes of the position updates still queued, per (account, contract), and the
        number of queued REST snapshots (see `_consume`)."""
        self._snapshots_queued = 0
        self._consumer: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self.warnings = LimitWarnings(
            settings=lambda: self.settings,
            rules=self.rules,
            clock=self.clock,
            db=db,
            trading_day=lambda: self.resets.trading_day(),
            accounts=lambda: sorted({a.id for a in self.state.accounts() if self.is_guarded(a.id)}),
            publish=self._publish,
            realized=lambda account_id: self.pnl.get_daily_realized_pnl(account_id),
        )
        self.subscribe(self.warnings.on_change)
        self.reports = BreachReports(
            rules=self.rules,
            state=self.state,
            quotes=self.quotes,
            pnl=self.pnl,
            lockouts=self.lockouts,
            clock=self.clock,
            db=db,
            trading_day=lambda: self.resets.trading_day(),
        )
        self.subscribe(self.reports.on_change)
        self._log: deque[EnforcementRecord] = deque(maxlen=LOG_KEEP)
        self._health: dict[str, FeedHealth] = {}
        self._history: dict[int, deque[float]] = {}
        self._history_at: dict[int, float] = {}
        self._views: dict[int, tuple[float, AccountView]] = {}
        self.started = False
        add_settler = getattr(self.clock, "add_settler", None)
        if add_settler is not None:  # a FakeClock: let tests see each step complete
            add_settler(self.settled)

    async def settled(self) -> None:
        """Wait until routed events and background writes are done (never for the network)."""
        if self._consumer is not None and not self._consumer.done():
            await self._queue.join()
        await self.writer.idle()
        await self.resets.settled()
        await self.lockouts.settled()
        await self.unlocks.settled()

    # --- life cycle ----------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: Settings,
        gateway: GatewayPort,
        *,
        clock: Clock | None = None,
        calendar: HolidayCalendar | None = None,
        rule_classes: Sequence[type[Rule]],
    ) -> Engine:
        """Open the database of `settings` and build an engine on it (call `close()`)."""
        db = await Database.open(settings.database)
        try:
            return cls(
                settings, db, gateway, clock=clock, calendar=calendar, rule_classes=rule_classes
            )
        except BaseException:
            await db.close()
            raise

    async def start(self) -> None:
        """Restore state from the database, catch up a missed reset, start routing."""
        await self._commit_at_start()
        await self.state.restore()
        await self.contracts.restore()
        await self.lockouts.restore()
        await self.unlocks.restore()
        await self.pnl.restore()
        await self.counter.restore(self.resets.day_start())
        await self._load_log()
        # Rules restore their state before a missed reset is caught up, so the reset works on
        # the stored state (e.g. RULE-014's end-of-day high), not on an empty one.
        for rule in self.rules:
            try:
                await rule.restore()
            except Exception:
                log.exception("%s could not restore its state", rule.id)
        await self.warnings.restore()
        await self.reports.restore()
        await self.resets.start()
        self.writer.start()
        self._consumer = asyncio.get_running_loop().create_task(
            self._consume(), name="riskman-router"
        )
        self.started = True
        self.submit_check("start")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop routing, give in-flight enforcement `grace` seconds, persist everything."""
        self.resets.stop()
        self.warnings.close()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        await self.writer.close()
        if self._quotes_wanted is not None:
            self._quotes_wanted.cancel()
            self._quotes_wanted = None
        try:
            await asyncio.wait_for(self.actions.wait_idle(grace), grace)
        except TimeoutError:
            log.warning("enforcement still in flight at shutdown: %s", self.actions.in_flight())
        await self.actions.cancel_all_tasks()
        for task in self._rereads.values():
            task.cancel()
        await asyncio.gather(*self._rereads.values(), return_exceptions=True)
        self.timers.cancel_all()
        self.reports.finish_all()
        self.unlocks.cancel_all()
        await self.lockouts.commit()
        await self.db.flush()
        self.started = False

    async def close(self) -> None:
        """Stop (if started) and close the database."""
        try:
            if self.started:
                await self.stop()
        finally:
            await self.db.close()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued event has been routed and stored (tests, benchmarks)."""
        async with asyncio.timeout(timeout):
            await self._queue.join()
            await self.writer.idle()

    # --- EventSink -----------------------------------------------------------------------

    def submit(self, event: GatewayEvent | RouterEvent) -> None:
        if isinstance(event, QuoteEvent):
            # Quotes only matter as the latest price: under load, a newer quote for the same
            # contract replaces one still waiting (its missing fields merged), so the queue
            # cannot grow without bound. Fills and positions are never dropped.
            pending = self._pending_quotes.get(event.contract_id)
            if pending is not None:
                self._pending_quotes[event.contract_id] = (
                    _merge_quotes(pending, event) if event.source == "hub" else event
                )
                return
            self._pending_quotes[event.contract_id] = event
        if isinstance(event, PositionEvent):
            key = (event.position.account_id, event.position.contract_id)
            self._queued_sizes.setdefault(key, deque()).append(event.position.size)
        elif isinstance(event, _SNAPSHOTS):
            self._snapshots_queued += 1
        self._queue.put_nowait(event)

    async def reconcile(self, snapshot: AccountSnapshot) -> None:
        self._snapshots_queued += 1
        self._queue.put_nowait(ReconcileEvent(snapshot))

    def feed_health(self, health: FeedHealth) -> None:
        self._health[health.hub] = health  # (the feed logs its own state changes)
        self._publish(health)

    def trading_day_start(self) -> datetime:
        return self.resets.day_start()

    def fills_since(self) -> datetime:
        """Where a reconcile reads fills from: the start of the *previous* trading day.

        Fills made while riskman was down across a daily reset then still reach the database,
        and a cooldown one of them started (RULE-007 runs from the fill's own time) still
        holds after the reset. Fills already counted are recognised and skipped (MOD-005
        keeps today's and yesterday's fill ids).
        """
        today = self.resets.trading_day()
        return self._schedule.day_start(today - timedelta(days=1))

    def quote_contracts(self) -> frozenset[str]:
        return self.state.contracts_with_positions()

    def submit_check(self, reason: str, account_id: int | None = None) -> None:
        self._queue.put_nowait(CheckEvent(account_id, reason, self.clock.monotonic()))

    async def process(self, event: GatewayEvent | RouterEvent) -> None:
        """Route one event now, bypassing the queue, and wait for what it stores (tests)."""
        await self.router.handle(event)
        await self.writer.idle()

    def is_guarded(self, account_id: int) -> bool:
        return self.guarded is None or account_id in self.guarded

    def note_reported(self, accounts: Sequence[Account]) -> None:
        """The accounts the gateway reports: the ones riskman does not guard are shown as
        NOT GUARDED (never under ENFORCING)."""
        self.reported = {account.id: account for account in accounts}
        self._account_changed(None)

    # --- subscribers ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def _publish(self, change: EngineChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("engine subscriber failed")

    # --- admin operations ----------------------------------------------------------------

    async def request_unlock(
        self, account_id: int, reason: str, *, lock_id: int | None = None, actor: str = "admin"
    ) -> UnlockRequest:
        """Ask for a lock (or all of an account's) to end after `admin.unlock_delay`.

        Needs a real reason (at least MIN_REASON characters); audited; can be withdrawn. A
        lock the trader set on himself cannot be cleared before its end.
        """
        reason = reason.strip()
        if len(reason) < MIN_REASON:
            raise ValueError(
                f"a reason of at least {MIN_REASON} characters is required to clear a lockout"
            )
        locks = [
            lock
            for lock in self.lockouts.get_lockout_info(account_id)
            if lock_id is None or lock.id == lock_id
        ]
        if not locks:
            raise ValueError(f"account {account_id} has no such lock")
        if all(lock.rule == SELF_LOCK for lock in locks):
            raise ValueError("a lock the trader set on himself cannot be cleared before its end")
        delay = self.settings.admin.unlock_delay
        request = await self.unlocks.ask(account_id, lock_id, reason, delay, actor)
        what = "every lock" if lock_id is None else f"lock {lock_id}"
        await self.audit(
            "unlock_requested",
            f"account {account_id} {what}",
            old=None,
            new=f"ends at {request.due.isoformat(timespec='seconds')}",
            reason=reason,
        )
        log.warning(
            "account=%s unlock of %s requested by %s: takes effect at %s (%s)",
            account_id,
            what,
            actor,
            request.due.isoformat(timespec="seconds"),
            reason,
        )
        self._account_changed(account_id)
        return request

    async def lock_me_out(self, spec: str, account_id: int | None = None) -> list[Lockout]:
        """The trader locks himself out, without the password (TopstepX's Lock-Out).

        `spec`: a duration (15m, 30m, 1h, ...), `session` (until the trading session ends),
        `reset` (until the daily reset) or a local time HH:MM. Every guarded account when
        `account_id` is None. It flattens, cancels working orders and locks; being stricter,
        nobody can clear it before its end.
        """
        until, unlock, words = self._self_lock_end(spec.strip().lower())
        if account_id is not None:
            targets = [account_id]
        elif self.guarded is not None:
            targets = sorted(self.guarded)
        else:
            targets = sorted({a.id for a in self.state.accounts()})
        if not targets:
            raise ValueError("no guarded account to lock")
        reason = f"locked by the trader {words}"
        locks = []
        for target in targets:
            lock = await self.lockouts.set_lockout(
                target, reason, until, rule=SELF_LOCK, unlock=unlock
            )
            if lock is None:  # a longer self-lock already holds
                held = [k for k in self.lockouts.get_lockout_info(target) if k.rule == SELF_LOCK]
                locks += held
                continue
            locks.append(lock)
            await self.audit(
                "lock_me_out", f"account {target}", old=None, new=reason, reason="by the trader"
            )
            log.warning("account=%s %s: flattening and cancelling", target, reason)
            self.submit_check("lock me out", target)
        return locks

    def _self_lock_end(self, spec: str) -> tuple[datetime, Unlock, str]:
        now = self.clock.now()
        zone = self.settings.zone
        if spec == "reset":
            until = self.resets.next_reset(now)
            return until, Unlock.RESET, f"until the daily reset ({_local(until, zone)})"
        if spec == "session":
            cfg = self.settings.rules.session_block_outside
            window = self.context.session(cfg).current_or_next(now) if cfg.enabled else None
            if window is None or not window.contains(now):
                raise ValueError("no trading session is open now (use reset or a time)")
            return window.end, Unlock.TIME, f"until the session ends ({_local(window.end, zone)})"
        if re.fullmatch(r"\d{1,2}:\d{2}", spec):
            try:
                at = parse_hhmm(spec)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            local = now.astimezone(zone)
            until = datetime.combine(local.date(), at, tzinfo=zone)
            if until <= local:
                until += timedelta(days=1)
            until = until.astimezone(UTC)
            return until, Unlock.TIME, f"until {_local(until, zone)}"
        try:
            seconds = _parse_seconds(spec)
        except ValueError:
            raise ValueError(
                f"{spec!r}: say how long (15m, 30m, 1h), session, reset, or a time HH:MM"
            ) from None
        if seconds < 60:
            raise ValueError("a lock of less than a minute is not a lock")
        until = now + timedelta(seconds=seconds)
        return until, Unlock.TIME, f"until {_local(until, zone)}"

    async def withdraw_unlock(self, request_id: int, *, actor: str = "admin") -> None:
        request = await self.unlocks.withdraw(request_id)
        await self.audit(
            "unlock_withdrawn",
            f"account {request.account_id} request {request_id}",
            old=request.reason,
            new="withdrawn",
            reason=f"by {actor}",
        )
        self._account_changed(request.account_id)

    async def _unlock_due(self, request: UnlockRequest) -> None:
        await self._clear_now(
            request.account_id, request.reason, lock_id=request.lock_id, actor=request.actor
        )

    async def _clear_now(
        self, account_id: int, reason: str, *, lock_id: int | None = None, actor: str = "admin"
    ) -> list[int]:
        """Clear a lock (or all of an account's) at once: audited. Only an unlock request
        that fell due comes here (and tests)."""
        cleared = await self.lockouts.clear_where(
            lambda lock: (
                lock.account_id == account_id
                and (lock_id is None or lock.id == lock_id)
                and lock.rule != SELF_LOCK
            ),
            by=actor,
            reason=reason.strip(),
        )
        for lock in cleared:
            await self.audit(
                "clear_lockout",
                f"account {account_id} {lock.rule}" + (f" {lock.symbol}" if lock.symbol else ""),
                old=f"{lock.kind.value}: {lock.reason}",
                new="cleared",
                reason=reason.strip(),
            )
        self._account_changed(account_id)
        return [lock.id for lock in cleared]

    async def audit(
        self, action: str, target: str, *, old: str | None, new: str | None, reason: str = ""
    ) -> None:
        uid = AUDIT_CALLER.get()
        await self.db.execute(
            "INSERT INTO admin_audit (ts, action, target, old_value, new_value, reason, uid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                to_db_time(self.clock.now()),
                action,
                target,
                old,
                new,
                reason,
                os.getuid() if uid is None else uid,
            ),
        )

    async def apply_settings(self, settings: Settings, *, source: str = "admin") -> list[Pending]:
        """Propose new settings (admin save, control API): what is stricter applies at once,
        what is looser waits for the next daily reset. Returns what now waits."""
        self.desired = settings
        effective, pending = commit(self.settings, settings)
        await self._use(effective)
        before = self.pending
        known = {(p.account, p.key, repr(p.new)) for p in before}
        self.pending = self._stamp(pending)
        for change in self.pending:
            if (change.account, change.key, repr(change.new)) not in known:
                log.info("pending (%s): %s", source, change.describe())
                self._publish(PendingChange("pending", change))
        still = {(p.account, p.key) for p in self.pending}
        for change in before:
            if (change.account, change.key) not in still:
                self._publish(PendingChange("cancelled", change))
        await self._save_commitment(source)
        return list(self.pending)

    async def cancel_pending(
        self, account_id: int | None, key: str, *, actor: str = "admin"
    ) -> None:
        """Give up a pending loosening (an admin may; nobody can hurry one)."""
        change = next((p for p in self.pending if p.account == account_id and p.key == key), None)
        if change is None:
            raise ValueError(f"nothing is pending for {key}")
        desired = without_pending(self.desired, self.settings, account_id, key)
        await self.apply_settings(desired, source="cancel")
        target = key if account_id is None else f"account {account_id} {key}"
        await self.audit(
            "cancel_pending",
            target,
            old=repr(change.new),
            new=repr(change.old),
            reason=f"by {actor}",
        )

    async def _use(self, settings: Settings, *, check: bool = True) -> None:
        """Put settings in force (already committed to); `check`: evaluate every account now
        (at start the start's own check does)."""
        old = self.settings
        self.settings = settings
        self.quotes.stale_after = settings.quotes.stale_after
        self.actions.config = settings.enforcement
        self.guarded = set(settings.account_ids) or None
        if settings.holidays_file != old.holidays_file or settings.timezone != old.timezone:
            self.calendar = load_calendar(settings)
        if (settings.daily_reset, settings.timezone) != (old.daily_reset, old.timezone):
            self._schedule = ResetSchedule(settings.daily_reset, settings.zone)
        self.resets.reconfigure(self._schedule, self.calendar)
        await self.lockouts.clear_where(
            lambda lock: (
                lock.unlock is Unlock.CONFIG
                and lock.symbol is not None
                and (
                    not settings.rules_for(lock.account_id).symbol_blocks.enabled
                    or lock.symbol not in settings.rules_for(lock.account_id).symbol_blocks.symbols
                )
            ),
            by="config",
            reason="symbol no longer blocked",
        )
        if check:
            self.submit_check("config")
        self._account_changed(None)

    def _stamp(self, pending: Sequence[Pending]) -> tuple[Pending, ...]:
        when = self.resets.next_reset(self.clock.now())
        return tuple(Pending(p.account, p.key, p.old, p.new, when) for p in pending)

    async def _save_commitment(self, why: str) -> None:
        now = self.clock.now()
        self._committed_day = self.resets.trading_day(now)
        await self.commitments.save(now, self._committed_day, self.settings, self.desired, why)

    async def _commit_at_start(self) -> None:
        """Compare the file + environment with the rules in force stored at the last run.

        Looser values wait for the reset (WARNING, audited as changed outside riskman),
        stricter ones apply. A new, empty database is said so: the rules in force then come
        from the anchor file beside the config, if riskman committed to any today.
        """
        desired = self.desired
        now = self.clock.now()
        stored = await self.commitments.latest()
        if not await self.commitments.has_rows():
            where = f"; the rules in force come from {stored.where}" if stored is not None else ""
            log.log(
                logging.WARNING if stored is not None else logging.INFO,
                "database %s is new and empty%s",
                self.db.path,
                where,
            )
            await self.audit(
                "new_database",
                str(self.db.path),
                old=None,
                new="new and empty",
                reason=where.removeprefix("; "),
            )
        effective, pending = desired, list[Pending]()
        if stored is not None:
            try:
                base = with_committed(desired, stored.in_force)
                today = schedule_of(stored.in_force).trading_day(now)
            except ValueError as exc:
                log.error("%s; the file's rules apply", exc)
            else:
                if today <= stored.trading_day:
                    effective, pending = commit(base, desired)
                    try:
                        asked = with_committed(desired, stored.desired)
                        known = {(p.account, p.key, repr(p.new)) for p in commit(base, asked)[1]}
                    except ValueError:
                        known = set()
                    for change in self._stamp(pending):
                        if (change.account, change.key, repr(change.new)) in known:
                            continue
                        log.warning("%s: %s", OUTSIDE, change.describe())
                        self.pending_news.append(PendingChange("pending", change))
                        self._publish(self.pending_news[-1])
                        target = (
                            change.key
                            if change.account is None
                            else (f"account {change.account} {change.key}")
                        )
                        await self.audit(
                            OUTSIDE,
                            target,
                            old=repr(change.old),
                            new=repr(change.new),
                            reason="waits for the reset",
                        )
        await self._use(effective, check=False)
        self.pending = self._stamp(pending)
        await self._save_commitment("start")

    def reload_calendar(self) -> None:
        self.calendar = load_calendar(self.settings)
        self.resets.reconfigure(self._schedule, self.calendar)
        self.submit_check("holidays")

    # --- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot:
        now = self.clock.now()
        accounts = sorted(
            {a.id for a in self.state.accounts() if self.is_guarded(a.id)}
            | {lock.account_id for lock in self.lockouts.all_active()}
            | set(self.state.position_accounts())
            | (self.guarded or set())
            | set(self.reported)
        )
        views = tuple(self._view_of(account_id, now) for account_id in accounts)
        stale = tuple(
            sorted(
                c for c in self.state.contracts_with_positions() if self.quotes.is_quote_stale(c)
            )
        )
        session_open, session_change = self._session_summary(now)
        user = self._health.get("user")
        return EngineSnapshot(
            at=now,
            trading_day=self.resets.trading_day(now),
            next_reset=self.resets.next_reset(now),
            session_open=session_open,
            session_change=session_change,
            accounts=views,
            user_feed=user,
            market_feed=self._health.get("market"),
            last_quote_age=self.quotes.last_update_age(),
            stale_contracts=stale,
            log=tuple(reversed(self._log)),
            armed=user is not None and user.trusted,
            pending=self.pending,
            timezone=self.settings.timezone,
            rest_priced=tuple(
                sorted(
                    c
                    for c in self.state.contracts_with_positions()
                    if (q := self.quotes.get(c)) is not None and q.source == "rest"
                )
            ),
        )

    def _view_of(self, account_id: int, now: datetime) -> AccountView:
        """The account's view: rebuilt when the account changed, else reused for VIEW_REUSE.

        A snapshot runs on the event loop at every redraw; building every account's view each
        time (rule statuses, open P&L, counts) took ~9 ms with 50 accounts, and an event that
        arrived meanwhile waited for it. Every change of an account's state goes through
        `_account_changed`, which drops its view at once.
        """
        at = self.clock.monotonic()
        cached = self._views.get(account_id)
        if cached is not None and at - cached[0] < VIEW_REUSE:
            return cached[1]
        view = self._account_view(account_id, now)
        self._views[account_id] = (at, view)
        return view

    def _account_view(self, account_id: int, now: datetime) -> AccountView:
        account = self.state.get_account(account_id) or self.reported.get(account_id)
        rules = self.settings.rules_for(account_id)
        locks = self.lockouts.get_lockout_info(account_id)
        realized = self.pnl.get_daily_realized_pnl(account_id)
        open_pnl = self.pnl.calculate_unrealized_pnl(account_id)
        total = realized + open_pnl.total
        if any(lock.kind is LockKind.LOCKOUT and lock.symbol is None for lock in locks):
            status = "LOCKED"
        elif any(lock.symbol is None for lock in locks):
            status = "COOLDOWN"
        else:
            status = "OK"
        if not self.is_guarded(account_id):
            status = "NOT GUARDED"
        top = next((lock for lock in locks if lock.symbol is None), None)
        positions = []
        for state in sorted(self.state.get_all_positions(account_id), key=lambda s: s.opened):
            quote = self.quotes.get(state.contract_id)
            positions.append(
                PositionView(
                    account_id=account_id,
                    contract_id=state.contract_id,
                    symbol=display_symbol(state.root),
                    side="LONG" if state.sign > 0 else "SHORT",
                    size=state.size,
                    average=state.position.average_price,
                    last=None if quote is None else quote.last,
                    open_pnl=self.pnl.position_pnl(state),
                    opened=state.opened,
                    has_stop=bool(self.state.protective_orders(account_id, state.contract_id)),
                    stale=self.quotes.is_quote_stale(state.contract_id),
                    quote_age=self.quotes.get_quote_age(state.contract_id),
                    price_source="hub" if quote is None else quote.source,
                )
            )
        orders = tuple(
            OrderView(
                order=OrderLine(
                    id=order.id,
                    account_id=order.account_id,
                    contract_id=order.contract_id,
                    type=order.type,
                    side=order.side,
                    size=order.size,
                    limit_price=order.limit_price,
                    stop_price=order.stop_price,
                ),
                symbol=display_symbol(root_of(order.contract_id)),
                protective=not self.state.increases_exposure(order) and order.type.is_stop,
            )
            for order in sorted(self.state.get_all_orders(account_id), key=lambda o: o.id)
        )
        freq = rules.trade_frequency_limit
        limits = (
            (freq.per_minute, freq.per_hour, freq.per_session)
            if freq.enabled
            else (None, None, None)
        )
        rule_views = []
        for rule in self.rules:
            enabled = rule.enabled(account_id)
            status_view = None
            if enabled:
                try:
                    status_view = rule.status(account_id)
                except Exception:
                    log.exception("%s status failed", rule.id)
            rule_views.append(RuleView(rule.id, rule.key, rule.title, enabled, status_view))
        return AccountView(
            account_id=account_id,
            name=account.name if account is not None else str(account_id),
            balance=None if account is None else account.balance,
            can_trade=None if account is None else account.can_trade,
            status=status,
            status_reason="" if top is None else f"{top.rule}: {top.reason}",
            realized=realized,
            open_pnl=open_pnl.total,
            open_complete=open_pnl.complete,
            total=total,
            loss_limit=rules.daily_realized_loss.limit
            if rules.daily_realized_loss.enabled
            else None,
            profit_target=rules.daily_realized_profit.target
            if rules.daily_realized_profit.enabled
            else None,
            counts=self.counter.get_trade_counts(account_id, now),
            count_limits=limits,
            locks=tuple(
                LockView(
                    lock.id,
                    lock.rule,
                    lock.kind.value,
                    lock.reason,
                    lock.symbol,
                    lock.until,
                    lock.unlock.value,
                )
                for lock in locks
            ),
            positions=tuple(positions),
            orders=orders,
            rules=tuple(rule_views),
            pnl_history=tuple(self._history.get(account_id, ())),
            unlocks=self._unlock_views(account_id, locks),
            guarded=self.is_guarded(account_id),
        )

    def _unlock_views(self, account_id: int, locks: Sequence[Lockout]) -> tuple[UnlockView, ...]:
        views = []
        for request in self.unlocks.open(account_id):
            rules = {lock.rule for lock in locks if request.lock_id in (None, lock.id)}
            views.append(
                UnlockView(
                    request.id,
                    request.lock_id,
                    request.due,
                    request.reason,
                    comes_back=any(self._still_breached(rule, account_id) for rule in rules),
                )
            )
        return tuple(views)

    def _still_breached(self, rule_id: str, account_id: int) -> bool:
        rule = next((r for r in self.rules if r.id == rule_id), None)
        if rule is None or not rule.enabled(account_id):
            return False
        try:
            used = rule.status(account_id).used
        except Exception:
            return False
        return used is not None and used >= 1.0

    def _session_summary(self, now: datetime) -> tuple[bool | None, datetime | None]:
        cfg = self.settings.rules.session_block_outside
        if not cfg.enabled:
            return None, None
        window = self.context.session(cfg).current_or_next(now)
        if window is None:
            return False, None
        if window.contains(now):
            return True, window.end
        return False, window.start

    def recent_log(self) -> list[EnforcementRecord]:
        return list(reversed(self._log))

    # --- internals -----------------------------------------------------------------------

    async def _consume(self) -> None:
        router = self.router
        while True:
            event = await self._queue.get()
            try:
                if isinstance(event, QuoteEvent):
                    event = self._pending_quotes.pop(event.contract_id, event)
                elif isinstance(event, PositionEvent):
                    self._dequeued(event)
                elif isinstance(event, _SNAPSHOTS):
                    self._snapshots_queued -= 1
                await router.handle(event)
            finally:
                self._queue.task_done()

    async def _let_actions_start(self) -> None:
        """Actions were just dispatched: let their first step put the request on the socket
        before anything else of the event (its breach report, the snapshot for the screens) or
        of the burst (the fill's position and account updates follow its trade at once) is
        routed (issue 16). Not while a queued position update or snapshot would change what an
        action sizes itself from: it then starts after those."""
        if not self._newer_positions_queued():
            await asyncio.sleep(0)

    def _dequeued(self, event: PositionEvent) -> None:
        key = (event.position.account_id, event.position.contract_id)
        sizes = self._queued_sizes.get(key)
        if sizes:
            sizes.popleft()
            if not sizes:
                del self._queued_sizes[key]

    def _newer_positions_queued(self) -> bool:
        """Is a queued event about to change a position the state shows now?"""
        if self._snapshots_queued:
            return True
        for (account_id, contract_id), sizes in self._queued_sizes.items():
            held = self.state.get_contract_count(account_id, contract_id)
            if any(size != held for size in sizes):
                return True
        return False

    def _fire_rule_timer(self, rule_id: str, account_id: int, name: str) -> None:
        self._queue.put_nowait(TimerEvent(rule_id, account_id, name, self.clock.monotonic()))

    def _on_plan(self, todo: Plan, event: object) -> None:
        """Each (account, rule) a plan acts for is a breach: published for the reports."""
        if not self._listeners:
            return
        seen: set[tuple[int, str]] = set()
        now = self.clock.now()
        trigger = describe_event(event)
        for intent in [*todo.locks, *todo.actions]:
            if isinstance(intent, ModifyStop | PlaceStop):  # RULE-012's automation
                continue
            key = (intent.account_id, intent.rule)
            if key not in seen:
                seen.add(key)
                self._publish(Breach(intent.rule, intent.account_id, intent.reason, now, trigger))

    def _on_record(self, record: EnforcementRecord) -> None:
        self._log.append(record)
        self._publish(record)

    def _on_lock_change(self, change: LockoutChange) -> None:
        self._publish(change)
        self._account_changed(change.lockout.account_id)
        if change.cleared_by is not None:
            log.info(
                "%s account=%s %s ended (%s)",
                change.lockout.rule,
                change.lockout.account_id,
                change.lockout.kind.value,
                change.cleared_by,
            )

    def _account_changed(self, account_id: int | None) -> None:
        if account_id is None:
            self._views.clear()
        else:
            self._views.pop(account_id, None)
            self._sample_history(account_id)
        self._publish(AccountChanged(account_id))

    def _sample_history(self, account_id: int) -> None:
        now = self.clock.monotonic()
        if now - self._history_at.get(account_id, -1e9) < HISTORY_EVERY:
            return
        self._history_at[account_id] = now
        total = self.pnl.get_daily_realized_pnl(account_id)
        total += self.pnl.calculate_unrealized_pnl(account_id).total
        self._history.setdefault(account_id, deque(maxlen=HISTORY_KEEP)).append(float(total))

    def _positions_changed(self) -> None:
        """Tell the feed which contracts need quotes, once the enforcement in flight is on
        its way (a position that opens over a limit is closed before the market hub is
        asked for its quotes; one pending update reads the set when it runs)."""
        if self.quote_subscriptions is None:
            return
        if self._quotes_wanted is not None and not self._quotes_wanted.done():
            return
        self._quotes_wanted = asyncio.get_running_loop().create_task(
            self._want_quotes(), name="riskman-want-quotes"
        )

    async def _want_quotes(self) -> None:
        await self.actions.quiet(BACKGROUND_WAIT)
        if self.quote_subscriptions is not None:
            self.quote_subscriptions.want_quotes(self.state.contracts_with_positions())

    def _ensure_contract(self, contract_id: str) -> None:
        if self.contracts.get(contract_id) is None:
            self.contracts.ensure(contract_id, lambda contract: self._contract_loaded(contract.id))

    def _contract_loaded(self, contract_id: str) -> None:
        for account_id in self.state.accounts_holding(contract_id):
            self.submit_check("contract loaded", account_id)

    def _settle_later(self, account_id: int, contract_id: str | None) -> None:
        """Route a `SettleEvent` once `SETTLE_AFTER` has passed (unless one is on its way)."""
        name = f"settle:{account_id}:{contract_id or ''}"
        if self.timers.deadline(name) is not None:
            return
        self.timers.start_timer_at(
            name,
            self.clock.now() + timedelta(seconds=SETTLE_AFTER),
            lambda: self._queue.put_nowait(
                SettleEvent(account_id, contract_id, self.clock.monotonic())
            ),
        )

    def _reread_positions(self, account_id: int) -> None:
        """Read the account's positions over REST (a fill's position update never came)."""
        running = self._rereads.get(account_id)
        if running is not None and not running.done():
            return

        async def reread() -> None:
            asked = self.clock.monotonic()
            try:
                positions = await self.gateway.search_open_positions(account_id, urgent=True)
            except Exception as exc:
                log.warning("re-reading the positions of %s failed: %s", account_id, exc)
                for contract_id in self.state.unsettled_contracts(account_id):
                    self._settle_later(account_id, contract_id)
                return
            self._positions_seen(account_id, positions, asked)

        self._rereads[account_id] = asyncio.get_running_loop().create_task(
            reread(), name=f"riskman-reread-{account_id}"
        )

    def _positions_seen(self, account_id: int, positions: Sequence[Position], asked: float) -> None:
        """A REST re-read of positions (during enforcement): let state catch up with it."""
        self._snapshots_queued += 1
        self._queue.put_nowait(PositionsSnapshot(account_id, tuple(positions), asked))

    async def _on_reset(self, ended: date, at: datetime, how: str) -> None:
        # A reset caught up at start (for a day before the commitment) lifts nothing.
        later = self._committed_day is None or self._schedule.trading_day(at) > self._committed_day
        if later and (self.pending or self.desired is not self.settings):
            for change in self.pending:
                log.info("at the reset: %s now in force", change.describe())
                self._publish(PendingChange("in_force", change))
            self.pending = ()
            await self._use(self.desired, check=False)  # the reset's own check follows
            await self._save_commitment("reset")
        await self.lockouts.clear_where(
            lambda lock: (
                lock.unlock is Unlock.RESET
                and (lock.until is None or lock.until <= at + timedelta(seconds=1))
            ),
            by="reset",
            reason=f"daily reset ({ended})",
        )
        accounts = sorted({a.id for a in self.state.accounts()} | (self.guarded or set()))
        await self.counter.reset_session(at, accounts)
        self.pnl.forget_before(ended)
        for rule in self.rules:
            try:
                await rule.on_reset(ended, at)
            except Exception:
                log.exception("%s failed at the daily reset", rule.id)
        self._history.clear()

    def _on_reset_done(self, ended: date, at: datetime, how: str) -> None:
        # Reported only once the reset is in reset_log (see ResetScheduler).
        self._publish(ResetDone(ended, at, how))
        if self.started:
            self.submit_check("reset")
        self._account_changed(None)

    async def _load_log(self) -> None:
        rows = await self.db.fetchall(
            "SELECT ts, account_id, rule, action, target, reason, result, detail, latency_ms "
            "FROM enforcement_log ORDER BY id DESC LIMIT ?",
            (LOG_KEEP,),
        )
        from riskman.storage.db import from_db_time

        for row in reversed(rows):
            self._log.append(
                EnforcementRecord(
                    from_db_time(row["ts"]) or self.clock.now(),
                    row["account_id"],
                    row["rule"],
                    row["action"],
                    row["target"],
                    row["reason"],
                    row["result"],
                    row["detail"],
                    row["latency_ms"],
                )
            )


def describe_event(event: object) -> str:
    """What triggered a breach, in words, for its report."""
    if isinstance(event, QuoteEvent):
        q = event.quote
        return (
            f"quote {event.contract_id}: last {q.last_price}, bid {q.best_bid}, "
            f"ask {q.best_ask} ({event.source})"
        )
    if isinstance(event, PositionEvent):
        p = event.position
        return f"position {p.contract_id}: {p.type.name} {p.size} @ {p.average_price}"
    if isinstance(event, TradeEvent):
        t = event.trade
        pnl = "opening" if t.profit_and_loss is None else f"P&L {t.profit_and_loss}"
        return (
            f"fill {t.id} {t.contract_id}: {t.side.name} {t.size} @ {t.price}, {pnl}, fees {t.fees}"
        )
    if isinstance(event, OrderEvent):
        o = event.order
        return f"order {o.id} {o.contract_id}: {o.type.name} {o.side.name} {o.size} {o.status.name}"
    if isinstance(event, AccountEvent):
        a = event.account
        return f"account {a.id}: balance {a.balance}, can trade {a.can_trade}"
    if isinstance(event, TimerEvent):
        return f"timer {event.name} of {event.rule}"
    if isinstance(event, CheckEvent):
        return f"check ({event.reason})"
    if isinstance(event, SettleEvent):
        what = f"position {event.contract_id}" if event.contract_id else "the balance"
        return f"{what} as the gateway reported it, once no fill was left to explain it"
    if isinstance(event, ReconcileEvent | PositionsSnapshot):
        return "reconcile with the gateway (REST)"
    return type(event).__name__


def _local(when: datetime, zone: tzinfo) -> str:
    return when.astimezone(zone).strftime("%H:%M %Z")


def _merge_quotes(older: QuoteEvent, newer: QuoteEvent) -> QuoteEvent:
    missing = {
        name: getattr(older.quote, name)
        for name in ("last_price", "best_bid", "best_ask")
        if getattr(newer.quote, name) is None and getattr(older.quote, name) is not None
    }
    quote = newer.quote.model_copy(update=missing) if missing else newer.quote
    return QuoteEvent(newer.contract_id, quote, older.received, newer.source)
