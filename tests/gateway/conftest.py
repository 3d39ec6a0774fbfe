"""Fixtures for the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from riskman.config import GatewayConfig
from riskman.core.clock import FakeClock
from riskman.gateway.rest import RestClient, RetryPolicy
from tests.gateway.support import API_KEY, ScriptedGateway


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gateway(fake_clock: FakeClock) -> ScriptedGateway:
    return ScriptedGateway(fake_clock)


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return GatewayConfig(api_url="http://gateway.test", username="demo", request_timeout=2.0)


@pytest.fixture
async def rest(
    gateway: ScriptedGateway, fake_clock: FakeClock, gateway_config: GatewayConfig
) -> AsyncIterator[RestClient]:
    client = RestClient(
        gateway_config,
        API_KEY,
        clock=fake_clock,
        transport=httpx.MockTransport(gateway.handler),
        retry=RetryPolicy(base_delay=0.0),
    )
    yield client
    await client.aclose()
