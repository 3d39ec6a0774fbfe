"""`riskman report`: the day's summary (P&L, trades, breaches and actions per rule) and each
breach report, as text and CSV, read from the database the engine wrote."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from riskman.cli import main
from riskman.core.ports import PositionEvent, QuoteEvent, TradeEvent
from riskman.engine.reports import SETTLE
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from tests.conftest import HOLIDAYS, EngineFactory
from tests.fakes import ES, FakeGateway, position, quote, settle, trade

ACC = 7
LOSS = {"daily_realized_loss": {"enabled": True, "limit": 500}}


@pytest.fixture
async def traded_day(
    make_engine: EngineFactory, gateway: FakeGateway, clock: Any, tmp_path: Path
) -> Path:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    await engine.process(TradeEvent(trade(ACC, pnl="-300", fees="4.50", at=clock.now())))
    pos = position(ACC, ES, 1, "5000")
    gateway.set_position(pos)
    await engine.process(PositionEvent(pos))
    await engine.process(QuoteEvent(ES, quote("4995", bid="4995", ask="4995.25")))
    await settle(engine)
    await clock.advance(SETTLE.total_seconds() + 0.1)
    await settle(engine)
    await engine.close()
    path = tmp_path / "riskman.yaml"
    path.write_text(f"holidays_file: {HOLIDAYS}\ndatabase: {tmp_path / 'riskman.db'}\n")
    return path


def test_report_prints_the_summary_and_each_breach(
    traded_day: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--day", "2026-11-18", "--config", str(traded_day)]) == 0
    out = capsys.readouterr().out
    assert "trading day 2026-11-18 (Tue 17 Nov 17:00 - Wed 18 Nov 17:00 CST)" in out
    assert "Account 7: P&L -$304.50 (fees $4.50), 1 trades, 1 breaches, 1 locks" in out
    assert "RULE-003: close x1, flatten x1, lockout x1" in out
    assert "RULE-003 Daily loss limit" in out
    assert "saw:       -$554.50  (threshold -$500.00)" in out
    assert "price:     ES LONG 1 @ 5000, last 4995 (1.0 s old, from hub), open -$250.00" in out
    assert "after:     LOCKED; positions: flat" in out
    assert "triggered: " in out and "Event" not in out  # the trigger in words
    # Times in the configured zone, as on the screens (the lock ends at the 17:00 CST reset).
    assert "until the daily reset at 17:00:00 CST" in out
    assert "+00:00" not in out


def test_report_csv_has_a_summary_table_and_a_row_per_call(
    traded_day: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--day", "2026-11-18", "--csv", "--config", str(traded_day)]) == 0
    summary, calls = capsys.readouterr().out.split("\r\n\r\n")
    rows = list(csv.DictReader(io.StringIO(summary)))
    assert {(r["rule"], r["action"], r["count"]) for r in rows} == {
        ("RULE-003", "close", "1"),
        ("RULE-003", "flatten", "1"),
        ("RULE-003", "lockout", "1"),
    }
    assert rows[0]["pnl"] == "-304.50" and rows[0]["trades"] == "1"
    calls_rows = list(csv.DictReader(io.StringIO(calls)))
    assert {r["action"] for r in calls_rows} == {"close", "flatten", "lockout"}
    assert all(r["rule"] == "RULE-003" and r["after"] == "LOCKED" for r in calls_rows)
    # Machine-readable: times stay ISO in UTC.
    assert all(r["call_time"].endswith("+00:00") for r in calls_rows)


def test_report_of_a_quiet_day_and_bad_input(
    traded_day: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--day", "2026-11-10", "--config", str(traded_day)]) == 0
    assert "No trading, breach or action recorded that day." in capsys.readouterr().out
    assert main(["report", "--day", "18/11/2026", "--config", str(traded_day)]) == 1
    assert "is not a date YYYY-MM-DD" in capsys.readouterr().err
