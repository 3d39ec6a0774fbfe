"""The event router: for every gateway event, state first, then the lockout gate, then the
rules, then enforcement.

Events are handled one at a time, in arrival order, by a single consumer, so rules always see
a consistent state. Enforcement actions are started as tasks (the router never waits for the
network) and durable writes that must precede reporting (lockouts, fills) are awaited after
the actions are on their way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from riskman.core.facts import OrderChange, PositionChange
from riskman.core.intents import (
    CancelOrder,
    CancelOrders,
    Category,
    ClearLock,
    CloseAll,
    ClosePosition,
    Intent,
    Lock,
    ModifyStop,
    PlaceStop,
    Plan,
    ReducePosition,
    plan,
)
from riskman.core.locks import LockKind, Lockout
from riskman.core.models import Position
from riskman.core.ports import (
    AccountEvent,
    AccountSnapshot,
    GatewayEvent,
    OrderEvent,
    PositionEvent,
    QuoteEvent,
    TradeEvent,
)
from riskman.core.rules import (
    AccountTrigger,
    CheckTrigger,
    OrderTrigger,
    PositionTrigger,
    QuoteTrigger,
    Rule,
    TimerTrigger,
    TradeTrigger,
    Trigger,
)
from riskman.engine.actions import EnforcementActions
from riskman.engine.durable import DurableWriter
from riskman.engine.fills import SETTLE_AFTER
from riskman.engine.lockouts import LockoutManager
from riskman.engine.pnl import PnlTracker
from riskman.engine.quotes import QuoteTracker
from riskman.engine.state import StateManager
from riskman.engine.trade_counter import TradeCounter
from riskman.symbols import root_of

log = logging.getLogger(__name__)

GATE = "LOCKOUT"
"""Rule name of the lockout gate in the enforcement log."""
_LIVE_KEEP = 10_000
FAILURE_LOG_EVERY = 100


@dataclass(frozen=True, slots=True)
class TimerEvent:
    """A rule's timer came due (grace period, session start or end...)."""

    rule: str
    account_id: int
    name: str
    received: float = 0.0


@dataclass(frozen=True, slots=True)
class ReconcileEvent:
    snapshot: AccountSnapshot


@dataclass(frozen=True, slots=True)
class PositionsSnapshot:
    """A REST re-read of one account's open positions (made while enforcing)."""

    account_id: int
    positions: tuple[Position, ...]
    received: float = 0.0


@dataclass(frozen=True, slots=True)
class SettleEvent:
    """Time is up for what waited on a fill (`riskman.engine.fills.SETTLE_AFTER`): a position
    (`contract_id`) or the balance (None) the gateway reported and no fill explained."""

    account_id: int
    contract_id: str | None
    received: float = 0.0


@dataclass(frozen=True, slots=True)
class CheckEvent:
    """Evaluate every rule for the account(s) (start-up, config change, reset)."""

    account_id: int | None = None
    reason: str = "check"
    received: float = 0.0


RouterEvent = (
    GatewayEvent | TimerEvent | ReconcileEvent | PositionsSnapshot | CheckEvent | SettleEvent
)


