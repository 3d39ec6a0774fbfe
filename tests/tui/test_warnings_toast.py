"""A warning before a limit reaches the trader: a toast and the terminal bell."""

from __future__ import annotations

from typing import Any

from riskman.core.views import LimitWarning
from riskman.tui.app import RiskmanApp
from tests.tui.conftest import ACC_A, SIZE, engine_of, running, until


async def test_a_limit_warning_rings_the_bell_and_shows_a_toast(
    app: RiskmanApp, monkeypatch: Any
) -> None:
    bells: list[bool] = []
    monkeypatch.setattr(app, "bell", lambda: bells.append(True))
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        bells.clear()
        engine._publish(
            LimitWarning(
                ACC_A,
                "RULE-003",
                90,
                0.91,
                "RULE-003 Daily loss limit: 90% used",
                engine.clock.now(),
            )
        )
        app.mark_dirty()
        await until(
            pilot,
            lambda: any("90% used" in str(n.message) for n in app._notifications),
        )
        assert bells
        toast = next(n for n in app._notifications if "90% used" in str(n.message))
        assert toast.severity == "warning" and f"account {ACC_A}" in toast.title
