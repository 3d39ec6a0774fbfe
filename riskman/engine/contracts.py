"""MOD-007 Contract cache: tick size, tick value and symbol per contract, kept in the database.

`get()` never waits (the hot path); `ensure()` fetches a missing contract in the background
and calls back when it arrives, so a rule that needs tick values runs again then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal

from riskman.core.clock import Clock
from riskman.core.models import Contract
from riskman.core.ports import GatewayPort
from riskman.gateway.errors import GatewayError
from riskman.storage.db import Database, to_db_time
from riskman.symbols import root_of

log = logging.getLogger(__name__)


class ContractCache:
    def __init__(self, db: Database, gateway: GatewayPort, clock: Clock) -> None:
        self._db = db
        self._gateway = gateway
        self._clock = clock
        self._cache: dict[str, Contract] = {}
        self._fetching: dict[str, asyncio.Task[Contract | None]] = {}

    async def restore(self) -> int:
        rows = await self._db.fetchall("SELECT * FROM contracts")
        for row in rows:
            self._cache[row["contract_id"]] = Contract(
                id=row["contract_id"],
                name=row["name"],
                description=row["description"],
                tick_size=Decimal(row["tick_size"]),
                tick_value=Decimal(row["tick_value"]),
                symbol_id=row["symbol_id"],
                active_contract=bool(row["active"]),
            )
        return len(rows)

    def get(self, contract_id: str) -> Contract | None:
        """The cached contract, or None (never waits)."""
        return self._cache.get(contract_id)

    async def get_contract(self, contract_id: str) -> Contract | None:
        """The contract, fetched from `Contract/searchById` on a miss (None if unavailable)."""
        cached = self._cache.get(contract_id)
        if cached is not None:
            return cached
        task = self._fetching.get(contract_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(contract_id))
            self._fetching[contract_id] = task
            task.add_done_callback(lambda _: self._fetching.pop(contract_id, None))
        return await asyncio.shield(task)

    def ensure(self, contract_id: str, on_loaded: Callable[[Contract], None]) -> None:
        """Fetch a missing contract in the background; call `on_loaded` when it is cached."""
        if contract_id in self._cache:
            return

        async def load() -> None:
            contract = await self.get_contract(contract_id)
            if contract is not None:
                on_loaded(contract)

        task = asyncio.get_running_loop().create_task(load())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    def cache_contract(self, contract: Contract) -> None:
        self._cache[contract.id] = contract
        self._db.defer(
            "INSERT OR REPLACE INTO contracts (contract_id, name, description, tick_size, "
            "tick_value, symbol_id, active, cached) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                contract.id,
                contract.name,
                contract.description,
                str(contract.tick_size),
                str(contract.tick_value),
                contract.symbol_id,
                int(contract.active_contract),
                to_db_time(self._clock.now()),
            ),
        )

    def root(self, contract_id: str) -> str:
        """Symbol root (gateway spelling): from the cached symbolId, else from the id."""
        contract = self._cache.get(contract_id)
        if contract is not None and contract.symbol_id:
            return root_of(contract.symbol_id)
        return root_of(contract_id)

    def all(self) -> list[Contract]:
        return list(self._cache.values())

    async def _fetch(self, contract_id: str) -> Contract | None:
        try:
            contract = await self._gateway.get_contract(contract_id)
        except GatewayError as exc:
            log.warning("contract %s unavailable: %s", contract_id, exc)
            return None
        self.cache_contract(contract)
        return contract


_BACKGROUND: set[asyncio.Task[None]] = set()
