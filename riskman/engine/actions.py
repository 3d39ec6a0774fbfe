"""MOD-001 Enforcement actions: the only code that acts on the gateway.

Each action runs as a task so the router never waits for the network. An action already in
flight for the same target is not started again (de-duplication). Closes are verified: after
the gateway accepts, we wait for the position event; without it we re-read the positions over
REST, and close again until the position is really gone. A mutation whose outcome is unknown
(timeout) is never repeated blindly: the state is re-read first, so a duplicate close can never
reverse a position. Every action is logged with its rule, reason, result and latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from riskman.config import EnforcementConfig
from riskman.core.backoff import Backoff
from riskman.core.clock import Clock, wait_for
from riskman.core.enums import OrderSide, OrderType
from riskman.core.models import Order, Position, Trade
from riskman.core.ports import GatewayPort
from riskman.core.views import EnforcementRecord
from riskman.engine.state import StateManager
from riskman.gateway.errors import (
    GatewayError,
    GatewayRejected,
    MarketClosed,
    NotFound,
    OutcomeUnknown,
    RateLimited,
)
from riskman.storage.db import Database, to_db_time
from riskman.symbols import root_of

log = logging.getLogger("riskman.enforcement")


@dataclass(slots=True)
class _ExpectedFill:
    side: OrderSide
    size: int
    until: float


UNKNOWN_WAIT = 0.5
"""Seconds to wait for the fill of a close whose answer was lost before re-reading positions."""
_EXPECT_FOR = 15.0
_RECHECK_EVERY = 2.0
"""At most this often (seconds) an account is re-evaluated after an action left it open."""
"""Seconds within which a fill can be the answer to one of riskman's closes."""

Recorder = Callable[[EnforcementRecord], None]
PositionsSeen = Callable[[int, Sequence[Position], float], None]
"""Called with a REST re-read of an account's positions and the `Clock.monotonic()` the read
was sent at, so state catches up with it (but not past stream events that came after it)."""


