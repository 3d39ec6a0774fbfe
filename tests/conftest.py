"""Shared fixtures: the fake clock, a real SQLite file per test, settings, an engine."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from riskman.config import Settings
from riskman.core.clock import FakeClock
from riskman.engine.engine import Engine
from riskman.rules import ALL_RULES
from riskman.storage.db import Database
from tests.fakes import CONTRACTS, T0, FakeGateway, contract

REPO = Path(__file__).resolve().parent.parent
HOLIDAYS = REPO / "config" / "holidays.yaml"

# Settings read RISKMAN_* variables: keep the developer's environment out of the tests.
for _name in [n for n in os.environ if n.startswith("RISKMAN_")]:
    del os.environ[_name]


def make_settings(tmp_path: Path, rules: dict[str, Any] | None = None, **top: Any) -> Settings:
    """Settings with only the given rules enabled (plus any top-level keys)."""
    data: dict[str, Any] = {
        "holidays_file": HOLIDAYS,
        "database": tmp_path / "riskman.db",
        "rules": rules or {},
    }
    data.update(top)
    return Settings(**data)


@pytest.fixture(autouse=True)
def _quick_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashes made in this process are cheap (stored hashes carry their own cost); the real
    cost is checked by tests/test_admin_password.py and by the command-line tests."""
    monkeypatch.setattr("riskman.admin._N", 2**14)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "riskman.db")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


EngineFactory = Callable[..., Any]


@pytest.fixture
async def make_engine(
    tmp_path: Path, clock: FakeClock, gateway: FakeGateway
) -> AsyncIterator[EngineFactory]:
    """Build and start engines on the same database file (a restart is a second call)."""
    engines: list[Engine] = []

    async def factory(
        rules: dict[str, Any] | None = None,
        *,
        rule_classes: Any = None,
        link: bool = True,
        preload_contracts: bool = True,
        **top: Any,
    ) -> Engine:
        settings = make_settings(tmp_path, rules, **top)
        engine = await Engine.open(
            settings,
            gateway,
            clock=clock,
            rule_classes=ALL_RULES if rule_classes is None else rule_classes,
        )
        engines.append(engine)
        if preload_contracts:
            for contract_id in CONTRACTS:
                engine.contracts.cache_contract(contract(contract_id))
        if link:
            gateway.sink = engine.submit
        await engine.start()
        await engine.drain()
        return engine

    try:
        yield factory
    finally:
        for engine in engines:
            await engine.close()