class EventRouter:
    def __init__(
        self,
        *,
        state: StateManager,
        lockouts: LockoutManager,
        pnl: PnlTracker,
        quotes: QuoteTracker,
        counter: TradeCounter,
        actions: EnforcementActions,
        rules: Sequence[Rule],
        is_guarded: Callable[[int], bool],
        on_state_change: Callable[[int | None], None],
        on_positions_changed: Callable[[], None],
        ensure_contract: Callable[[str], None],
        writer: DurableWriter,
        on_plan: Callable[[Plan, object], None] | None = None,
        settle_later: Callable[[int, str | None], None] = lambda account_id, contract_id: None,
        reread_positions: Callable[[int], None] = lambda account_id: None,
        let_actions_start: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._state = state
        self._lockouts = lockouts
        self._pnl = pnl
        self._quotes = quotes
        self._counter = counter
        self._actions = actions
        self.rules = list(rules)
        self._by_id = {rule.id: rule for rule in self.rules}
        self._is_guarded = is_guarded
        self._changed = on_state_change
        self._positions_changed = on_positions_changed
        self._ensure_contract = ensure_contract
        self._writer = writer
        self._settle_later = settle_later
        self._reconciled: set[int] = set()
        """Accounts the gateway's REST truth has been read for since the start."""
        self._reread_positions = reread_positions
        self._baselines: dict[tuple[int, str], tuple[tuple[str, datetime], int]] = {}
        """(account, contract) -> (the cooldown, the position size before it grew in it)."""
        self._live: dict[tuple[str, int, object], float] = {}
        self._failures: dict[tuple[str, ...], int] = {}
        self._listeners: dict[tuple[int, type], tuple[object, tuple[Rule, ...]]] = {}
        """(account, trigger kind) -> (its rule configuration, the enabled rules it runs)."""
        self.dispatched = 0
        """Enforcement actions dispatched so far (the engine's consumer looks at it)."""
        self._on_plan = on_plan
        """Told of each plan and the event behind it, once its actions are dispatched (the
        breach reports); never before enforcement."""
        self._event: object = None
        self._let_actions_start = let_actions_start
        """Awaited right after actions are dispatched: the engine lets their first step (the
        request to the socket) run before the rest of the event and the burst is routed."""

    async def handle(self, event: RouterEvent) -> None:
        """Route one event. Never raises for a bad event: it is logged and skipped."""
        try:
            await self._handle(event)
        except Exception as exc:
            self._failed(
                (type(event).__name__, type(exc).__name__),
                "event %s could not be processed; skipped",
                type(event).__name__,
            )

    async def _handle(self, event: RouterEvent) -> None:
        self._event = event
        if isinstance(event, QuoteEvent):
            await self._on_quote(event)
        elif isinstance(event, PositionEvent):
            self._note_live(
                ("position", event.position.account_id, event.position.contract_id), event
            )
            await self._on_position(event)
        elif isinstance(event, OrderEvent):
            self._note_live(("order", event.order.account_id, event.order.id), event)
            await self._on_order(event)
        elif isinstance(event, TradeEvent):
            await self._on_trade(event)
        elif isinstance(event, AccountEvent):
            self._note_live(("account", event.account.id, None), event)
            await self._on_account(event)
        elif isinstance(event, TimerEvent):
            await self._on_timer(event)
        elif isinstance(event, ReconcileEvent):
            await self._on_reconcile(event.snapshot)
        elif isinstance(event, PositionsSnapshot):
            await self._reconcile_positions(event.account_id, event.positions, event.received)
            await self._confirmed(event.account_id, event.received)
        elif isinstance(event, CheckEvent):
            await self._on_check(event)
        elif isinstance(event, SettleEvent):
            await self._on_settle(event)

    # --- per event -----------------------------------------------------------------------

    async def _on_quote(self, event: QuoteEvent) -> None:
        self._quotes.update_quote(event.contract_id, event.quote, source=event.source)
        holders = self._state.accounts_holding(event.contract_id)
        if not holders:
            return
        trigger = QuoteTrigger(event.contract_id)
        for account_id in list(holders):
            intents = self._evaluate(account_id, trigger)
            if intents:
                await self._enforce(intents, event.received)
            self._changed(account_id)

    async def _on_position(self, event: PositionEvent) -> None:
        position = event.position
        if not self._is_guarded(position.account_id):
            return
        change = self._state.report_position(position)
        # A close is confirmed by the gateway's word, even while the engine's view waits for
        # the fill (its realized P&L).
        self._actions.position_changed(
            position.account_id, position.contract_id, flat=position.is_closed
        )
        if not self._state.position_settled(position.account_id, position.contract_id):
            self._settle_later(position.account_id, position.contract_id)
        if change is None:
            return
        await self._route_position(change, event.received)

    async def _route_position(
        self, change: PositionChange, received: float, regate: PositionChange | None = None
    ) -> None:
        """The engine's position moved: the lockout gate and the position rules."""
        after, before = change.after, change.before
        current = after or before
        if current is None:
            if regate is not None:
                await self._enforce(self._gate_position(regate), received)
            return
        account_id, contract_id = current.account_id, current.contract_id
        if change.changed:
            self._actions.position_changed(account_id, contract_id)
        self._forget_unheld_quote(change)
        if after is not None:
            self._ensure_contract(contract_id)
        intents = self._gate_position(change)
        if regate is not None:
            intents += self._gate_position(regate)
        intents += self._evaluate(account_id, PositionTrigger(change))
        await self._enforce(intents, received)
        if (before is None) != (after is None):
            # The quote subscriptions follow, after the close this event may need.
            self._positions_changed()
        self._changed(account_id)

    def _forget_unheld_quote(self, change: PositionChange) -> None:
        """A position opened in a contract nobody held: its quotes were not subscribed (or
        are being dropped), so the last one kept is not live even when it looks fresh. Marking
        a position re-opened seconds after a close at that old price could close it for a loss
        it does not have. The subscription made for it now brings a live quote. Done as soon
        as the engine's view holds the position, by its trade or by its position update, so
        no rule reads that price in between, whichever of the fill's events comes first
        (issue 11)."""
        before, after = change.before, change.after
        if (
            before is None
            and after is not None
            and self._state.accounts_holding(after.contract_id) == {after.account_id}
        ):
            self._quotes.forget(after.contract_id)

    async def _on_order(self, event: OrderEvent) -> None:
        order = event.order
        if not self._is_guarded(order.account_id):
            return
        change = self._state.update_order(order)
        intents = self._gate_order(change)
        intents += self._evaluate(order.account_id, OrderTrigger(change))
        await self._enforce(intents, event.received)
        self._changed(order.account_id)

    async def _on_trade(self, event: TradeEvent, *, project: bool = True) -> None:
        """A fill. `project=False`: read over REST with the positions, which include it."""
        trade = event.trade
        if not self._is_guarded(trade.account_id):
            return
        effect = self._pnl.record(trade)
        if effect is None:
            return
        # riskman's own closes are not the trader's trades: they never count toward RULE-006.
        own = effect.is_new and self._actions.claim_fill(trade)
        counts = self._counter.record_trade(trade) if effect.is_new and not own else None
        # The position (and balance) as of this fill first, so that no rule sees its realized
        # P&L beside the open P&L it came from; its position rules and the lockout gate after
        # the fill's own locks (a cooldown it starts cuts what it opened).
        change = regate = None
        if effect.is_new and not trade.voided:
            self._state.note_fill(trade)
            if project:
                self._note_live(("position", trade.account_id, trade.contract_id), event)
            change, regate = self._state.apply_trade(trade, project=project)
            if change is not None:
                self._forget_unheld_quote(change)
            if not self._state.position_settled(trade.account_id, trade.contract_id):
                self._settle_later(trade.account_id, trade.contract_id)
        intents = self._evaluate(trade.account_id, TradeTrigger(effect, counts))
        # Locks are committed before the fill: a crash in between then replays the fill (not
        # yet stored) and re-derives the lock, instead of finding the fill stored and the lock
        # lost. The actions are already on their way either way.
        await self._enforce(intents, event.received)
        if change is not None and (change.changed or regate is not None):
            await self._route_position(change, event.received, regate)
        account_id = trade.account_id

        async def store() -> None:
            await self._pnl.persist(effect, by_riskman=own)
            self._changed(account_id)

        self._writer.submit(store)

    async def _on_account(self, event: AccountEvent, *, truth: bool = False) -> None:
        account = event.account
        if not self._is_guarded(account.id):
            return
        before = self._state.update_account(account, truth=truth)
        if not self._state.balance_settled(account.id):
            self._settle_later(account.id, None)
        intents = self._evaluate(account.id, AccountTrigger(before, account))
        await self._enforce(intents, event.received)
        self._changed(account.id)

    async def _on_settle(self, event: SettleEvent) -> None:
        """What the gateway reported and no fill explained in `SETTLE_AFTER` is believed: for
        the whole account at once (its positions and its balance), so that no rule sees one
        without the other."""
        account_id, contract_id = event.account_id, event.contract_id
        if not self._is_guarded(account_id):
            return
        since = self._state.waiting_since(account_id, contract_id)
        if since is None:
            return
        if event.received and event.received - since < SETTLE_AFTER:
            self._settle_later(account_id, contract_id)  # it waits since later: not yet
            return
        changes = [
            change
            for contract in sorted(self._state.unsettled_contracts(account_id))
            if (change := self._state.settle_position(account_id, contract)) is not None
        ]
        balance = self._state.settle_balance(account_id)
        for change in changes:
            if change.changed:
                await self._route_position(change, event.received)
        if changes or balance:
            # Rules that waited for a consistent account (`Rule.waits_for_fills`) run now.
            intents = self._evaluate(account_id, CheckTrigger("settled"))
            await self._enforce(intents, event.received)
            self._changed(account_id)
        if any(
            self._state.pending_fills(account_id, contract)
            for contract in self._state.unsettled_contracts(account_id)
        ):
            # A fill whose position update never came: ask the gateway (the answer is routed
            # as a `PositionsSnapshot`, the truth).
            self._reread_positions(account_id)

    async def _on_timer(self, event: TimerEvent) -> None:
        rule = self._by_id.get(event.rule)
        if rule is None or not rule.enabled(event.account_id):
            return
        intents = self._run_rule(rule, event.account_id, TimerTrigger(event.name))
        await self._enforce(intents, event.received)
        self._changed(event.account_id)

    async def _on_check(self, event: CheckEvent) -> None:
        accounts = (
            [event.account_id]
            if event.account_id is not None
            else sorted(
                {a.id for a in self._state.accounts()} | set(self._state.position_accounts())
            )
        )
        for account_id in accounts:
            if not self._is_guarded(account_id):
                continue
            # Positions and orders restored from the database are not acted on before the
            # gateway's REST read of the account confirms them (one breach, one call, also
            # after a restart): the gate runs on them at the account's reconcile.
            intents = self._gate_existing(account_id) if account_id in self._reconciled else []
            intents += self._evaluate(account_id, CheckTrigger(event.reason))
            await self._enforce(intents, event.received)
            self._changed(account_id)

    # --- REST snapshots never undo newer stream events -------------------------------------

    def _note_live(
        self,
        key: tuple[str, int, object],
        event: PositionEvent | OrderEvent | AccountEvent | TradeEvent,
    ) -> None:
        """Remember when the stream last spoke of `key` (events from the hub only)."""
        self._live[key] = event.received
        if len(self._live) > _LIVE_KEEP:
            # Only the last minutes matter (a snapshot older than that is long routed).
            horizon = event.received - 600.0
            self._live = {k: v for k, v in self._live.items() if v >= horizon}

    def _newer_than(self, key: tuple[str, int, object], requested: float) -> bool:
        """Did a stream event about `key` arrive after a REST read sent at `requested`?

        The reads of a reconcile take a while and are routed after every event that arrived
        meanwhile: without this, a position opened during the reads (absent from them) would
        be removed again, and riskman would watch a flat account that is not.
        """
        seen = self._live.get(key)
        return seen is not None and seen > requested

    async def _on_reconcile(self, snapshot: AccountSnapshot) -> None:
        account_id = snapshot.account.id
        if not self._is_guarded(account_id):
            return
        received = snapshot.requested
        if not self._newer_than(("account", account_id, None), received):
            await self._on_account(AccountEvent(snapshot.account, received), truth=True)
        await self._reconcile_positions(account_id, snapshot.positions, received)
        orders, gone = self._state.order_updates(account_id, snapshot.orders)
        for order in orders:
            if not self._newer_than(("order", account_id, order.id), received):
                await self._on_order(OrderEvent(order, received))
        for order in gone:
            if not self._newer_than(("order", account_id, order.id), received):
                self._state.remove_order(account_id, order.id)
        if snapshot.trades is not None:
            for trade in sorted(snapshot.trades, key=lambda t: (t.creation_timestamp, t.id)):
                await self._on_trade(TradeEvent(trade, received), project=False)
        await self._confirmed(account_id, received)
        self._changed(account_id)

    async def _confirmed(self, account_id: int, received: float) -> None:
        """The gateway's REST truth for the account was read: the first time since the start,
        what a lock must close is known now (see `_on_check`)."""
        if account_id in self._reconciled or not self._is_guarded(account_id):
            return
        self._reconciled.add(account_id)
        await self._enforce(self._gate_existing(account_id), received)

    async def _reconcile_positions(
        self, account_id: int, positions: Sequence[Position], received: float
    ) -> None:
        """A REST read of the account's positions is the truth (as of when it was sent): it
        replaces what waited on fills, except where the stream spoke after it was sent."""
        if not self._is_guarded(account_id):
            return
        rest = {p.contract_id: p for p in positions if p.size > 0}
        contracts = set(rest) | self._state.unsettled_contracts(account_id)
        contracts |= {s.contract_id for s in self._state.get_all_positions(account_id)}
        for contract_id in sorted(contracts):
            if self._newer_than(("position", account_id, contract_id), received):
                continue
            fresh = rest.get(contract_id)
            state = self._state.get_position(account_id, contract_id)
            if fresh is None:
                if state is None and self._state.position_settled(account_id, contract_id):
                    continue
                fresh = Position(account_id=account_id, contract_id=contract_id, size=0)
            elif (
                state is not None
                and state.position == fresh
                and self._state.position_settled(account_id, contract_id)
            ):
                continue
            change = self._state.update_position(fresh)
            self._actions.position_changed(account_id, contract_id, flat=fresh.is_closed)
            await self._route_position(change, received)

    # --- the lockout gate ----------------------------------------------------------------

    def _gate_position(self, change: PositionChange) -> list[Intent]:
        after = change.after
        if after is None:
            if change.before is not None:
                self._baselines.pop((change.before.account_id, change.before.contract_id), None)
            return []
        key = (after.account_id, after.contract_id)
        lock = self._lockouts.blocking(after.account_id, after.root)
        if lock is None:
            self._baselines.pop(key, None)
            return []
        before = change.before
        if lock.kind is LockKind.COOLDOWN and before is not None and before.sign == after.sign:
            # A cooldown stops new exposure but leaves what was already open: a position that
            # grows is cut back to its size before it grew, not closed. The baseline is kept
            # per lock, so a second addition while the first cut is in flight is cut too; and
            # while the lock it was taken under still holds, a second cooldown starting on top
            # of it (and outlasting it) keeps it, whatever order the fill's events came in.
            lock_key = (lock.rule, lock.created)
            held = self._baselines.get(key)
            if held is not None and held[0] != lock_key and self._holds(after.account_id, held[0]):
                held = (lock_key, held[1])
                self._baselines[key] = held
            if held is None or held[0] != lock_key:
                if not change.grew:
                    return []
                held = (lock_key, before.size)
                self._baselines[key] = held
            baseline = held[1]
            if after.size <= baseline:
                return []
            return [
                ReducePosition(
                    rule=GATE,
                    account_id=after.account_id,
                    reason=f"position grew during a cooldown ({lock.rule}: {lock.reason}); "
                    f"back to {baseline}",
                    category=Category.LOCKOUT,
                    contract_id=after.contract_id,
                    target_size=baseline,
                )
            ]
        if not change.grew:
            return []
        verb = "opened" if change.opened else "grew"
        return [
            ClosePosition(
                rule=GATE,
                account_id=after.account_id,
                reason=f"position {verb} while locked ({lock.rule}: {lock.reason})",
                category=Category.LOCKOUT,
                contract_id=after.contract_id,
            )
        ]

    def _holds(self, account_id: int, lock_key: tuple[str, datetime]) -> bool:
        """Is the lock (rule, created) still in force on the account?"""
        return any(
            (lock.rule, lock.created) == lock_key
            for lock in self._lockouts.get_lockout_info(account_id)
        )

    def _gate_order(self, change: OrderChange) -> list[Intent]:
        order = change.after
        if order is None or not order.status.is_working:
            return []
        lock = self._lockouts.blocking(order.account_id, root_of(order.contract_id))
        if lock is None:
            return []
        # A cooldown only stops new exposure: a stop protecting an open position stays.
        if lock.kind is LockKind.COOLDOWN and not self._state.increases_exposure(order):
            return []
        return [
            CancelOrder(
                rule=GATE,
                account_id=order.account_id,
                reason=f"order placed while locked ({lock.rule}: {lock.reason})",
                category=Category.LOCKOUT,
                order_id=order.id,
            )
        ]

    def _gate_existing(self, account_id: int) -> list[Intent]:
        """At start-up: a hard lock with positions still open (opened while we were down)."""
        intents: list[Intent] = []
        for state in self._state.get_all_positions(account_id):
            lock = self._lockouts.blocking(account_id, state.root)
            if lock is not None and lock.kind is LockKind.LOCKOUT:
                intents.append(
                    ClosePosition(
                        rule=GATE,
                        account_id=account_id,
                        reason=f"position open while locked ({lock.rule}: {lock.reason})",
                        category=Category.LOCKOUT,
                        contract_id=state.contract_id,
                    )
                )
        for order in self._state.get_all_orders(account_id):
            intents += self._gate_order(OrderChange(None, order))
        return intents

    # --- rules and enforcement -----------------------------------------------------------

    def _evaluate(self, account_id: int, trigger: Trigger) -> list[Intent]:
        intents: list[Intent] = []
        consistent = self._state.fills_consistent(account_id)
        for rule in self._listening(account_id, type(trigger)):
            if rule.waits_for_fills and not consistent:
                continue
            intents += self._run_rule(rule, account_id, trigger)
        return intents

    def _listening(self, account_id: int, kind: type) -> Sequence[Rule]:
        """The rules a trigger of this kind evaluates for the account, the disabled ones left
        out: remembered for as long as the account's rule configuration is the same object
        (a new configuration is always a new object, `RuleContext.rules`). A dozen lookups of
        the configuration less per rule and event, on the path to enforcement (issue 16)."""
        rules = self.rules
        if not rules:
            return rules
        try:
            config: object = rules[0].ctx.rules(account_id)
        except Exception:
            return [rule for rule in rules if kind in rule.triggers or kind is CheckTrigger]
        key = (account_id, kind)
        held = self._listeners.get(key)
        if held is not None and held[0] is config:
            return held[1]
        every = kind is CheckTrigger
        listening = tuple(
            rule
            for rule in rules
            if (every or kind in rule.triggers) and self._is_enabled(rule, account_id)
        )
        self._listeners[key] = (config, listening)
        return listening

    def _is_enabled(self, rule: Rule, account_id: int) -> bool:
        try:
            return rule.enabled(account_id)
        except Exception:
            return True  # evaluated then, where its failure is reported (`_run_rule`)

    def _run_rule(self, rule: Rule, account_id: int, trigger: Trigger) -> list[Intent]:
        try:
            if not rule.enabled(account_id):
                return []
            return rule.evaluate(account_id, trigger)
        except Exception as exc:
            self._failed(
                (rule.id, type(trigger).__name__, type(exc).__name__),
                "%s failed on %s for account %s",
                rule.id,
                type(trigger).__name__,
                account_id,
            )
            return []

    def _failed(self, key: tuple[str, ...], message: str, *args: object) -> None:
        """Log a failure with its traceback: the first time, then every 100th time. A bug that
        hits every quote would otherwise write hundreds of tracebacks a second."""
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count == 1 or count % FAILURE_LOG_EVERY == 0:
            log.exception(message + " (%d times so far)", *args, count)

    async def _enforce(self, intents: Iterable[Intent], received: float) -> bool:
        """Carry out a plan. Returns True when locks were activated (and maybe committed)."""
        todo = plan(intents)
        if not todo:
            return False
        for clear in todo.clears:
            await self._clear_lock(clear)
        activated = self._activate_locks(todo)
        self.dispatch(todo, received)
        if todo.actions and self._let_actions_start is not None:
            await self._let_actions_start()
        if self._on_plan is not None and (todo.actions or activated):
            try:
                self._on_plan(todo, self._event)
            except Exception:
                log.exception("plan listener failed")
        if activated:
            # In force now (the gate sees it on the next event); on disk in the background, in
            # order with the fills; logged once committed, since a lock the log reports must
            # survive a crash (MOD-002).
            async def commit() -> None:
                await self._lockouts.commit()
                for lock, held in activated:
                    self._actions.log_lock(
                        lock.account_id,
                        lock.rule,
                        held.symbol or "account",
                        lock.reason,
                        held.kind.value,
                        held.unlock.describe(held.until),
                    )

            self._writer.submit(commit)
        return bool(activated)

    async def _clear_lock(self, clear: ClearLock) -> None:
        """End the lock(s) the issuing rule holds on the account (or symbol); no other rule's."""
        await self._lockouts.clear_where(
            lambda lock: (
                lock.account_id == clear.account_id
                and lock.rule == clear.rule
                and lock.symbol == clear.symbol
            ),
            by=clear.rule,
            reason=clear.reason,
        )

    def _activate_locks(self, todo: Plan) -> list[tuple[Lock, Lockout]]:
        """Put the plan's locks in force (in memory); returns the ones that took effect."""
        activated = []
        for lock in todo.locks:
            held = self._lockouts.activate(
                lock.account_id,
                lock.reason,
                lock.until,
                rule=lock.rule,
                kind=lock.kind,
                unlock=lock.unlock,
                symbol=lock.symbol,
            )
            if held is not None:
                activated.append((lock, held))
        return activated

    def dispatch(self, todo: Plan, received: float) -> None:
        actions = self._actions
        self.dispatched += len(todo.actions)
        for intent in todo.actions:
            common = {"rule": intent.rule, "reason": intent.reason, "started": received or None}
            if isinstance(intent, CloseAll):
                actions.close_all_positions(intent.account_id, **common)  # type: ignore[arg-type]
            elif isinstance(intent, ClosePosition):
                actions.close_position(intent.account_id, intent.contract_id, **common)  # type: ignore[arg-type]
            elif isinstance(intent, ReducePosition):
                actions.reduce_position_to_limit(
                    intent.account_id,
                    intent.contract_id,
                    intent.target_size,
                    **common,  # type: ignore[arg-type]
                )
            elif isinstance(intent, CancelOrders):
                actions.cancel_all_orders(
                    intent.account_id,
                    symbol=intent.symbol,
                    entries_only=intent.entries_only,
                    **common,  # type: ignore[arg-type]
                )
            elif isinstance(intent, CancelOrder):
                actions.cancel_order(intent.account_id, intent.order_id, **common)  # type: ignore[arg-type]
            elif isinstance(intent, ModifyStop):
                actions.modify_stop(intent.account_id, intent.order_id, intent.stop_price, **common)  # type: ignore[arg-type]
            elif isinstance(intent, PlaceStop):
                actions.place_stop(
                    intent.account_id,
                    intent.contract_id,
                    intent.side,
                    intent.size,
                    intent.stop_price,
                    **common,  # type: ignore[arg-type]
                )