class EnforcementActions:
    def __init__(
        self,
        gateway: GatewayPort,
        state: StateManager,
        clock: Clock,
        db: Database,
        config: EnforcementConfig,
        record: Recorder,
        positions_seen: PositionsSeen,
        recheck: Callable[[int], None] = lambda account_id: None,
    ) -> None:
        self._gateway = gateway
        self._state = state
        self._clock = clock
        self._retry = Backoff(clock, base=0.25, maximum=5.0, jitter=(0.75, 1.25))
        self._db = db
        self.config = config
        self._record = record
        self._positions_seen = positions_seen
        self._recheck = recheck
        self._rechecked: dict[int, float] = {}
        self._in_flight: dict[tuple[object, ...], asyncio.Task[bool]] = {}
        self._waiters: dict[tuple[int, str], list[asyncio.Future[None]]] = {}
        self._flats: dict[tuple[int, str], int] = {}
        """How many times each position was seen to go flat (a close is confirmed by one, even
        if the trader opened the contract again before the waiting action ran)."""
        self._last_modify: dict[int, float] = {}
        self._expected: dict[tuple[int, str], list[_ExpectedFill]] = {}
        self._own_orders: dict[int, float] = {}

    # --- public actions (each returns the task, or None when already in flight) ------------

    def close_all_positions(
        self, account_id: int, *, rule: str, reason: str, started: float | None = None
    ) -> asyncio.Task[bool] | None:
        return self._spawn(
            ("flatten", account_id),
            self._flatten(account_id, rule, reason, self._started(started)),
        )

    def close_position(
        self,
        account_id: int,
        contract_id: str,
        *,
        rule: str,
        reason: str,
        started: float | None = None,
        cancel_leftovers: bool = True,
    ) -> asyncio.Task[bool] | None:
        if ("close", account_id, contract_id) in self._in_flight:
            return None
        return self._spawn(
            ("close", account_id, contract_id),
            self._close(
                account_id, contract_id, rule, reason, self._started(started), cancel_leftovers
            ),
        )

    def reduce_position_to_limit(
        self,
        account_id: int,
        contract_id: str,
        target_size: int,
        *,
        rule: str,
        reason: str,
        started: float | None = None,
    ) -> asyncio.Task[bool] | None:
        if target_size <= 0:
            return self.close_position(
                account_id, contract_id, rule=rule, reason=reason, started=started
            )
        if ("close", account_id, contract_id) in self._in_flight:
            return None
        return self._spawn(
            ("reduce", account_id, contract_id),
            self._reduce(
                account_id, contract_id, target_size, rule, reason, self._started(started)
            ),
        )

    def cancel_all_orders(
        self,
        account_id: int,
        *,
        rule: str,
        reason: str,
        symbol: str | None = None,
        entries_only: bool = False,
        started: float | None = None,
    ) -> list[asyncio.Task[bool]]:
        """Cancel the account's working orders (of one symbol root; only entries if asked)."""
        tasks = []
        for order in self._state.working_orders(account_id):
            if symbol is not None and root_of(order.contract_id) != symbol:
                continue
            if entries_only and not self._state.increases_exposure(order):
                continue
            task = self.cancel_order(
                account_id, order.id, rule=rule, reason=reason, started=started
            )
            if task is not None:
                tasks.append(task)
        return tasks

    def cancel_order(
        self,
        account_id: int,
        order_id: int,
        *,
        rule: str,
        reason: str,
        started: float | None = None,
    ) -> asyncio.Task[bool] | None:
        return self._spawn(
            ("cancel", account_id, order_id),
            self._cancel(account_id, order_id, rule, reason, self._started(started)),
        )

    def modify_stop(
        self,
        account_id: int,
        order_id: int,
        stop_price: Decimal,
        *,
        rule: str,
        reason: str,
        started: float | None = None,
    ) -> asyncio.Task[bool] | None:
        # At most one modify per second per order (RULE-012).
        now = self._clock.monotonic()
        if now - self._last_modify.get(order_id, -1e9) < 1.0:
            return None
        if ("modify", order_id) in self._in_flight:
            return None
        self._last_modify[order_id] = now
        return self._spawn(
            ("modify", order_id),
            self._modify(account_id, order_id, stop_price, rule, reason, self._started(started)),
        )

    def place_stop(
        self,
        account_id: int,
        contract_id: str,
        side: OrderSide,
        size: int,
        stop_price: Decimal,
        *,
        rule: str,
        reason: str,
        started: float | None = None,
    ) -> asyncio.Task[bool] | None:
        return self._spawn(
            ("place_stop", account_id, contract_id),
            self._place_stop(
                account_id,
                contract_id,
                side,
                size,
                stop_price,
                rule,
                reason,
                self._started(started),
            ),
        )

    # --- notifications -------------------------------------------------------------------

    def position_changed(
        self, account_id: int, contract_id: str, *, flat: bool | None = None
    ) -> None:
        """The router saw a position event: wake the actions waiting to verify it.

        `flat`: the gateway said the position is flat (the engine's own view may still wait
        for the fill's trade); by default, whether the engine holds no position.
        """
        key = (account_id, contract_id)
        if flat is None:
            flat = self._state.get_position(account_id, contract_id) is None
        if key in self._flats and flat:
            self._flats[key] += 1
        for future in self._waiters.pop((account_id, contract_id), []):
            if not future.done():
                future.set_result(None)

    def claim_fill(self, trade: Trade) -> bool:
        """True if this fill comes from one of riskman's own closes (not a trader's trade).

        A close returns no order id, so the fill is matched to the close it answers: same
        account, contract and closing side, within `_EXPECT_FOR` seconds of the call; the other
        fills of that order follow it.
        """
        now = self._clock.monotonic()
        if trade.order_id in self._own_orders:
            return True
        expected = self._expected.get((trade.account_id, trade.contract_id))
        if not expected:
            return False
        expected[:] = [e for e in expected if e.until > now]
        for fill in expected:
            if fill.side is trade.side and trade.size <= fill.size:
                fill.size -= trade.size
                if fill.size == 0:
                    expected.remove(fill)
                if trade.order_id:
                    self._own_orders[trade.order_id] = now + _EXPECT_FOR
                    self._forget_old_orders(now)
                return True
        return False

    def _expect_fill(
        self, account_id: int, contract_id: str, size: int | None = None
    ) -> _ExpectedFill | None:
        """Note the fill a close of `size` contracts (default: the whole position) will cause."""
        state = self._state.get_position(account_id, contract_id)
        if state is None:
            return None
        side = OrderSide.ASK if state.sign > 0 else OrderSide.BID
        expected = _ExpectedFill(side, size or state.size, self._clock.monotonic() + _EXPECT_FOR)
        self._expected.setdefault((account_id, contract_id), []).append(expected)
        return expected

    def _unexpect_fill(
        self, account_id: int, contract_id: str, expected: _ExpectedFill | None
    ) -> None:
        """The close was refused, so it brings no fill: a trader's own fill on that side in the
        next seconds must not be taken for riskman's (and go uncounted by RULE-006)."""
        pending = self._expected.get((account_id, contract_id))
        if expected is None or not pending:
            return
        # Identity, not equality: an identical expectation of another close must stay.
        for index, item in enumerate(pending):
            if item is expected:
                del pending[index]
                break

    def _forget_old_orders(self, now: float) -> None:
        if len(self._own_orders) > 1000:
            self._own_orders = {k: v for k, v in self._own_orders.items() if v > now}

    def in_flight(self) -> list[tuple[object, ...]]:
        return list(self._in_flight)

    async def quiet(self, limit: float) -> None:
        """Return once no enforcement action is in flight, or after `limit` seconds (loop
        time). Background work (durable writes, quote subscriptions) waits here, so a close
        is on its way before the disk or the hubs take the loop (issue 16)."""
        if not self._in_flight:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while self._in_flight:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait(list(self._in_flight.values()), timeout=remaining)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no action is in flight (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            while self._in_flight:
                await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    async def cancel_all_tasks(self) -> None:
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- internals -----------------------------------------------------------------------

    def _started(self, started: float | None) -> float:
        return self._clock.monotonic() if started is None else started

    def _spawn(self, key: tuple[object, ...], work: Awaitable[bool]) -> asyncio.Task[bool] | None:
        if key in self._in_flight:
            close = getattr(work, "close", None)
            if close is not None:
                close()  # never started: avoid "coroutine was never awaited"
            return None

        async def run() -> bool:
            try:
                return await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("enforcement action %s failed unexpectedly", key)
                return False

        task = asyncio.get_running_loop().create_task(run(), name=f"enforce:{key}")
        self._in_flight[key] = task
        task.add_done_callback(lambda _: self._finished(key))
        return task

    def _finished(self, key: tuple[object, ...]) -> None:
        self._in_flight.pop(key, None)
        kind, account_id = key[0], key[1]
        if kind not in ("close", "reduce", "flatten") or not isinstance(account_id, int):
            return
        # A breach that came while this action was in flight was skipped as a duplicate; if the
        # position is still there now (it grew again, or the close found nothing to close),
        # evaluate the account once more rather than wait for its next event.
        if kind == "flatten":
            still_open = bool(self._state.get_all_positions(account_id))
        else:
            still_open = self._state.get_position(account_id, str(key[2])) is not None
        now = self._clock.monotonic()
        if still_open and now - self._rechecked.get(account_id, -1e9) >= _RECHECK_EVERY:
            self._rechecked[account_id] = now
            self._recheck(account_id)

    def _log(
        self,
        account_id: int,
        rule: str,
        action: str,
        target: str,
        reason: str,
        result: str,
        started: float,
        detail: str = "",
    ) -> None:
        latency = (self._clock.monotonic() - started) * 1000.0
        record = EnforcementRecord(
            self._clock.now(), account_id, rule, action, target, reason, result, detail, latency
        )
        self._db.defer(
            "INSERT INTO enforcement_log (ts, account_id, rule, action, target, reason, result,"
            " detail, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                to_db_time(record.ts),
                account_id,
                rule,
                action,
                target,
                reason,
                result,
                detail,
                latency,
            ),
        )
        level = logging.INFO if record.ok else logging.WARNING
        log.log(
            level,
            "%s account=%s %s %s: %s (%s) %.1f ms%s",
            rule,
            account_id,
            action,
            target,
            result,
            reason,
            latency,
            f" [{detail}]" if detail else "",
            # The same facts as fields, for `--log-format json` (one object per action).
            extra={
                "rule": rule,
                "account": account_id,
                "action": action,
                "target": target,
                "result": result,
                "reason": reason,
                "detail": detail,
                "latency_ms": round(latency, 1),
            },
        )
        self._record(record)

    async def _wait_position(
        self, account_id: int, contract_id: str, done: Callable[[], bool], timeout: float
    ) -> bool:
        """Wait (event-driven) until `done()` holds for this position, up to `timeout`."""
        deadline = self._clock.monotonic() + timeout
        while not done():
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return False
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault((account_id, contract_id), []).append(future)
            if not await wait_for(self._clock, future, remaining):
                return done()
        return True

    async def _rest_size(self, account_id: int, contract_id: str) -> int | None:
        """The position's size as the gateway reports it now (None if the read failed)."""
        asked = self._clock.monotonic()
        try:
            positions = await self._gateway.search_open_positions(account_id, urgent=True)
        except GatewayError as exc:
            log.warning("re-reading positions of %s failed: %s", account_id, exc)
            return None
        self._positions_seen(account_id, positions, asked)
        for position in positions:
            if position.contract_id == contract_id:
                return position.size
        return 0

    async def _backoff(self, attempt: int, exc: GatewayError | None) -> None:
        base = 2.0 if isinstance(exc, MarketClosed) else 0.25
        if isinstance(exc, RateLimited):
            base = 1.0
        await self._retry.wait(attempt, base=base)

    def _flat_since(self, account_id: int, contract_id: str) -> Callable[[], bool]:
        """A test for "the position went flat after now" (or is flat)."""
        key = (account_id, contract_id)
        before = self._flats.setdefault(key, 0)

        def flat() -> bool:
            return self._state.get_position(*key) is None or self._flats[key] > before

        return flat

    async def _close(
        self,
        account_id: int,
        contract_id: str,
        rule: str,
        reason: str,
        started: float,
        leftovers: bool = True,
    ) -> bool:
        detail = ""
        for attempt in range(1, self.config.max_attempts + 1):
            error: GatewayError | None = None
            # Counted from before the call: a flat seen after it is this close's doing, even
            # when a new position (the trader's, or a stop's) opened before we looked.
            went_flat = self._flat_since(account_id, contract_id)
            expected = self._expect_fill(account_id, contract_id)
            try:
                await self._gateway.close_contract(account_id, contract_id)
            except NotFound:
                self._unexpect_fill(account_id, contract_id, expected)
                self._drop_if_flat(account_id, contract_id)
                return self._closed(
                    account_id, contract_id, rule, reason, started, "already flat", "", leftovers
                )
            except GatewayError as exc:
                error, detail = exc, str(exc)
                if not isinstance(exc, OutcomeUnknown):
                    self._unexpect_fill(account_id, contract_id, expected)
            if error is None or isinstance(error, OutcomeUnknown):
                # An unknown outcome (no answer within the call's deadline, or HTTP 5xx) has
                # had its time: a short look for the fill, then the positions are re-read.
                gone = await self._wait_position(
                    account_id,
                    contract_id,
                    went_flat,
                    self.config.verify_after if error is None else UNKNOWN_WAIT,
                )
                if gone:
                    return self._closed(
                        account_id,
                        contract_id,
                        rule,
                        reason,
                        started,
                        "ok",
                        _attempts(attempt),
                        leftovers,
                    )
            size = await self._rest_size(account_id, contract_id)
            if size == 0:
                return self._closed(
                    account_id,
                    contract_id,
                    rule,
                    reason,
                    started,
                    "ok",
                    _attempts(attempt),
                    leftovers,
                )
            if error is not None and not isinstance(error, OutcomeUnknown):
                await self._backoff(attempt, error)
        self._log(
            account_id,
            rule,
            "close",
            contract_id,
            reason,
            "failed",
            started,
            detail or "position still open",
        )
        return False

    def _closed(
        self,
        account_id: int,
        contract_id: str,
        rule: str,
        reason: str,
        started: float,
        result: str,
        detail: str,
        leftovers: bool,
    ) -> bool:
        self._log(account_id, rule, "close", contract_id, reason, result, started, detail)
        if leftovers:
            # closeContract leaves the position's stop and target working; once flat they
            # would open a new position when they trigger.
            for order in self._state.get_orders_for_position(account_id, contract_id):
                self.cancel_order(
                    account_id,
                    order.id,
                    rule=rule,
                    reason=f"{reason} (left over)",
                    started=started,
                )
        return True

    async def _reduce(
        self,
        account_id: int,
        contract_id: str,
        target: int,
        rule: str,
        reason: str,
        started: float,
    ) -> bool:
        detail = ""
        state = self._state.get_position(account_id, contract_id)
        size: int | None = None if state is None else state.size
        for attempt in range(1, self.config.max_attempts + 1):
            if size is None:
                size = await self._rest_size(account_id, contract_id)
                if size is None:
                    await self._backoff(attempt, None)
                    continue
            if size <= target:
                self._log(
                    account_id,
                    rule,
                    "reduce",
                    contract_id,
                    reason,
                    "ok" if attempt > 1 else "already within limit",
                    started,
                )
                return True
            error: GatewayError | None = None
            expected = self._expect_fill(account_id, contract_id, size - target)
            try:
                await self._gateway.partial_close_contract(account_id, contract_id, size - target)
            except NotFound:
                self._unexpect_fill(account_id, contract_id, expected)
                self._log(account_id, rule, "reduce", contract_id, reason, "already flat", started)
                return True
            except GatewayError as exc:
                error, detail = exc, str(exc)
                if not isinstance(exc, OutcomeUnknown):
                    self._unexpect_fill(account_id, contract_id, expected)
            if error is None:
                within = await self._wait_position(
                    account_id,
                    contract_id,
                    lambda: self._state.get_contract_count(account_id, contract_id) <= target,
                    self.config.verify_after,
                )
                if within:
                    self._log(
                        account_id,
                        rule,
                        "reduce",
                        contract_id,
                        reason,
                        "ok",
                        started,
                        f"to {target}" + _attempts(attempt, ", "),
                    )
                    return True
            # Unknown outcome, refused size or no confirmation: re-read before deciding again,
            # so a second partial close is sized from the gateway's truth.
            size = await self._rest_size(account_id, contract_id)
            if (
                error is not None and not isinstance(error, OutcomeUnknown | GatewayRejected)
            ) or isinstance(error, MarketClosed | RateLimited):
                await self._backoff(attempt, error)
        self._log(
            account_id,
            rule,
            "reduce",
            contract_id,
            reason,
            "failed",
            started,
            detail or "position still above the limit",
        )
        return False

    async def _flatten(self, account_id: int, rule: str, reason: str, started: float) -> bool:
        """Cancel every working order and close every position, until the account is flat."""
        for attempt in range(1, self.config.max_attempts + 1):
            cancels = self.cancel_all_orders(account_id, rule=rule, reason=reason, started=started)
            closes = [
                task
                for state in self._state.get_all_positions(account_id)
                if (
                    task := self.close_position(
                        account_id,
                        state.contract_id,
                        rule=rule,
                        reason=reason,
                        started=started,
                        cancel_leftovers=False,
                    )
                )
                is not None
            ]
            pending = [t for t in self._in_flight_for(account_id) if t not in closes]
            results = await asyncio.gather(*closes, *pending, return_exceptions=True)
            await asyncio.gather(*cancels, return_exceptions=True)
            asked = self._clock.monotonic()
            try:
                positions = await self._gateway.search_open_positions(account_id, urgent=True)
            except GatewayError as exc:
                log.warning("checking that account %s is flat failed: %s", account_id, exc)
                await self._backoff(attempt, exc)
                continue
            self._positions_seen(account_id, positions, asked)
            if not positions:
                # Orders can appear after the closes (e.g. bracket children): cancel leftovers.
                leftovers = self.cancel_all_orders(
                    account_id, rule=rule, reason=reason, started=started
                )
                await asyncio.gather(*leftovers, return_exceptions=True)
                self._log(
                    account_id,
                    rule,
                    "flatten",
                    "account",
                    reason,
                    "ok",
                    started,
                    _attempts(attempt),
                )
                return True
            if all(r is True for r in results):
                await self._backoff(attempt, None)
        self._log(
            account_id,
            rule,
            "flatten",
            "account",
            reason,
            "failed",
            started,
            "positions still open",
        )
        return False

    def _in_flight_for(self, account_id: int) -> list[asyncio.Task[bool]]:
        return [
            task
            for key, task in self._in_flight.items()
            if key[0] == "close" and key[1] == account_id
        ]

    async def _cancel(
        self, account_id: int, order_id: int, rule: str, reason: str, started: float
    ) -> bool:
        order = self._state.get_order(account_id, order_id)
        target = _order_label(order, order_id)
        detail = ""
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                await self._gateway.cancel_order(account_id, order_id)
            except NotFound:
                self._state.remove_order(account_id, order_id)
                self._log(account_id, rule, "cancel", target, reason, "already gone", started)
                return True
            except OutcomeUnknown as exc:
                detail = str(exc)
                if await self._order_gone(account_id, order_id):
                    self._log(account_id, rule, "cancel", target, reason, "ok", started)
                    return True
                continue
            except GatewayError as exc:
                detail = str(exc)
                if isinstance(exc, GatewayRejected) and not isinstance(exc, MarketClosed):
                    break
                await self._backoff(attempt, exc)
                continue
            self._log(account_id, rule, "cancel", target, reason, "ok", started, _attempts(attempt))
            return True
        self._log(account_id, rule, "cancel", target, reason, "failed", started, detail)
        return False

    async def _order_gone(self, account_id: int, order_id: int) -> bool:
        try:
            orders = await self._gateway.search_open_orders(account_id, urgent=True)
        except GatewayError:
            return False
        return all(order.id != order_id for order in orders)

    async def _modify(
        self,
        account_id: int,
        order_id: int,
        stop_price: Decimal,
        rule: str,
        reason: str,
        started: float,
    ) -> bool:
        order = self._state.get_order(account_id, order_id)
        target = _order_label(order, order_id)
        try:
            await self._gateway.modify_order(account_id, order_id, stop_price=stop_price)
        except GatewayError as exc:
            self._log(account_id, rule, "move stop", target, reason, "failed", started, str(exc))
            return False
        self._log(
            account_id, rule, "move stop", target, reason, "ok", started, f"stop {stop_price}"
        )
        return True

    async def _place_stop(
        self,
        account_id: int,
        contract_id: str,
        side: OrderSide,
        size: int,
        stop_price: Decimal,
        rule: str,
        reason: str,
        started: float,
    ) -> bool:
        try:
            order_id = await self._gateway.place_order(
                account_id, contract_id, OrderType.STOP, side, size, stop_price=stop_price
            )
        except GatewayError as exc:
            self._log(
                account_id, rule, "place stop", contract_id, reason, "failed", started, str(exc)
            )
            return False
        self._log(
            account_id,
            rule,
            "place stop",
            contract_id,
            reason,
            "ok",
            started,
            f"order {order_id} stop {stop_price}",
        )
        return True

    def _drop_if_flat(self, account_id: int, contract_id: str) -> None:
        self.position_changed(account_id, contract_id)

    def log_lock(
        self, account_id: int, rule: str, target: str, reason: str, result: str, detail: str
    ) -> None:
        """Record a lockout or cooldown in the enforcement log (it is an action too)."""
        self._log(account_id, rule, result, target, reason, result, self._clock.monotonic(), detail)


def _attempts(attempt: int, prefix: str = "") -> str:
    return f"{prefix}after {attempt} attempts" if attempt > 1 else ""


def _order_label(order: Order | None, order_id: int) -> str:
    if order is None:
        return f"order {order_id}"
    return f"order {order_id} ({order.side.label} {order.size} {root_of(order.contract_id)})"
