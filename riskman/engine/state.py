"""MOD-009 State manager: accounts, open positions and working orders, per account.

Positions are keyed by (account, contract): the gateway keeps one row per contract. A size of 0
removes a position; a terminal status removes an order. Every update returns what changed, so
the lockout gate and the rules can tell an opened or grown position from a reduced one.
Rows are written to the database in the background (batched); they are only a warm start:
REST reconciliation is the truth after a restart.

The positions and the balance the rules see are *as of the fills seen* (`riskman.engine.fills`):
a trade moves its position at once; a stream position or balance update only confirms it, and
one that runs ahead of its trade waits for it (`apply_trade`, `report_position`,
`update_account`, `settle_position`, `settle_balance`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal

from riskman.core.clock import Clock
from riskman.core.enums import OrderSide, OrderStatus, PositionType
from riskman.core.facts import OrderChange, PositionChange, PositionState
from riskman.core.models import Account, Order, Position, Trade
from riskman.engine.fills import BalanceBook, Part, PositionBook, apply_fill
from riskman.storage.db import Database, from_db_time, to_db_time


class StateManager:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._accounts: dict[int, Account] = {}
        self._positions: dict[int, dict[str, PositionState]] = {}
        self._orders: dict[int, dict[int, Order]] = {}
        self._holders: dict[str, set[int]] = {}
        self._books: dict[tuple[int, str], PositionBook] = {}
        self._balances: dict[int, BalanceBook] = {}
        self._regate: dict[tuple[int, str], PositionState | None] = {}
        """The position before an unexplained addition was taken (gated again at its fill)."""
        self._filled: set[tuple[int, int]] = set()
        """(account, order) whose whole size one fill filled, before the order's own update
        says so (a fill's trade is routed ahead of its order update, issue 16)."""

    # --- start-up ------------------------------------------------------------------------

    async def restore(self) -> None:
        for row in await self._db.fetchall("SELECT payload FROM accounts"):
            account = Account.model_validate_json(row["payload"])
            self._accounts[account.id] = account
        for row in await self._db.fetchall("SELECT payload, opened, grown FROM positions"):
            position = Position.model_validate_json(row["payload"])
            now = self._clock.now()
            self._set_position(
                PositionState(
                    position,
                    from_db_time(row["opened"]) or now,
                    from_db_time(row["grown"]) or now,
                )
            )
        for row in await self._db.fetchall("SELECT payload FROM orders"):
            order = Order.model_validate_json(row["payload"])
            self._orders.setdefault(order.account_id, {})[order.id] = order

    # --- accounts ------------------------------------------------------------------------

    def update_account(self, account: Account, *, truth: bool = True) -> Account | None:
        """Take the gateway's account. `truth=False` (a stream update): a balance change no
        fill seen explains waits for its fill while positions are open (see `balance`)."""
        before = self._accounts.get(account.id)
        self._accounts[account.id] = account
        book = self._balances.setdefault(account.id, BalanceBook())
        if before is None or truth:
            book.clear()
        elif account.balance != before.balance:
            # Believed at once when no position is open (no open P&L could hold it twice),
            # but still matched against the fill that comes for it.
            book.report(
                account.balance - before.balance, hold=bool(self._positions.get(account.id))
            )
            if book.ahead and book.since is None:
                book.since = self._clock.monotonic()
        if before != account:
            self._db.defer(
                "INSERT OR REPLACE INTO accounts (account_id, payload, updated) VALUES (?, ?, ?)",
                (account.id, account.model_dump_json(), to_db_time(self._clock.now())),
            )
        return before

    def get_account(self, account_id: int) -> Account | None:
        return self._accounts.get(account_id)

    def balance(self, account_id: int) -> Decimal | None:
        """The account's balance as of the fills seen (None before the first account event).

        The reported balance, plus the net P&L of fills it does not include yet, minus a change
        no fill seen explains yet (at most `SETTLE_AFTER`: see `settle_balance`).
        """
        account = self._accounts.get(account_id)
        if account is None:
            return None
        book = self._balances.get(account_id)
        return account.balance if book is None else account.balance + book.offset()

    def balance_settled(self, account_id: int) -> bool:
        book = self._balances.get(account_id)
        return book is None or not book.ahead

    def settle_balance(self, account_id: int) -> bool:
        """A balance change that no fill explained in time is believed. True if it was held."""
        book = self._balances.get(account_id)
        if book is None or not book.ahead:
            return False
        held = bool(book.held)
        book.ahead = book.held = Decimal(0)
        book.since = None
        return held

    def accounts(self) -> list[Account]:
        return sorted(self._accounts.values(), key=lambda a: a.id)

    # --- positions -----------------------------------------------------------------------

    def update_position(self, position: Position) -> PositionChange:
        """Take a position as the truth (a REST read, a restored row): nothing is pending."""
        self._books.pop((position.account_id, position.contract_id), None)
        self._regate.pop((position.account_id, position.contract_id), None)
        return self._move(position)

    # --- fills and the gateway's word on them --------------------------------------------

    def _book(self, account_id: int, contract_id: str) -> PositionBook:
        key = (account_id, contract_id)
        book = self._books.get(key)
        if book is None:
            state = self.get_position(account_id, contract_id)
            book = self._books[key] = PositionBook(None if state is None else state.position)
        return book

    def _move_to(
        self, account_id: int, contract_id: str, target: Position | None
    ) -> PositionChange:
        if target is None:
            target = Position(account_id=account_id, contract_id=contract_id, size=0)
        book = self._books.get((account_id, contract_id))
        if book is not None and book.settled:
            # Nothing waits: the engine's position is the gateway's word (the book is made
            # again from it when the next fill or update comes), so only fills in flight are
            # kept and `fills_consistent` stays cheap on every event.
            del self._books[(account_id, contract_id)]
        return self._move(target)

    def apply_trade(
        self, trade: Trade, *, project: bool = True
    ) -> tuple[PositionChange, PositionChange | None]:
        """A new fill: the position (and balance) as of it.

        Returns the change it makes to the position, and the change of an addition the gateway
        reported before this fill (already taken, to be gated again now that the fill's own
        locks are in force). `project=False`: a fill read over REST with the positions (it is
        in them already); it only explains what was waiting for it.
        """
        account_id, contract_id = trade.account_id, trade.contract_id
        state = self.get_position(account_id, contract_id)
        if project:
            self._balances.setdefault(account_id, BalanceBook()).fill(trade.net_pnl)
        if trade.is_closing and (state is None or state.sign == trade.side.sign):
            # A closing fill with nothing to close here: this view missed the position, so
            # the gateway's position update decides, not the fill's arithmetic.
            project = False
        book = self._book(account_id, contract_id)
        current = None if state is None else state.position
        key = (account_id, contract_id)
        applied_ahead = bool(book.ahead) and not book.held
        had_ahead = book.ahead
        held = book.held
        left = book.fill(trade)
        used = had_ahead - book.ahead
        regate: PositionChange | None = None
        if applied_ahead and used and not book.ahead and key in self._regate:
            regate = PositionChange(self._regate.pop(key), state)
        if project and left:
            book.pending.append(Part(left, trade.price, trade.creation_timestamp))
            if book.since is None:
                book.since = self._clock.monotonic()
        if book.ahead == 0:
            target = book.projected(account_id, contract_id)
        elif held:
            # Still waiting for more fills of a reported reduction: as of this one.
            target = apply_fill(
                current,
                account_id,
                contract_id,
                trade.side.sign * trade.size,
                trade.price,
                trade.creation_timestamp,
            )
        elif project and left:
            target = apply_fill(
                current, account_id, contract_id, left, trade.price, trade.creation_timestamp
            )
        else:
            target = current
        if book.settled:
            book.since = None
        return self._move_to(account_id, contract_id, target), regate

    def report_position(self, position: Position) -> PositionChange | None:
        """A position update from the stream. None when it waits for its fill."""
        account_id, contract_id = position.account_id, position.contract_id
        key = (account_id, contract_id)
        book = self._book(account_id, contract_id)
        state = self.get_position(account_id, contract_id)
        book.report(position)
        if book.ahead == 0:
            book.since = None if book.settled else book.since
            self._regate.pop(key, None)
            return self._move_to(account_id, contract_id, book.projected(account_id, contract_id))
        projected = book.projected(account_id, contract_id)
        adds = not book.held and (
            state is None
            or (
                projected is not None
                and projected.type.sign == state.sign
                and projected.size >= state.size
            )
        )
        if book.since is None:
            book.since = self._clock.monotonic()
        if adds:
            # Nothing is realized by an addition: take it now (the lockout gate must see it),
            # and gate it again when its fill comes (the fill may start a cooldown).
            self._regate.setdefault(key, state)
            return self._move_to(account_id, contract_id, projected)
        book.held = True
        return None

    def fills_consistent(self, account_id: int) -> bool:
        """False while a position update taken before its fill waits for the fill (its fees
        are not counted yet): account-level P&L rules wait (`Rule.waits_for_fills`)."""
        return not any(
            book.ahead and not book.held
            for (account, _), book in self._books.items()
            if account == account_id
        )

    def position_settled(self, account_id: int, contract_id: str) -> bool:
        book = self._books.get((account_id, contract_id))
        return book is None or book.settled

    def pending_fills(self, account_id: int, contract_id: str) -> bool:
        """Fills seen that no position update has confirmed (the gateway's word is missing)."""
        book = self._books.get((account_id, contract_id))
        return book is not None and bool(book.pending) and not book.ahead

    def settle_position(self, account_id: int, contract_id: str) -> PositionChange | None:
        """What the gateway reported and no fill explained in time is believed."""
        book = self._books.get((account_id, contract_id))
        if book is None or not book.ahead:
            return None
        book.truth(book.reported)
        self._regate.pop((account_id, contract_id), None)
        return self._move_to(account_id, contract_id, book.reported)

    def waiting_since(self, account_id: int, contract_id: str | None) -> float | None:
        """`Clock.monotonic()` since when something of a position (or the balance, for None)
        waits on a fill or on the gateway's word (None: nothing waits)."""
        if contract_id is None:
            balance = self._balances.get(account_id)
            return None if balance is None or not balance.ahead else balance.since
        book = self._books.get((account_id, contract_id))
        return None if book is None or book.settled else book.since

    def unsettled_contracts(self, account_id: int) -> set[str]:
        return {c for (a, c), book in self._books.items() if a == account_id and not book.settled}

    def _move(self, position: Position) -> PositionChange:
        account_positions = self._positions.get(position.account_id, {})
        before = account_positions.get(position.contract_id)
        if position.is_closed:
            if before is not None:
                self._remove_position(before)
            return PositionChange(before, None)
        now = self._clock.now()
        if before is None or before.sign != position.type.sign:
            opened = position.creation_timestamp or now
            # A reconnect can show a position that opened long ago: keep the gateway's time,
            # but never a time in the future.
            opened = min(opened, now)
            after = PositionState(position, opened, now)
        elif position.size > before.size:
            after = PositionState(position, before.opened, now)
        else:
            after = replace(before, position=position)
        self._set_position(after)
        return PositionChange(before, after)

    def get_position(self, account_id: int, contract_id: str) -> PositionState | None:
        return self._positions.get(account_id, {}).get(contract_id)

    def get_all_positions(self, account_id: int) -> list[PositionState]:
        return list(self._positions.get(account_id, {}).values())

    def get_position_count(self, account_id: int) -> int:
        """Open contracts across all positions (sum of sizes)."""
        return sum(p.size for p in self._positions.get(account_id, {}).values())

    def get_contract_count(self, account_id: int, contract_id: str) -> int:
        state = self.get_position(account_id, contract_id)
        return 0 if state is None else state.size

    def accounts_holding(self, contract_id: str) -> set[int]:
        return self._holders.get(contract_id, set())

    def contracts_with_positions(self) -> frozenset[str]:
        return frozenset(self._holders)

    def position_accounts(self) -> list[int]:
        return [account for account, positions in self._positions.items() if positions]

    # --- orders --------------------------------------------------------------------------

    def update_order(self, order: Order) -> OrderChange:
        account_orders = self._orders.setdefault(order.account_id, {})
        before = account_orders.get(order.id)
        if order.status.is_terminal:
            self._filled.discard((order.account_id, order.id))
            if before is not None:
                del account_orders[order.id]
                self._db.defer("DELETE FROM orders WHERE order_id = ?", (order.id,))
            return OrderChange(before, None, ended=order)
        account_orders[order.id] = order
        if before != order:
            self._db.defer(
                "INSERT OR REPLACE INTO orders (order_id, account_id, payload) VALUES (?, ?, ?)",
                (order.id, order.account_id, order.model_dump_json()),
            )
        return OrderChange(before, order)

    def note_fill(self, trade: Trade) -> None:
        """A fill of an order's whole size: the order is done, whatever its last update said
        (its own update, the next in the gateway's burst, may still wait behind the fill)."""
        key = (trade.account_id, trade.order_id)
        order = self.get_order(*key) if trade.order_id else None
        if order is not None and order.status.is_working and trade.size >= order.size:
            self._filled.add(key)

    def working_orders(self, account_id: int) -> list[Order]:
        """The account's orders that can still fill: the state's, less those a fill is known
        to have filled completely (cancelling one of those can only come back "not found")."""
        return [
            order
            for order in self.get_all_orders(account_id)
            if (account_id, order.id) not in self._filled
        ]

    def remove_order(self, account_id: int, order_id: int) -> Order | None:
        self._filled.discard((account_id, order_id))
        order = self._orders.get(account_id, {}).pop(order_id, None)
        if order is not None:
            self._db.defer("DELETE FROM orders WHERE order_id = ?", (order_id,))
        return order

    def get_order(self, account_id: int, order_id: int) -> Order | None:
        return self._orders.get(account_id, {}).get(order_id)

    def get_all_orders(self, account_id: int) -> list[Order]:
        return list(self._orders.get(account_id, {}).values())

    def get_orders_for_position(self, account_id: int, contract_id: str) -> list[Order]:
        return [o for o in self.get_all_orders(account_id) if o.contract_id == contract_id]

    def protective_orders(self, account_id: int, contract_id: str) -> list[Order]:
        """Working stop orders on the closing side of the position (its stop losses)."""
        state = self.get_position(account_id, contract_id)
        if state is None:
            return []
        closing_side = OrderSide.ASK if state.sign > 0 else OrderSide.BID
        return [
            order
            for order in self.get_orders_for_position(account_id, contract_id)
            if order.type.is_stop and order.side is closing_side and order.status.is_working
        ]

    def increases_exposure(self, order: Order) -> bool:
        """Would this working order open or add to a position (an entry), rather than reduce?"""
        state = self.get_position(order.account_id, order.contract_id)
        if state is None:
            return True
        return order.side.sign == state.sign or order.size > state.size

    # --- internals -----------------------------------------------------------------------

    def _set_position(self, state: PositionState) -> None:
        self._positions.setdefault(state.account_id, {})[state.contract_id] = state
        self._holders.setdefault(state.contract_id, set()).add(state.account_id)
        self._db.defer(
            "INSERT OR REPLACE INTO positions (account_id, contract_id, payload, opened, grown) "
            "VALUES (?, ?, ?, ?, ?)",
            lambda: (  # a frozen state: serialised when written, not on the way to a breach
                state.account_id,
                state.contract_id,
                state.position.model_dump_json(),
                to_db_time(state.opened),
                to_db_time(state.grown),
            ),
        )

    def _remove_position(self, state: PositionState) -> None:
        positions = self._positions.get(state.account_id, {})
        positions.pop(state.contract_id, None)
        holders = self._holders.get(state.contract_id)
        if holders is not None:
            holders.discard(state.account_id)
            if not holders:
                del self._holders[state.contract_id]
        self._db.defer(
            "DELETE FROM positions WHERE account_id = ? AND contract_id = ?",
            (state.account_id, state.contract_id),
        )

    def position_updates(self, account_id: int, positions: Iterable[Position]) -> list[Position]:
        """Position events that bring our state to the REST truth (size 0 for the ones gone)."""
        live = {p.contract_id: p for p in positions if p.size > 0}
        held = self._positions.get(account_id, {})
        updates = [
            state.position.model_copy(update={"size": 0, "type": PositionType.UNDEFINED})
            for contract_id, state in held.items()
            if contract_id not in live
        ]
        updates += [
            fresh
            for contract_id, fresh in live.items()
            if contract_id not in held or held[contract_id].position != fresh
        ]
        return updates

    def order_updates(
        self, account_id: int, orders: Iterable[Order]
    ) -> tuple[list[Order], list[Order]]:
        """(orders to apply, orders we hold that REST no longer shows).

        Suspended bracket children are never in `Order/searchOpen`, so they are not gone.
        """
        rest_orders = {o.id: o for o in orders}
        changed = [o for oid, o in rest_orders.items() if self.get_order(account_id, oid) != o]
        gone = [
            o
            for oid, o in self._orders.get(account_id, {}).items()
            if oid not in rest_orders and o.status is not OrderStatus.SUSPENDED
        ]
        return changed, gone
