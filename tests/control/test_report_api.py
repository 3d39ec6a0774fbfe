"""`GET /v1/report`: the day's summary and breach reports through the real socket."""

from __future__ import annotations

from typing import Any

import pytest

from riskman.control.client import ApiError
from riskman.core.ports import PositionEvent
from riskman.engine.reports import SETTLE
from tests.control.conftest import ServedFactory
from tests.fakes import ES, FakeGateway, position, settle


async def test_report_gives_the_summary_and_each_breach_with_its_calls(
    served: ServedFactory, gateway: FakeGateway, clock: Any
) -> None:
    engine, _server, client = await served(
        {"rules": {"max_contracts": {"enabled": True, "limit": 1, "action": "close_all"}}}
    )
    pos = position(1001, ES, 3)
    gateway.set_position(pos)
    engine.submit(PositionEvent(pos))
    await settle(engine)

    live = await client.report()
    assert live["breaches"] == []  # still collecting its calls
    [pending] = live["open"]
    assert pending["rule"] == "RULE-001" and pending["trigger"].startswith("position")

    await clock.advance(SETTLE.total_seconds() + 0.1)
    await settle(engine)
    report = await client.report(day=live["day"])
    [account] = report["accounts"]
    assert account["account_id"] == 1001 and account["breaches"] == 1
    assert account["actions"] == {"RULE-001": {"close": 1, "flatten": 1}}
    [breach] = report["breaches"]
    assert breach["value"] and breach["threshold"]
    assert sorted(c["action"] for c in breach["calls"]) == ["close", "flatten"]
    assert breach["after"]["positions"] == []

    entry = next(r for r in engine.recent_log() if r.action == "flatten")
    one = await client.breach_report(1001, "RULE-001", entry.ts.isoformat())
    assert one["report"] == breach

    with pytest.raises(ApiError):
        await client.report(day="yesterday")


async def test_history_through_the_socket_and_the_attached_interface(
    served: ServedFactory, tmp_path: Any
) -> None:
    from datetime import date
    from decimal import Decimal

    from riskman.control.attached import AttachedControl
    from riskman.report import AccountDay, DayReport, store_day
    from tests.fakes import T0

    engine, server, client = await served()
    day = DayReport(date(2026, 11, 17), T0, T0, [AccountDay(1001, Decimal("-42.5"), trades=3)], [])
    await store_day(engine.db, day, {}, T0)
    data = await client.history(7)
    assert data["days"] == [
        {
            "day": "2026-11-17",
            "account_id": 1001,
            "realized": "-42.5",
            "trades": 3,
            "breaches": 0,
            "locks": 0,
            "actions": 0,
        }
    ]
    attached = AttachedControl(engine.settings, tmp_path / "riskman.yaml", path=server.path)
    await attached.start()
    try:
        [row] = await attached.history()
        assert row.realized == Decimal("-42.5") and row.day == date(2026, 11, 17)
    finally:
        await attached.stop()
