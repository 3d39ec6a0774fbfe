"""`riskman service`: the install logic run into a folder (no systemctl, no useradd), the unit
it writes checked by systemd-analyze, and the one-line refusals."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from riskman.admin import PasswordStore
from riskman.config import load_config
from riskman.control.lockfile import EngineLock
from riskman.control.paths import lock_path
from riskman.service import Installer, ServiceError, why_not
from tests.control.conftest import PASSWORD, write_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def installer(root: Path) -> Installer:
    return Installer(root=root, trader="alice", executable=Path("/opt/riskman/bin/riskman"))


def test_install_into_a_root_folder_lays_out_the_guard(tmp_path: Path) -> None:
    root = tmp_path / "root"
    setup = installer(root)
    setup.install(None)

    etc, state = root / "etc/riskman", root / "var/lib/riskman"
    assert mode(etc) == 0o755 and mode(state) == 0o700
    assert mode(etc / "riskman.yaml") == 0o644  # the trader reads it; only root writes it
    settings = load_config(etc / "riskman.yaml")
    assert settings.database == Path("/var/lib/riskman/riskman.db")
    assert settings.password_file == Path("/var/lib/riskman/admin.hash")
    assert settings.control.socket == Path("/run/riskman/riskman.sock")
    assert settings.control.group == "riskman"
    unit = (root / "etc/systemd/system/riskman.service").read_text()
    assert (
        "ExecStart=/opt/riskman/bin/riskman --no-ui --config /etc/riskman/riskman.yaml "
        "--log-format json" in unit
    )
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    # Offline, nothing is run: the commands are listed instead.
    todo = [line for line in setup.log if line.startswith("to run: ")]
    assert "to run: usermod -a -G riskman alice" in todo
    assert todo[-2:] == [
        "to run: systemctl daemon-reload",
        "to run: systemctl enable --now riskman.service",
    ]


def test_install_says_when_an_earlier_installs_admin_overlay_stays_in_effect(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    first = installer(root)
    first.install(None)
    assert not any("riskman.admin.yaml" in line for line in first.log)
    overlay = root / "var/lib/riskman/riskman.admin.yaml"
    overlay.write_text("rules: {max_contracts: {limit: 2}}\n")
    again = installer(root)
    again.install(None)
    assert any(line.startswith(f"kept {overlay}: admin changes") for line in again.log)


def test_install_carries_todays_state_and_secrets_from_the_traders_config(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = home / "api_key"
    key.write_text("secret-key\n")
    key.chmod(0o600)
    source = write_config(home, {"gateway": {"api_key_file": "api_key"}})
    trader = load_config(source)
    with sqlite3.connect(trader.database) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES ('locked until the reset')")
    PasswordStore(trader.password_file).set(PASSWORD)

    root = tmp_path / "root"
    installer(root).install(source)

    state, etc = root / "var/lib/riskman", root / "etc/riskman"
    with sqlite3.connect(state / "riskman.db") as db:
        assert db.execute("SELECT x FROM t").fetchall() == [("locked until the reset",)]
    assert mode(state / "riskman.db") == 0o600
    assert mode(state / "admin.hash") == 0o600
    assert PasswordStore(state / "admin.hash").verify(PASSWORD)
    assert mode(etc / "api_key") == 0o600
    assert load_config(etc / "riskman.yaml").gateway.api_key_file == (etc / "api_key").resolve()


def test_install_refuses_while_the_traders_own_engine_runs(tmp_path: Path) -> None:
    source = write_config(tmp_path, {})
    settings = load_config(source)
    sqlite3.connect(settings.database).close()
    running = EngineLock(lock_path(settings))
    running.acquire(tmp_path / "riskman.sock")
    try:
        with pytest.raises(ServiceError, match=f"stop it first: .*pid {os.getpid()}"):
            installer(tmp_path / "root").install(source)
    finally:
        running.release()


def test_uninstall_removes_the_unit_and_keeps_config_and_state(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installer(root).install(None)
    setup = installer(root)
    setup.uninstall()
    assert not (root / "etc/systemd/system/riskman.service").exists()
    assert (root / "etc/riskman/riskman.yaml").exists()
    assert (root / "var/lib/riskman").is_dir()
    assert "to run: systemctl disable --now riskman.service" in setup.log


@pytest.mark.parametrize(
    ("systemd", "systemctl", "euid", "reason"),
    [
        (False, True, 0, "needs systemd"),
        (True, False, 0, "systemctl is not installed"),
        (True, True, 1000, "run it as root"),
        (True, True, 0, None),
    ],
)
def test_why_the_service_cannot_be_installed(
    systemd: bool, systemctl: bool, euid: int, reason: str | None
) -> None:
    found = why_not(systemd=systemd, systemctl=systemctl, euid=euid)
    assert found == reason or (reason is not None and found is not None and reason in found)


def test_service_install_says_in_one_line_why_it_cannot_run_here(tmp_path: Path) -> None:
    if Path("/run/systemd/system").is_dir() and os.geteuid() == 0:
        pytest.skip("this machine could really install the service")
    result = subprocess.run(
        [sys.executable, "-m", "riskman.cli", "service", "install"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("riskman: service install:")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_the_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    riskman = Path(sys.executable).parent / "riskman"
    assert riskman.exists(), "the riskman script is not installed in this environment"
    unit = tmp_path / "riskman.service"
    unit.write_text(Installer(root=tmp_path, executable=riskman).unit_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert [line for line in output.splitlines() if "riskman" in line] == [], output
    assert result.returncode == 0, output
