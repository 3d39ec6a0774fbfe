"""Notifications: engine changes become short messages, sent in the background with retries,
rate-limited per kind and account, never delaying enforcement; real Apprise to a real HTTP
receiver on loopback; `riskman notify-test`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from riskman.cli import main
from riskman.config import NotifyConfig, load_config
from riskman.core.ports import TradeEvent
from riskman.core.views import FeedHealth, FeedState, LimitWarning
from riskman.notify import AppriseSender, Message, Notifier
from riskman.rules.daily_realized_loss import DailyRealizedLoss
from riskman.rules.trade_frequency_limit import TradeFrequencyLimit
from tests.conftest import HOLIDAYS, EngineFactory, make_settings
from tests.fakes import FakeGateway, settle, trade

ACC = 7


class Recorder:
    """A Sender that records, can fail the first `fail` attempts, and can block."""

    def __init__(self, fail: int = 0, targets: int = 1) -> None:
        self.labels = [f"URL {n} (test://)" for n in range(1, targets + 1)]
        self.sent: list[tuple[str, str]] = []
        self.attempts = 0
        self.fail = fail
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.attempted = threading.Semaphore(0)

    def send(self, title: str, body: str, only: Sequence[int] | None = None) -> list[int]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.attempts += 1
        self.attempted.release()
        if self.attempts <= self.fail:
            return list(range(len(self.labels))) if only is None else list(only)
        self.sent.append((title, body))
        return []


def _notifier(engine: Any, sender: Recorder, **config: Any) -> Notifier:
    notifier = Notifier.for_engine(engine, sender)
    assert notifier is not None
    if config:
        notifier.config = NotifyConfig(**config)
        notifier._events = set(notifier.config.events)
    notifier.start()
    return notifier


async def _eventually(predicate: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def _backing_off(notifier: Notifier, sender: Recorder, clock: Any) -> None:
    """Wait until an attempt has failed and the notifier sleeps on the clock before the next."""
    assert await asyncio.to_thread(sender.attempted.acquire, True, 10)
    await _eventually(lambda: notifier.backing_off)


async def _idle(notifier: Notifier) -> None:
    async with asyncio.timeout(10):
        await notifier.idle()


LOSS = {"daily_realized_loss": {"enabled": True, "limit": 500}}


async def test_lockout_message_says_account_rule_numbers_and_until_when(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    sender = Recorder()
    notifier = _notifier(engine, sender)
    await engine.process(TradeEvent(trade(ACC, pnl="-520")))
    await settle(engine)
    await _idle(notifier)
    await notifier.stop()
    bodies = [body for _, body in sender.sent]
    assert len(bodies) == 1, bodies
    body = bodies[0]
    assert "7" in body and "LOCKED" in body and "RULE-003" in body
    assert "-$520.00" in body and "$500" in body
    # The reset is 17:00 in the configured zone (America/Chicago).
    assert "until the daily reset, 17:00 CST" in body


async def test_a_stuck_notification_never_delays_enforcement(
    make_engine: EngineFactory, gateway: FakeGateway
) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    sender = Recorder()
    sender.gate = threading.Event()  # the receiver hangs
    notifier = _notifier(engine, sender)
    notifier.post(Message("warning", ACC, "an earlier message, stuck in the thread"))
    await asyncio.to_thread(sender.entered.wait, 5)
    await engine.process(TradeEvent(trade(ACC, pnl="-600")))
    await settle(engine)
    try:
        assert engine.lockouts.is_locked_out(ACC)
        assert any(r.action == "flatten" for r in engine.recent_log())
        assert sender.sent == []  # still stuck, and the engine did not wait for it
    finally:
        sender.gate.set()
    await _idle(notifier)
    await notifier.stop()
    assert len(sender.sent) == 2


async def test_one_message_per_kind_and_account_per_interval_then_a_summary(
    make_engine: EngineFactory, clock: Any
) -> None:
    engine = await make_engine({}, rule_classes=[])
    sender = Recorder()
    notifier = _notifier(engine, sender)
    for n in range(4):
        notifier.post(Message("cooldown", ACC, f"cooldown {n}"))
    notifier.post(Message("cooldown", 8, "other account"))
    notifier.post(Message("lockout", ACC, "other kind"))
    await _idle(notifier)
    assert [body for _, body in sender.sent] == ["cooldown 0", "other account", "other kind"]
    assert notifier.stats.held_back == 3
    await clock.advance(10)
    await _idle(notifier)
    summary = sender.sent[-1][1]
    assert len(sender.sent) == 4
    assert summary.startswith("cooldown 3\n(2 earlier cooldown message(s) held back:)")
    assert "- cooldown 1" in summary and "- cooldown 2" in summary
    await notifier.stop()


async def test_failed_sends_are_retried_with_backoff(
    make_engine: EngineFactory, clock: Any
) -> None:
    engine = await make_engine({}, rule_classes=[])
    sender = Recorder(fail=2)
    notifier = _notifier(engine, sender)
    notifier.post(Message("lockout", ACC, "locked"))
    await _backing_off(notifier, sender, clock)
    await clock.advance(2)  # first backoff
    await _backing_off(notifier, sender, clock)
    await clock.advance(4)  # doubled
    await _idle(notifier)
    assert sender.sent == [("riskman", "locked")]
    assert notifier.stats.sent == 1 and notifier.stats.failed == 0
    await notifier.stop()


async def test_a_send_that_keeps_failing_is_logged_never_raised(
    make_engine: EngineFactory, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await make_engine({}, rule_classes=[])
    sender = Recorder(fail=100)
    notifier = _notifier(engine, sender, retries=1)
    notifier.post(Message("lockout", ACC, "locked"))
    await _backing_off(notifier, sender, clock)
    with caplog.at_level(logging.WARNING, logger="riskman.notify"):
        await clock.advance(2)
        await _idle(notifier)
    assert notifier.stats.failed == 1
    assert "not delivered to URL 1 (test://) after 2 attempts" in caplog.text
    await notifier.stop()


async def test_events_not_chosen_are_not_sent(make_engine: EngineFactory) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    sender = Recorder()
    notifier = _notifier(engine, sender, events=["warning"])
    await engine.process(TradeEvent(trade(ACC, pnl="-520")))
    await settle(engine)
    engine._publish(LimitWarning(ACC, "RULE-003", 90, 0.9, "90% used", engine.clock.now()))
    await _idle(notifier)
    await notifier.stop()
    assert [body for _, body in sender.sent] == ["7: 90% used"]


async def test_cooldown_unlock_and_feed_messages(make_engine: EngineFactory, clock: Any) -> None:
    rules = {
        "trade_frequency_limit": {
            "enabled": True,
            "per_minute": 1,
            "per_hour": None,
            "per_session": None,
            "cooldowns": {"per_minute": 60},
        }
    }
    engine = await make_engine(rules, rule_classes=[TradeFrequencyLimit])
    sender = Recorder()
    notifier = _notifier(engine, sender)
    await engine.process(TradeEvent(trade(ACC, pnl=None, trade_id=1)))
    await engine.process(TradeEvent(trade(ACC, pnl=None, trade_id=2)))
    await settle(engine)
    await clock.advance(61)
    await settle(engine)
    engine.feed_health(FeedHealth("user", FeedState.CONNECTED))
    engine.feed_health(FeedHealth("user", FeedState.STALE, detail="silent 30 s"))
    engine.feed_health(FeedHealth("market", FeedState.STALE))
    await _idle(notifier)
    await notifier.stop()
    bodies = [body for _, body in sender.sent]
    assert any("COOLDOWN" in b and "RULE-006" in b for b in bodies), bodies
    assert any("ended, by" in b for b in bodies), bodies
    assert any("NOT enforcing" in b and "silent 30 s" in b for b in bodies), bodies
    assert any("Market data is stale" in b for b in bodies), bodies


# --- real Apprise, real HTTP on loopback ------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length).decode()
        type(self).received.append(
            {"path": self.path, "type": self.headers.get("Content-Type"), "body": body}
        )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LOOSER = {"daily_realized_loss": {"enabled": True, "limit": 900}}
MOVE = "All accounts: rules.daily_realized_loss.limit 500 -> 900"


async def test_a_loosening_is_told_when_it_waits_is_cancelled_and_takes_effect(
    make_engine: EngineFactory, clock: Any, tmp_path: Path
) -> None:
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    sender = Recorder()
    notifier = _notifier(engine, sender)
    gap = notifier.config.min_interval + 1  # one message per kind and interval

    await engine.apply_settings(make_settings(tmp_path, LOOSER))
    await _idle(notifier)
    await clock.advance(gap)
    await engine.cancel_pending(None, "rules.daily_realized_loss.limit")
    await _idle(notifier)
    await clock.advance(gap)
    await engine.apply_settings(make_settings(tmp_path, LOOSER), source="yaml")
    await engine.apply_settings(make_settings(tmp_path, LOOSER))  # the same again: no news
    await _idle(notifier)
    await clock.set(engine.resets.next_reset())
    await settle(engine)
    assert engine.settings.rules.daily_realized_loss.limit == 900
    await _idle(notifier)
    await notifier.stop()
    assert [body for _, body in sender.sent] == [
        f"{MOVE} is looser: it takes effect at 17:00 CST.",
        f"{MOVE} cancelled: 500 stays.",
        f"{MOVE} is looser: it takes effect at 17:00 CST.",
        f"{MOVE} now in force (daily reset).",
    ]


async def test_a_loosening_found_at_start_is_told_once(make_engine: EngineFactory) -> None:
    first = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    await first.close()
    engine = await make_engine(LOOSER, rule_classes=[DailyRealizedLoss])  # the file, edited
    sender = Recorder()
    notifier = _notifier(engine, sender)  # as the runtime: after the engine started
    await _idle(notifier)
    await notifier.stop()
    await engine.close()
    again = await make_engine(LOOSER, rule_classes=[DailyRealizedLoss])  # a plain restart
    sender_again = Recorder()
    quiet = _notifier(again, sender_again)
    await _idle(quiet)
    await quiet.stop()
    assert [body for _, body in sender.sent] == [f"{MOVE} is looser: it takes effect at 17:00 CST."]
    assert sender_again.sent == [], "already known: not told at every restart"


async def test_an_account_loosening_names_the_account_and_obeys_notify_events(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    listed = [{"id": ACC}]
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss], accounts=listed)
    sender = Recorder()
    notifier = _notifier(engine, sender, events=["lockout"])
    await engine.apply_settings(make_settings(tmp_path, LOOSER, accounts=listed))
    await _idle(notifier)
    assert sender.sent == [], "pending_change not chosen in notify.events"
    notifier._events.add("pending_change")
    own = {"daily_realized_loss": {"limit": 1200}}
    await engine.apply_settings(
        make_settings(tmp_path, LOOSER, accounts=[{"id": ACC, "rules": own}])
    )
    await _idle(notifier)
    await notifier.stop()
    bodies = [body for _, body in sender.sent]
    assert len(bodies) == 1, bodies
    assert bodies[0].startswith(f"{ACC}: ") and "1200" in bodies[0] and "17:00 CST" in bodies[0]


@pytest.mark.e2e
async def test_real_apprise_delivers_a_pending_change_to_a_loopback_receiver(
    make_engine: EngineFactory, receiver: tuple[int, list[dict[str, Any]]], tmp_path: Path
) -> None:
    port, received = receiver
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    notifier = Notifier.for_engine(engine, AppriseSender([f"json://127.0.0.1:{port}/hook"]))
    assert notifier is not None
    notifier.start()
    await engine.apply_settings(make_settings(tmp_path, LOOSER))
    await _idle(notifier)
    await notifier.stop()
    assert [json.loads(r["body"])["message"] for r in received] == [
        f"{MOVE} is looser: it takes effect at 17:00 CST."
    ]


@pytest.mark.e2e
async def test_real_apprise_delivers_a_lockout_to_a_loopback_receiver(
    make_engine: EngineFactory,
    receiver: tuple[int, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, received = receiver
    engine = await make_engine(LOSS, rule_classes=[DailyRealizedLoss])
    urls = [
        f"json://user:s3cretTOKEN@127.0.0.1:{port}/hook",
        f"form://127.0.0.1:{port}/form",
    ]
    notifier = Notifier.for_engine(engine, AppriseSender(urls))
    assert notifier is not None
    notifier.start()
    with caplog.at_level(logging.DEBUG):
        await engine.process(TradeEvent(trade(ACC, pnl="-505")))
        await settle(engine)
        await _idle(notifier)
    await notifier.stop()
    by_path = {r["path"]: r for r in received}
    assert set(by_path) == {"/hook", "/form"}
    payload = json.loads(by_path["/hook"]["body"])
    assert payload["title"] == "riskman"
    assert "RULE-003" in payload["message"] and "-$505.00" in payload["message"]
    assert "LOCKED" in by_path["/form"]["body"]
    assert "s3cretTOKEN" not in caplog.text


def _config(tmp_path: Path, urls: list[str] | None = None, urls_file: Path | None = None) -> Path:
    lines = [f"holidays_file: {HOLIDAYS}", f"database: {tmp_path / 'riskman.db'}", "notify:"]
    if urls is not None:
        lines.append("  urls:" if urls else "  urls: []")
        lines += [f"    - '{url}'" for url in urls]
    if urls_file is not None:
        lines.append(f"  urls_file: {urls_file}")
    path = tmp_path / "riskman.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.e2e
def test_notify_test_says_per_url_whether_it_went_through(
    tmp_path: Path,
    receiver: tuple[int, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, received = receiver
    dead = _closed_port()
    path = _config(
        tmp_path,
        [f"json://bot:t0kenSECRET@127.0.0.1:{port}/ok", f"json://127.0.0.1:{dead}/?cto=1&rto=1"],
    )
    assert main(["notify-test", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "URL 1 (json://): delivered" in out
    assert "URL 2 (json://): FAILED" in out
    assert "1 of 2 delivered" in out
    assert "t0kenSECRET" not in out
    assert len(received) == 1 and "test message" in json.loads(received[0]["body"])["message"]


@pytest.mark.e2e
def test_notify_test_reads_a_private_urls_file(
    tmp_path: Path,
    receiver: tuple[int, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, received = receiver
    urls_file = tmp_path / "notify_urls"
    urls_file.write_text(f"# my phone\nform://127.0.0.1:{port}/phone\n")
    os.chmod(urls_file, 0o600)
    path = _config(tmp_path, urls_file=urls_file)
    assert main(["notify-test", "--config", str(path)]) == 0
    assert "URL 1 (form://): delivered" in capsys.readouterr().out
    assert [r["path"] for r in received] == ["/phone"]


def test_a_urls_file_others_can_read_is_refused(tmp_path: Path) -> None:
    urls_file = tmp_path / "notify_urls"
    urls_file.write_text("json://127.0.0.1:1/\n")
    os.chmod(urls_file, 0o644)
    path = _config(tmp_path, urls_file=urls_file)
    with pytest.raises(Exception, match=r"notify.urls_file: .*can be read by others"):
        load_config(path)


def test_notify_test_without_urls_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, urls=[])
    assert main(["notify-test", "--config", str(path)]) == 1
    assert "no notification URL" in capsys.readouterr().err


def test_check_config_hides_the_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, urls=["tgram://123456:ABCsecret/987"])
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ABCsecret" not in out and "<URL 1 (tgram://), hidden>" in out
