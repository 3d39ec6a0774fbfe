"""The orchestrator's tools: child processes behind a control connection, the riskman config
each system under test gets, percentiles, the machine description and the tables.

Control connections are ``multiprocessing.connection`` pairs over loopback with a random
authkey. The orchestrator listens; each child connects back, says who it is, and then answers
one command at a time (the command runs as a coroutine on the child's event loop; the
connection itself is read on a separate thread that sleeps in ``recv`` and costs nothing
while a measurement runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOLIDAYS = ROOT / "config" / "holidays.yaml"
AUTHKEY_ENV = "RISKMAN_BENCH_AUTHKEY"
CONTROL_ENV = "RISKMAN_BENCH_CONTROL"
UVLOOP_ENV = "RISKMAN_BENCH_UVLOOP"
"""Set (by ``--uvloop``): every system under test runs on uvloop's event loop."""
API_KEY = "demo"
USERNAME = "demo"


class BenchError(RuntimeError):
    """A benchmark could not run (a child died, timed out or refused a command)."""


# --- the child side ---------------------------------------------------------------------------


class ControlServer:
    """Runs in a child: answers the orchestrator's commands with `handler.cmd_<name>(**kw)`.

    `on_lost` is called on the loop when the orchestrator goes away (the child then exits).
    """

    def __init__(
        self,
        role: str,
        handler: object,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[], None],
    ) -> None:
        host, port = os.environ[CONTROL_ENV].rsplit(":", 1)
        self._conn: Connection = Client(
            (host, int(port)), authkey=bytes.fromhex(os.environ[AUTHKEY_ENV])
        )
        self._conn.send(("hello", role, os.getpid()))
        self._handler = handler
        self._loop = loop
        self._on_lost = on_lost
        self._thread = threading.Thread(target=self._serve, name="bench-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                name, kwargs = self._conn.recv()
            except (EOFError, OSError):
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._on_lost)
                return
            method = getattr(self._handler, f"cmd_{name}", None)
            if method is None:
                self._reply(("error", f"unknown command {name!r}"))
                continue
            try:
                future = asyncio.run_coroutine_threadsafe(method(**kwargs), self._loop)
                self._reply(("ok", future.result()))
            except Exception as exc:
                self._reply(("error", f"{type(exc).__name__}: {exc}"))

    def _reply(self, message: tuple[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(message)


# --- the orchestrator side --------------------------------------------------------------------


@dataclass
class Child:
    """A child process (simulator or system under test) and its control connection."""

    role: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    spawned: float
    """`time.monotonic()` just before the process was started."""
    conn: Connection | None = None

    def call(self, name: str, *, call_timeout: float = 600.0, **kwargs: Any) -> Any:
        if self.conn is None:
            raise BenchError(f"{self.role}: not connected")
        self.conn.send((name, kwargs))
        deadline = time.monotonic() + call_timeout
        while not self.conn.poll(0.2):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.role} exited ({self.proc.returncode})\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.role}: {name} took over {call_timeout:g} s\n{self.log_tail()}"
                )
        status, value = self.conn.recv()
        if status != "ok":
            raise BenchError(f"{self.role}: {name} failed: {value}\n{self.log_tail()}")
        return value

    def rss_kb(self) -> int | None:
        """Resident memory of the process now (kB), or None where it cannot be read."""
        return _proc_status(self.proc.pid, "VmRSS") or _ps_rss(self.proc.pid)

    def peak_rss_kb(self) -> int | None:
        return _proc_status(self.proc.pid, "VmHWM")

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    | {line}" for line in text[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None and self.conn is not None:
            with contextlib.suppress(BenchError, OSError, EOFError):
                self.call("stop", call_timeout=timeout)
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.conn = None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Bench:
    """One benchmark run: a scratch directory, the control listener and the children."""

    def __init__(self, keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="riskman-bench-"))
        self.keep = keep
        self._authkey = secrets.token_bytes(16)
        self._listener = Listener(("127.0.0.1", 0), authkey=self._authkey)
        self._accepted: queue.Queue[tuple[Connection, str, int]] = queue.Queue()
        self._children: list[Child] = []
        self._counter = 0
        threading.Thread(target=self._accept_loop, name="bench-accept", daemon=True).start()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for child in reversed(self._children):
            child.stop()
        self._children.clear()
        with contextlib.suppress(OSError):
            self._listener.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
                hello = conn.recv()
            except (OSError, EOFError):
                return
            except Exception:  # a stray connection with a bad key: ignore it
                continue
            _, role, pid = hello
            self._accepted.put((conn, role, pid))

    def spawn(
        self,
        role: str,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        connect: bool = True,
        timeout: float = 60.0,
    ) -> Child:
        """Start `python -m <args>` (or a command when args[0] is a path) and wait for it to
        connect back (unless `connect` is False)."""
        self._counter += 1
        log_path = self.dir / f"{self._counter:02d}-{role}.log"
        address = self._listener.address
        child_env = {
            **os.environ,
            **(env or {}),
            AUTHKEY_ENV: self._authkey.hex(),
            CONTROL_ENV: f"{address[0]}:{address[1]}",
            "PYTHONUNBUFFERED": "1",
        }
        command = list(args) if os.sep in args[0] else [sys.executable, "-m", *args]
        log = log_path.open("wb")
        spawned = time.monotonic()
        proc = subprocess.Popen(
            command, cwd=ROOT, env=child_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        child = Child(role, proc, log_path, spawned)
        self._children.append(child)
        if connect:
            deadline = time.monotonic() + timeout
            while child.conn is None:
                try:
                    conn, _, pid = self._accepted.get(timeout=0.1)
                except queue.Empty:
                    if proc.poll() is not None:
                        raise BenchError(
                            f"{role} exited ({proc.returncode}) at start\n{child.log_tail()}"
                        ) from None
                    if time.monotonic() > deadline:
                        raise BenchError(f"{role} did not connect\n{child.log_tail()}") from None
                    continue
                if pid == proc.pid:
                    child.conn = conn
                else:
                    conn.close()  # a leftover from a child that already failed
        return child

    def discard(self, child: Child) -> None:
        child.stop()
        with contextlib.suppress(ValueError):
            self._children.remove(child)

    def start_sim(self, **setup: Any) -> tuple[Child, dict[str, Any]]:
        sim = self.spawn("sim", ["benchmarks.simproc"])
        info = sim.call("start", **setup)
        return sim, info

    def start_sut(
        self,
        mode: str,
        config: Path,
        *,
        trace: int | None = None,
        real_limit: bool = False,
    ) -> Child:
        args = ["benchmarks.sut", "--mode", mode, "--config", str(config)]
        if trace is not None:
            args += ["--trace", str(trace)]
        if real_limit:
            args.append("--real-limit")
        if os.environ.get(UVLOOP_ENV):
            args.append("--uvloop")
        return self.spawn(f"sut-{mode}", args, env={"RISKMAN_GATEWAY__API_KEY": API_KEY})


def _proc_status(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _ps_rss(pid: int) -> int | None:
    try:
        out = subprocess.run(
            ["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return int(out) if out else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


# --- riskman's configuration for a system under test ----------------------------------------


def base_rules() -> dict[str, Any]:
    """The example configuration's rules (config/riskman.yaml), with two changes a benchmark
    needs: the trading session rule is off (a benchmark runs at any hour, and outside the
    session it would flatten and lock everything) and trade management is off (as in the
    example; it would place stop orders)."""
    return {
        "max_contracts": {"enabled": True, "limit": 5, "count": "net", "action": "reduce_to_limit"},
        "max_contracts_per_instrument": {
            "enabled": True,
            "default_limit": 10,
            "unknown_symbol": "allow",
            "action": "reduce_to_limit",
        },
        "daily_realized_loss": {"enabled": True, "limit": 500, "include_unrealized": True},
        "daily_unrealized_loss": {"enabled": True, "limit": 300},
        "max_unrealized_profit": {"enabled": False, "target": 1000},
        "trade_frequency_limit": {
            "enabled": True,
            "per_minute": 3,
            "per_hour": 10,
            "per_session": 50,
        },
        "cooldown_after_loss": {
            "enabled": True,
            "tiers": [{"loss": 100, "cooldown": 300}, {"loss": 200, "cooldown": 900}],
        },
        "session_block_outside": {"enabled": False},
        "auth_loss_guard": {"enabled": True},
        "symbol_blocks": {"enabled": False, "symbols": []},
        "trade_management": {"enabled": False},
        "daily_realized_profit": {"enabled": False, "target": 1000},
        "max_loss_limit": {"enabled": False},
    }


def write_config(
    directory: Path,
    name: str,
    sim: dict[str, Any],
    accounts: Sequence[int],
    rules: dict[str, Any],
) -> Path:
    """A riskman YAML file (JSON is YAML) pointing at the simulator, with a fresh database."""
    work = directory / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config = {
        "gateway": {
            "api_url": sim["base_url"],
            "user_hub_url": sim["user_hub_url"],
            "market_hub_url": sim["market_hub_url"],
            "username": USERNAME,
        },
        "accounts": list(accounts),
        "timezone": "America/Chicago",
        "daily_reset": "17:00",
        "holidays_file": str(HOLIDAYS),
        "database": str(work / "riskman.db"),
        "rules": rules,
    }
    path = work / "riskman.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


# --- numbers ----------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Distribution:
    values: list[float] = field(default_factory=list)

    def add(self, values: Sequence[float]) -> None:
        self.values.extend(values)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.values)
        return {
            "n": float(len(ordered)),
            "p50": percentile(ordered, 50),
            "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99),
            "max": ordered[-1] if ordered else math.nan,
        }


def ms(seconds: float | None, digits: int = 2) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    return f"{seconds * 1000:.{digits}f}"


def mb(kb: int | None) -> str:
    return "—" if kb is None else f"{kb / 1024:.1f}"


# --- the machine and the tables ---------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_line() -> str:
    """Machine, Python, date and load: printed with every table."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{platform.node()} · {cpu_model()} · {os.cpu_count()} cores · "
        f"{platform.system()} {platform.release()} · Python {platform.python_version()} · "
        f"{now} · load avg (1/5/15 min) {load_average()}"
    )


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], notes: str = "") -> str:
    """A Markdown table, readable in a terminal and pasteable into the README."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [f"### {title}", "", f"_{machine_line()}_", "", line(header)]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [line(row) for row in rows]
    if notes:
        out += ["", notes]
    return "\n".join(out) + "\n"


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Say what is running (on stderr, so stdout holds only the tables)."""
    began = time.monotonic()
    print(f"… {what}", file=sys.stderr, flush=True)
    yield
    print(f"  done in {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
