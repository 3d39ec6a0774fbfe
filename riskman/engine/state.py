"""MOD-009 State manager: accounts, open positions and working orders, per account.

Positions are keyed by (account, contract): the gateway keeps one row per contract. A size of 0
removes a position; a terminal status removes an order. Every update returns what changed, so
the lockout gate and the rules can tell an opened or grown position from a reduced one.
Rows are written to the database in the background (batched); they are only a warm start:
REST reconciliation is the truth after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from riskman.core.clock import Clock
from riskman.core.enums import OrderSide, OrderStatus, PositionType
from riskman.core.facts import OrderChange, PositionChange, PositionState
from riskman.core.models import Account, Order, Position
from riskman.storage.db import Database, from_db_time, to_db_time


class StateManager:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._accounts: dict[int, Account] = {}
        self._positions: dict[int, dict[str, PositionState]] = {}
        self._orders: dict[int, dict[int, Order]] = {}
        self._holders: dict[str, set[int]] = {}

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

    def update_account(self, account: Account) -> Account | None:
        before = self._accounts.get(account.id)
        self._accounts[account.id] = account
        if before != account:
            self._db.defer(
                "INSERT OR REPLACE INTO accounts (account_id, payload, updated) VALUES (?, ?, ?)",
                (account.id, account.model_dump_json(), to_db_time(self._clock.now())),
            )
        return before

    def get_account(self, account_id: int) -> Account | None:
        return self._accounts.get(account_id)

    def accounts(self) -> list[Account]:
        return sorted(self._accounts.values(), key=lambda a: a.id)

    # --- positions -----------------------------------------------------------------------

    def update_position(self, position: Position) -> PositionChange:
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

    def remove_order(self, account_id: int, order_id: int) -> Order | None:
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
            (
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
