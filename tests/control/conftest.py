"""Control API fixtures: a real engine (on the simulator, or on the FakeGateway) serving its
control API on a real Unix socket, and the real httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from riskman.admin import PasswordStore
from riskman.config import Settings, load_config
from riskman.control.client import ControlClient
from riskman.control.paths import socket_path
from riskman.control.server import ControlServer
from riskman.core.clock import FakeClock
from riskman.engine.engine import Engine
from riskman.rules import ALL_RULES
from tests.conftest import HOLIDAYS
from tests.e2e.conftest import make_runtime, sim  # noqa: F401 - fixtures
from tests.fakes import CONTRACTS, FakeGateway, contract

PASSWORD = "correct horse battery"


def write_config(folder: Path, data: dict[str, Any]) -> Path:
    """A config file (the admin verbs write to it) with the database beside it."""
    path = folder / "riskman.yaml"
    yaml = YAML()
    yaml.default_flow_style = False
    body = {"holidays_file": str(HOLIDAYS), "database": "riskman.db", **data}
    with path.open("w") as handle:
        yaml.dump(body, handle)
    return path


ServedFactory = Callable[..., Any]


@pytest.fixture
async def served(
    tmp_path: Path, clock: FakeClock, gateway: FakeGateway
) -> AsyncIterator[ServedFactory]:
    """An engine on the FakeGateway, loaded from a real config file, serving its control API;
    returns (engine, server, client). The admin password is PASSWORD."""
    started: list[tuple[Engine, ControlServer, ControlClient]] = []

    async def factory(
        data: dict[str, Any] | None = None, *, password: bool = True
    ) -> tuple[Engine, ControlServer, ControlClient]:
        config = write_config(tmp_path, data or {})
        settings: Settings = load_config(config)
        if password:
            PasswordStore(settings.password_file).set(PASSWORD)
        engine = await Engine.open(settings, gateway, clock=clock, rule_classes=ALL_RULES)
        for contract_id in CONTRACTS:
            engine.contracts.cache_contract(contract(contract_id))
        gateway.sink = engine.submit
        await engine.start()
        server = ControlServer(settings, engine, socket_path(settings))
        await server.start()
        client = ControlClient(server.path)
        started.append((engine, server, client))
        return engine, server, client

    try:
        yield factory
    finally:
        for engine, server, client in started:
            await client.aclose()
            await server.stop()
            await engine.close()
