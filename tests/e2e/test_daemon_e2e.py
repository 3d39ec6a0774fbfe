"""The real daemon: `riskman --no-ui` as a separate process against the simulator.

The simulator runs in the test's event loop; riskman runs as its own process with the shipped
configuration (copied, pointed at the simulator through `RISKMAN_*` variables) and logs JSON
lines on stderr, which are read as they come. Every wait is bounded and waits for a line or a
request, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ruamel.yaml import YAML

from riskman.config import load_config
from riskman.core.enums import OrderSide, OrderType
from riskman.rules import ALL_RULES
from riskman.sim import Simulator
from tests.conftest import REPO
from tests.e2e.conftest import ES, MES, MNQ, RTY, buy, eventually, mark, sell, sim_positions

pytestmark = pytest.mark.e2e

SHIPPED = REPO / "config"
CHICAGO = ZoneInfo("America/Chicago")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NQ = "CON.F.US.ENQ.Z26"
GC = "CON.F.US.GCE.G27"
CL = "CON.F.US.CLE.F27"
YM = "CON.F.US.YM.Z26"
MYM = "CON.F.US.MYM.Z26"
M2K = "CON.F.US.M2K.Z26"
MGC = "CON.F.US.MGC.G27"
MCL = "CON.F.US.MCLE.F27"
START_TIMEOUT = 30.0
"""Generous: a loaded machine takes a few seconds to import and arm a new Python process."""

LogLine = dict[str, Any]


class Daemon:
    """One `riskman --no-ui --log-format json` process; its stderr lines parsed as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path, env: dict[str, str], *args: str) -> Daemon:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "riskman.cli",
            "--no-ui",
            "--config",
            str(config),
            "--log-format",
            "json",
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=config.parent,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            text = raw.decode(errors="replace").rstrip("\n")
            self.raw.append(text)
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                if isinstance(line, dict):
                    self.lines.append(line)
            self._changed.set()
        self._changed.set()

    async def wait_for(
        self, check: Callable[[LogLine], bool], what: str, timeout: float = 15.0
    ) -> LogLine:
        """The first log line `check` accepts, waiting for it (or the process to end)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = next((line for line in self.lines if check(line)), None)
                    if found is not None:
                        return found
                    if self._reader.done():
                        break
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        tail = "\n".join(self.raw[-30:])
        raise AssertionError(f"riskman never logged {what}; its last lines:\n{tail}")

    async def wait_action(
        self, rule: str, account: int, action: str, result: str = "ok", target: str | None = None
    ) -> LogLine:
        """An enforcement line (the fields every action is logged with)."""

        def check(line: LogLine) -> bool:
            return (
                line.get("rule") == rule
                and line.get("account") == account
                and line.get("action") == action
                and line.get("result") == result
                and (target is None or line.get("target") == target)
            )

        line = await self.wait_for(check, f"{rule} account={account} {action} {result}")
        assert line["reason"], "every enforcement line says why"
        assert line["level"] in {"info", "warning"} and line["logger"] == "riskman.enforcement"
        return line

    async def armed(self) -> None:
        await self.wait_for(
            lambda line: line.get("msg", "").startswith("armed:"), "armed", START_TIMEOUT
        )

    async def stop(self, signum: signal.Signals, timeout: float = 30.0) -> int:
        self.process.send_signal(signum)
        return await self.wait_exit(timeout)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            await self._reader
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.wait_exit()


@pytest.fixture
async def daemons() -> AsyncIterator[Callable[..., Any]]:
    """Start daemons; any still running at the end of the test is killed."""
    started: list[Daemon] = []

    async def start(config: Path, env: dict[str, str], *args: str) -> Daemon:
        daemon = await Daemon.start(config, env, *args)
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            await daemon.kill()


def base_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RISKMAN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def sim_env(sim: Simulator, **extra: str) -> dict[str, str]:
    """Point the shipped gateway section at the simulator, as an operator would."""
    settings = {
        "RISKMAN_GATEWAY__API_URL": sim.base_url,
        "RISKMAN_GATEWAY__USER_HUB_URL": sim.user_hub_url,
        "RISKMAN_GATEWAY__MARKET_HUB_URL": sim.market_hub_url,
        "RISKMAN_GATEWAY__USERNAME": sim.username,
        "RISKMAN_GATEWAY__API_KEY": sim.api_key,
    }
    return base_env(**{**settings, **extra})


def hhmm(at: datetime) -> str:
    return at.astimezone(CHICAGO).strftime("%H:%M")


def open_session(now: datetime) -> dict[str, Any]:
    """The shipped session widened around now, every day (the test may run at night, on a
    weekend or on a holiday), so only the account that is meant to break it does."""
    return {
        "start": hhmm(now - timedelta(hours=2)),
        "end": hhmm(now + timedelta(hours=2)),
        "days": EVERY_DAY,
        "respect_holidays": False,
    }


def shipped_config(folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of config/riskman.yaml (and its holidays file), edited in place, comments kept."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHIPPED / "holidays.yaml", folder / "holidays.yaml")
    yaml = YAML()
    data = yaml.load((SHIPPED / "riskman.yaml").read_text())
    edit(data)
    path = folder / "riskman.yaml"
    with path.open("w") as out:
        yaml.dump(data, out)
    return path


def db_rows(database: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's database from outside (read-only; WAL lets it write meanwhile)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return db.execute(query, args).fetchall()


def active_locks(database: Path) -> set[tuple[int, str]]:
    if not database.exists():
        return set()
    try:
        rows = db_rows(database, "SELECT account_id, rule FROM lockouts WHERE cleared IS NULL")
    except sqlite3.OperationalError:  # the schema is not there yet
        return set()
    return {(row[0], row[1]) for row in rows}


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def closed(sim: Simulator, account: int, contract: str, since: float) -> None:
    await sim.wait_for_request(
        "Position/closeContract",
        lambda r: r.body == {"accountId": account, "contractId": contract},
        timeout=15,
        since=since,
    )
    await eventually(lambda: contract not in sim_positions(sim, account), timeout=15)


# --- the shipped configuration, every enabled rule broken ------------------------------------


SCENARIOS = {
    "RULE-001": "max_contracts",
    "RULE-002": "max_contracts_per_instrument",
    "RULE-003": "daily_realized_loss",
    "RULE-004": "daily_unrealized_loss",
    "RULE-006": "trade_frequency_limit",
    "RULE-007": "cooldown_after_loss",
    "RULE-009": "session_block_outside",
    "RULE-010": "auth_loss_guard",
}
"""The rules the scenario below breaks: exactly the ones the shipped config enables."""


def test_the_daemon_scenario_covers_every_rule_the_shipped_config_enables() -> None:
    settings = load_config(SHIPPED / "riskman.yaml")
    enabled = {rule.id: rule.key for rule in ALL_RULES if getattr(settings.rules, rule.key).enabled}
    assert enabled == SCENARIOS, "a rule enabled in config/riskman.yaml needs a daemon scenario"


async def test_daemon_with_the_shipped_config_enforces_every_enabled_rule(
    sim: Simulator, daemons: Callable[..., Any], tmp_path: Path
) -> None:
    # One account per rule, so that one rule's lock does not hide the next rule's breach.
    for n in range(3, 9):
        sim.add_account(f"DEMO-50K-{n}")
    a001, a002, a003, a004, a006, a007, a009, a010 = sim.account_ids
    now = datetime.now(CHICAGO)

    def edit(data: dict[str, Any]) -> None:
        data["rules"]["session_block_outside"].update(open_session(now))
        # The account that breaks RULE-009 trades in a session that starts in two hours.
        closed_now = {
            "start": hhmm(now + timedelta(hours=2)),
            "end": hhmm(now + timedelta(hours=3)),
        }
        data["accounts"] = [
            a if a != a009 else {"id": a, "rules": {"session_block_outside": closed_now}}
            for a in sim.account_ids
        ]

    config = shipped_config(tmp_path / "etc", edit)
    database = tmp_path / "etc" / "riskman.db"
    # Held before riskman starts: RULE-009 must flatten it at once.
    buy(sim, a009, NQ, 1)

    since = mark()
    daemon: Daemon = await daemons(config, sim_env(sim))
    await daemon.armed()

    # RULE-009: outside its session at start: flattened and locked until the session starts.
    await closed(sim, a009, NQ, since)
    await daemon.wait_action("RULE-009", a009, "flatten")
    await daemon.wait_action("RULE-009", a009, "lockout", result="lockout", target="account")

    # RULE-001: 6 contracts open (ES 2, MES 2, MNQ 2) against 5: the newest gives one up.
    buy(sim, a001, ES, 2)
    buy(sim, a001, MES, 2)
    buy(sim, a001, MNQ, 2)
    # RULE-002: MNQ is limited to 2.
    buy(sim, a002, MNQ, 3)
    # RULE-003: one GC contract loses $520 on one quote: past both the $500 day and the $300
    # position limits; the day's lockout wins (and flattens).
    buy(sim, a003, GC, 1)  # 3450.10
    # RULE-004: one CL contract loses $330 (position limit $300, day limit not reached).
    buy(sim, a004, CL, 1)  # 64.51
    # RULE-006: a 4th trade within a minute (3 allowed), each in its own symbol.
    for contract in (MYM, M2K, MGC):
        buy(sim, a006, contract, 1)
    # RULE-007: a closing fill that loses $105 (the $100 tier).
    buy(sim, a007, YM, 1)  # 46001
    # RULE-010: the gateway withdraws trading permission while a position and a working
    # order are open.
    buy(sim, a010, MES, 1)
    entry = sim.submit_order(a010, RTY, OrderSide.BID, 1, OrderType.LIMIT, limit_price="2300")

    # riskman has seen the positions that are about to lose once it asks for their quotes.
    for contract in (GC, CL, YM):
        await sim.wait_for_subscription("market", "SubscribeContractQuotes", contract, timeout=15)

    since = mark()
    sim.set_price(GC, "3444.9")  # GC long from 3450.10: -$520
    sim.set_price(CL, "64.18")  # CL long from 64.51: -$330
    sim.set_price(YM, "45980")
    sell(sim, a007, YM, 1)  # -$105 realized
    buy(sim, a006, MCL, 1)  # the 4th trade
    sim.set_can_trade(a010, False)

    line = await daemon.wait_action("RULE-001", a001, "reduce", target=MNQ)
    assert "6 contracts open (net), limit 5" in line["reason"]
    await eventually(lambda: sim_positions(sim, a001)[MNQ].size == 1)
    await daemon.wait_action("RULE-002", a002, "reduce", target=MNQ)
    await eventually(lambda: sim_positions(sim, a002)[MNQ].size == 2)
    partial = [r.body for r in sim.requests if r.endpoint == "Position/partialCloseContract"]
    assert {body["accountId"]: body for body in partial} == {
        a001: {"accountId": a001, "contractId": MNQ, "size": 1},
        a002: {"accountId": a002, "contractId": MNQ, "size": 1},
    }

    await closed(sim, a003, GC, since)
    line = await daemon.wait_action("RULE-003", a003, "flatten")
    assert "-$521.60" in line["reason"]  # the $1.60 opening fee counts
    await daemon.wait_action("RULE-003", a003, "lockout", result="lockout", target="account")

    await closed(sim, a004, CL, since)
    line = await daemon.wait_action("RULE-004", a004, "close", target=CL)
    assert "-$330.00" in line["reason"]

    await daemon.wait_action("RULE-006", a006, "cooldown", result="cooldown", target="account")
    await closed(sim, a006, MCL, since)  # opened by the trade that broke the limit
    await daemon.wait_action("LOCKOUT", a006, "close", target=MCL)

    line = await daemon.wait_action("RULE-007", a007, "cooldown", result="cooldown")
    assert "tier $100.00" in line["reason"]

    await closed(sim, a010, MES, since)
    await sim.wait_for_request(
        "Order/cancel", lambda r: r.body == {"accountId": a010, "orderId": entry}, since=since
    )
    await daemon.wait_action("RULE-010", a010, "flatten")
    await daemon.wait_action("RULE-010", a010, "lockout", result="lockout")

    # Every lock is enforced: a position opened in a locked or cooling-down account is closed.
    for account in (a003, a006, a007, a009):
        since = mark()
        buy(sim, account, MES, 1)
        await closed(sim, account, MES, since)
        await daemon.wait_action("LOCKOUT", account, "close", target=MES)

    # SIGTERM: exit 0 once the state is flushed; what the log said is in the database.
    assert await daemon.stop(signal.SIGTERM) == 0
    assert any(line.get("msg") == "stopped" for line in daemon.lines)
    assert active_locks(database) >= {
        (a003, "RULE-003"),
        (a006, "RULE-006"),
        (a007, "RULE-007"),
        (a009, "RULE-009"),
        (a010, "RULE-010"),
    }
    logged = db_rows(database, "SELECT DISTINCT rule FROM enforcement_log")
    assert {row[0] for row in logged} >= set(SCENARIOS) | {"LOCKOUT"}


# --- kill -9 while locked ----------------------------------------------------------------------


async def test_sigkill_while_locked_then_restart_still_closes_new_positions(
    sim: Simulator, daemons: Callable[..., Any], tmp_path: Path
) -> None:
    account = sim.account_ids[0]
    now = datetime.now(CHICAGO)
    config = shipped_config(
        tmp_path / "etc",
        lambda data: data["rules"]["session_block_outside"].update(open_session(now)),
    )
    database = tmp_path / "etc" / "riskman.db"
    env = sim_env(sim)
    first: Daemon = await daemons(config, env)
    await first.armed()
    buy(sim, account, GC, 1)  # 3450.10
    await eventually(lambda: GC in sim_positions(sim, account))
    since = mark()
    sim.set_price(GC, "3444.9")  # -$520: the $500 daily loss limit
    await closed(sim, account, GC, since)
    await first.wait_action("RULE-003", account, "lockout", result="lockout", target="account")
    # The log reports a lock only once it is in the database: killing now must not lose it.
    assert (account, "RULE-003") in active_locks(database)

    first.process.send_signal(signal.SIGKILL)
    assert await first.wait_exit() == -signal.SIGKILL
    assert not any(line.get("msg") == "stopped" for line in first.lines)

    second: Daemon = await daemons(config, env)
    await second.armed()
    since = mark()
    buy(sim, account, MNQ, 1)
    await closed(sim, account, MNQ, since)
    line = await second.wait_action("LOCKOUT", account, "close", target=MNQ)
    assert "RULE-003" in line["reason"]
    # Another account was never locked: it trades on.
    other = sim.account_ids[1]
    buy(sim, other, MNQ, 1)
    await eventually(lambda: MNQ in sim_positions(sim, other))

    # SIGINT (Ctrl+C in a terminal): the same clean stop as SIGTERM.
    assert await second.stop(signal.SIGINT) == 0
    assert any(line.get("msg") == "stopped" for line in second.lines)
    assert (account, "RULE-003") in active_locks(database)
    assert MNQ in sim_positions(sim, other)


# --- start-up failures: one clear line, non-zero ----------------------------------------------


def plain_lines(daemon: Daemon) -> list[str]:
    """stderr lines that are not JSON log records (what the user is told on failure)."""
    return [text for text in daemon.raw if text.strip() and not text.startswith("{")]


async def test_invalid_config_exits_2_with_file_key_path_and_reason(
    daemons: Callable[..., Any], tmp_path: Path
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["rules"]["max_contracts"]["limit"] = -1

    config = shipped_config(tmp_path / "etc", edit)
    daemon: Daemon = await daemons(config, base_env())
    assert await daemon.wait_exit() == 2
    assert len(daemon.raw) == 1
    assert re.fullmatch(
        rf"{re.escape(str(config))}: rules\.max_contracts\.limit: .*greater than 0.*",
        daemon.raw[0],
    )
    assert not (tmp_path / "etc" / "riskman.db").exists()


async def test_bad_credentials_exit_non_zero_with_one_line_and_no_secret(
    sim: Simulator, daemons: Callable[..., Any], tmp_path: Path
) -> None:
    config = shipped_config(tmp_path / "etc", lambda data: None)
    secret = "wrong-key-1f3a9c"
    daemon: Daemon = await daemons(config, sim_env(sim, RISKMAN_GATEWAY__API_KEY=secret))
    assert await daemon.wait_exit() == 3  # cannot start
    [line] = plain_lines(daemon)
    assert line.startswith(f"riskman: the gateway refused the login at {sim.base_url}: ")
    assert all(secret not in text for text in daemon.raw)
    assert [r.endpoint for r in sim.requests] == ["Auth/loginKey"]


async def test_unreachable_gateway_exits_non_zero_after_the_start_wait(
    daemons: Callable[..., Any], tmp_path: Path
) -> None:
    config = shipped_config(tmp_path / "etc", lambda data: None)
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(
        RISKMAN_GATEWAY__API_URL=url,
        RISKMAN_GATEWAY__USERNAME="trader",
        RISKMAN_GATEWAY__API_KEY="key",
        RISKMAN_GATEWAY__START_WAIT="1",
    )
    daemon: Daemon = await daemons(config, env)
    assert await daemon.wait_exit(timeout=30) == 3  # cannot start
    [line] = plain_lines(daemon)
    assert line.startswith(f"riskman: cannot reach the gateway at {url}: ")


async def test_missing_api_key_exits_non_zero_with_one_line(
    daemons: Callable[..., Any], tmp_path: Path
) -> None:
    config = shipped_config(tmp_path / "etc", lambda data: None)
    daemon: Daemon = await daemons(config, base_env(RISKMAN_GATEWAY__USERNAME="trader"))
    assert await daemon.wait_exit() == 3  # cannot start
    assert plain_lines(daemon) == [
        "riskman: no API key: set RISKMAN_GATEWAY__API_KEY or gateway.api_key_file (mode 0600)"
    ]


# --- the systemd unit -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (SHIPPED / "riskman.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.MULTILINE)
    assert exec_start is not None
    riskman = Path(sys.executable).parent / "riskman"
    assert riskman.exists(), "the riskman script is not installed in this environment"
    path = tmp_path / "riskman.service"
    path.write_text(unit.replace(exec_start.group(1), str(riskman)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    # Complaints about this unit name it; anything else is the host's business.
    assert [line for line in output.splitlines() if "riskman" in line] == []
    assert result.returncode == 0, output
