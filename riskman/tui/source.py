"""Where the terminal gets its engine: a connected `Runtime` in production and in the demo;
tests give an engine built on the FakeGateway through the same small interface."""

from __future__ import annotations

from typing import Protocol

from riskman.engine.engine import Engine
from riskman.runtime import Runtime


class EngineSource(Protocol):
    @property
    def where(self) -> str:
        """What is being connected to, for the "connecting…" line."""
        ...

    async def start(self) -> Engine:
        """Connect and return the running engine; raise StartError with one clear line."""
        ...

    async def stop(self) -> None:
        """Stop everything and flush state; safe to call more than once."""
        ...


class RuntimeSource:
    """The real thing: log in, open the engine, connect the hubs."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def where(self) -> str:
        return f"the gateway at {self.runtime.settings.gateway.api_url}"

    async def start(self) -> Engine:
        return await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()
