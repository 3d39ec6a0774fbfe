"""Secrets stay secret, and the admin's doors stay shut.

The main test runs the real daemon (`riskman --no-ui`, DEBUG logs, JSON) against the
simulator through a session with breaches, a forced flatten, dropped sockets, an expired
token, a `GatewayLogout`, malformed frames and a 500 on a close, with the admin password set
through `riskman set-admin-password`; then it searches everything riskman wrote (stdout,
stderr, every file, the raw bytes of the database and its write-ahead log taken while it ran,
and every table dumped as text) for the API key, every token the simulator issued and the
password.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from riskman.core.clock import FakeClock
from riskman.core.locks import Unlock
from riskman.core.redaction import remember_secret
from riskman.engine.engine import Engine
from riskman.logs import JsonFormatter, setup_logging
from riskman.rules import ALL_RULES
from riskman.sim import Simulator
from tests.conftest import HOLIDAYS, make_settings
from tests.e2e.conftest import MNQ, buy, eventually, sim_positions
from tests.fakes import T0, FakeGateway

PASSWORD = "pw-" + secrets.token_hex(8)
API_KEY = "rk-" + secrets.token_hex(16)
USERNAME = "secret-grep-user"


@pytest.fixture
async def secret_sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        seed=11, quote_interval=None, ping_interval=1.0, credentials={USERNAME: API_KEY}
    )
    await simulator.start(port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def _cli(*args: str, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riskman.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("RISKMAN_")},
    )


def _issued_tokens(sim: Simulator) -> set[str]:
    tokens = set()
    for request in sim.requests:
        reply = request.response or {}
        for key in ("token", "newToken"):
            value = reply.get(key)
            if isinstance(value, str) and value:
                tokens.add(value)
    return tokens


def _needles(tokens: set[str]) -> dict[str, bytes]:
    needles = {"API key": API_KEY.encode(), "admin password": PASSWORD.encode()}
    for n, token in enumerate(sorted(tokens)):
        needles[f"token {n}"] = token.encode()
        # The signature alone is unique to the token: a partly printed token shows up too.
        needles[f"token {n} signature"] = token.rsplit(".", 1)[-1].encode()
    return needles


def _dump_tables(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        out = io.StringIO()
        for line in conn.iterdump():
            out.write(line + "\n")
        return out.getvalue()
    finally:
        conn.close()


async def test_no_secret_anywhere_riskman_wrote_during_a_full_session(
    secret_sim: Simulator, tmp_path: Path
) -> None:
    sim = secret_sim
    account = sim.account_ids[0]
    config_dir, data_dir, loot = tmp_path / "etc", tmp_path / "var", tmp_path / "loot"
    for folder in (config_dir, data_dir, loot):
        folder.mkdir()
    shutil.copyfile(HOLIDAYS, config_dir / "holidays.yaml")
    key_file = config_dir / "api_key"
    key_file.write_text(API_KEY + "\n")
    key_file.chmod(0o600)
    config = config_dir / "riskman.yaml"
    config.write_text(
        "gateway:\n"
        f"  api_url: {sim.base_url}\n"
        f"  user_hub_url: {sim.user_hub_url}\n"
        f"  market_hub_url: {sim.market_hub_url}\n"
        f"  username: {USERNAME}\n"
        "  api_key_file: api_key\n"
        "  hub_silence_timeout: 2\n"
        "  stale_poll_interval: 0.5\n"
        "  reconnect_max_backoff: 0.5\n"
        "  request_timeout: 2\n"
        f"accounts: [{account}]\n"
        "holidays_file: holidays.yaml\n"
        f"database: {data_dir / 'riskman.db'}\n"
        "enforcement: {verify_after: 0.5}\n"
        "rules:\n"
        "  max_contracts: {limit: 2}\n"
        "  daily_realized_loss: {limit: 40, include_unrealized: false}\n"
    )

    checked = await asyncio.to_thread(_cli, "check-config", "--config", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    password = await asyncio.to_thread(
        _cli, "set-admin-password", "--config", str(config), stdin=PASSWORD + "\n", cwd=tmp_path
    )
    assert password.returncode == 0, password.stderr
    hash_file = data_dir / "admin.hash"
    assert stat.S_IMODE(hash_file.stat().st_mode) == 0o600

    stdout, stderr = (loot / "stdout").open("wb"), (loot / "stderr").open("wb")
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "riskman.cli",
        "--no-ui",
        "--config",
        str(config),
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
        stdout=stdout,
        stderr=stderr,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("RISKMAN_")},
    )
    try:
        await sim.wait_for_subscription("user", "SubscribeTrades", account, timeout=30)
        await sim.wait_for_request("Trade/search", timeout=30)

        sim.set_price(MNQ, "24500")
        buy(sim, account, MNQ, 3)  # over the limit of 2: riskman reduces
        await eventually(lambda: sim_positions(sim, account)[MNQ].size == 2, timeout=20)

        # Dropped sockets, twice, with and without a close message.
        for close_message in (False, True):
            sim.faults.drop_connections(close_message=close_message)
            await sim.wait_for_subscription("user", "SubscribeTrades", account, timeout=20)
        # Malformed frames on both hubs.
        sim.faults.send_malformed("user", "bad_payload")
        sim.faults.send_malformed("market", "not_json")
        # Every token expires; the hubs must come back with new ones.
        sim.expire_tokens()
        sim.faults.drop_connections()
        await sim.wait_for_subscription("user", "SubscribeTrades", account, timeout=20)
        # The gateway logs the session out.
        sim.send_logout("user")
        await eventually(lambda: sim.connection_count("user") == 1, timeout=20)
        await sim.wait_for_subscription("user", "SubscribeTrades", account, timeout=20)
        # A silent hub (rebuilt), and a close answered 500 once while riskman flattens.
        sim.faults.silence("user")
        sim.faults.fail("Position/closeContract", http_status=500, times=1)
        sim.set_price(MNQ, "24470")  # the two MNQ lose 60 once closed: the daily limit
        sim.close_position(account, MNQ)
        buy(sim, account, MNQ, 1)  # opened while locked: riskman closes it (after the 500)
        await eventually(lambda: MNQ not in sim_positions(sim, account), timeout=30)
        await sim.wait_for_subscription("user", "SubscribeTrades", account, timeout=20)

        # The database as it is while riskman runs (write-ahead log not yet checkpointed).
        for name in ("riskman.db", "riskman.db-wal", "riskman.db-shm"):
            source = data_dir / name
            if source.exists():
                shutil.copyfile(source, loot / f"running-{name}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(daemon.wait(), 30)
        finally:
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()
            stdout.close()
            stderr.close()
    assert code == 0, (loot / "stderr").read_text()[-3000:]

    tokens = _issued_tokens(sim)
    assert len(tokens) >= 3, "the session should have needed several tokens"
    needles = _needles(tokens)
    assert needles["API key"] in key_file.read_bytes()  # the search does find what is there
    texts: dict[str, bytes] = {
        "check-config output": (checked.stdout + checked.stderr).encode(),
        "set-admin-password output": (password.stdout + password.stderr).encode(),
        "database tables": _dump_tables(data_dir / "riskman.db").encode(),
    }
    for root in (config_dir, data_dir, loot, tmp_path):
        for path in sorted(root.rglob("*")) if root != tmp_path else sorted(root.glob("*")):
            if path.is_file() and path != key_file:
                texts[str(path.relative_to(tmp_path))] = path.read_bytes()
    found = [
        f"{secret} in {where}"
        for where, content in texts.items()
        for secret, needle in needles.items()
        if needle in content
    ]
    assert found == []

    log = (loot / "stderr").read_text()
    # Proof the search had something to search: the session really happened and was logged.
    # `--log-format json` is one JSON object per line, nothing else (no stray warnings).
    lines = [json.loads(line) for line in log.splitlines()]
    assert any(line.get("rule") == "RULE-003" for line in lines)
    assert any("GatewayLogout" in line["msg"] for line in lines)
    assert any(line["level"] == "debug" for line in lines)
    # The hub URL carries the token: it is never logged, not even redacted.
    assert "access_token" not in log
    assert "/hubs/user?" not in log
    # The API key file was the only place the key was, and it is private.
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_secret_in_an_exception_traceback_is_redacted_in_text_and_json_logs() -> None:
    """Exceptions are logged with their traceback; a token inside an exception message
    (a library echoing a URL, say) must not reach the log through it."""
    token = "tok-" + secrets.token_hex(12)
    remember_secret(token)
    logger = logging.getLogger("riskman.test.redaction")
    for fmt in ("text", "json"):
        stream = io.StringIO()
        handler = setup_logging(fmt, "DEBUG", stream)
        try:
            try:
                raise ConnectionError(f"wss://gateway/hubs/user?access_token={token} refused")
            except ConnectionError:
                logger.exception("hub connect failed")
        finally:
            logging.getLogger().removeHandler(handler)
        output = stream.getvalue()
        assert "hub connect failed" in output and "ConnectionError" in output
        assert token not in output, fmt


def test_json_formatter_redacts_a_preformatted_traceback() -> None:
    token = "tok-" + secrets.token_hex(12)
    remember_secret(token)
    record = logging.LogRecord("riskman", logging.ERROR, __file__, 1, "failed", None, None)
    record.exc_text = f"Traceback...\nValueError: {token}"
    assert token not in JsonFormatter().format(record)


async def test_every_lockout_clear_is_audited_with_its_reason(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    engine = await Engine.open(
        make_settings(tmp_path), FakeGateway(), clock=clock, rule_classes=ALL_RULES
    )
    try:
        await engine.start()
        await engine.lockouts.set_lockout(
            7, "daily loss", None, rule="RULE-014", unlock=Unlock.ADMIN
        )
        with pytest.raises(ValueError, match="reason"):
            await engine.request_unlock(7, "   ")
        with pytest.raises(ValueError, match="at least 10 characters"):
            await engine.request_unlock(7, "x")
        assert engine.lockouts.is_locked_out(7)
        await engine.request_unlock(7, "coach agreed: new plan for tomorrow")
        assert engine.lockouts.is_locked_out(7)
        await clock.advance(engine.settings.admin.unlock_delay)
        assert not engine.lockouts.is_locked_out(7)
        rows = await engine.db.fetchall(
            "SELECT action, target, old_value, new_value, reason FROM admin_audit "
            "WHERE action != 'new_database'"
        )
        assert [tuple(r) for r in rows] == [
            (
                "unlock_requested",
                "account 7 every lock",
                None,
                "ends at 2026-11-18T15:30:00+00:00",
                "coach agreed: new plan for tomorrow",
            ),
            (
                "clear_lockout",
                "account 7 RULE-014",
                "lockout: daily loss",
                "cleared",
                "coach agreed: new plan for tomorrow",
            ),
        ]
    finally:
        await engine.close()


def test_setting_the_admin_password_from_the_command_line_is_audited(tmp_path: Path) -> None:
    shutil.copyfile(HOLIDAYS, tmp_path / "holidays.yaml")
    config = tmp_path / "riskman.yaml"
    config.write_text("database: riskman.db\nholidays_file: holidays.yaml\n")
    done = _cli("set-admin-password", "--config", str(config), stdin=PASSWORD + "\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(tmp_path / "riskman.db")
    try:
        rows = conn.execute(
            "SELECT action, target, old_value, new_value FROM admin_audit"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("password", "admin password", None, "set (command line)")]
    assert PASSWORD not in _dump_tables(tmp_path / "riskman.db")
