"""`riskman service install | uninstall | status`: the guard as a systemd service the trader
cannot stop without root.

install (as root) creates a `riskman` system user, /etc/riskman (config readable by the
trader, writable only by root), the state directory /var/lib/riskman owned by that user
(database, admin hash), puts the trader in the `riskman` group (the socket in /run/riskman is
mode 0660, group riskman), writes the unit with ExecStart pointing at this riskman, and
enables it. Today's state (locks, P&L, counts) moves with the database, so installing the
guard never loosens anything.

`root` prefixes every path, and `offline` (implied by a root other than /) runs no command:
a test, or an image build, installs into a folder and gets the commands listed instead.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from riskman.config import OVERLAY_NAME, ConfigError, load_config, read_yaml, shipped_file

USER = "riskman"
GROUP = "riskman"
UNIT = "riskman.service"
ETC = Path("/etc/riskman")
STATE = Path("/var/lib/riskman")
RUN = Path("/run/riskman")
UNIT_DIR = Path("/etc/systemd/system")
SOCKET = RUN / "riskman.sock"

Runner = Callable[[Sequence[str]], int]


class ServiceError(Exception):
    """The service cannot be installed here; one line says why."""


def why_not(*, systemd: bool, systemctl: bool, euid: int) -> str | None:
    """Why the service cannot be (un)installed here, or None."""
    if not systemd:
        return "the guard needs systemd, and this system does not run it"
    if not systemctl:
        return "the guard needs systemd: systemctl is not installed"
    if euid != 0:
        return "run it as root: sudo riskman service ..."
    return None


def _run(command: Sequence[str]) -> int:
    return subprocess.run(list(command), check=False).returncode


def default_executable() -> Path:
    found = shutil.which("riskman")
    return Path(found) if found else Path(sys.executable).parent / "riskman"


@dataclass
class Installer:
    root: Path = Path("/")
    trader: str | None = None
    executable: Path = field(default_factory=default_executable)
    runner: Runner = _run
    offline: bool = False
    log: list[str] = field(default_factory=list)
    """What was done (and, offline, the commands left to run), one line each."""

    def __post_init__(self) -> None:
        if self.root != Path("/"):
            self.offline = True

    def path(self, absolute: Path) -> Path:
        return self.root / absolute.relative_to("/")

    # --- checks --------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ServiceError when install cannot run here."""
        if self.offline:
            return
        reason = why_not(
            systemd=sys.platform == "linux" and Path("/run/systemd/system").is_dir(),
            systemctl=shutil.which("systemctl") is not None,
            euid=os.geteuid(),
        )
        if reason is not None:
            raise ServiceError(reason)
        self._check_code_is_root_owned()

    def _check_code_is_root_owned(self) -> None:
        # The trader must not be able to change the code the guard runs.
        import riskman

        for path in (self.executable.resolve(), Path(riskman.__file__).resolve().parent):
            info = path.stat()
            if info.st_uid != 0 or info.st_mode & 0o022:
                raise ServiceError(
                    f"{path} can be changed by a user other than root: install riskman as "
                    "root first, e.g. python3 -m venv /opt/riskman && "
                    "/opt/riskman/bin/pip install riskman"
                )

    # --- install -------------------------------------------------------------------------

    def install(self, source: Path | None) -> None:
        self.check()
        self._user()
        etc, state = self.path(ETC), self.path(STATE)
        self._mkdir(etc, 0o755, root_owned=True)
        self._mkdir(state, 0o700)
        config = etc / "riskman.yaml"
        origin = None
        if config.exists():
            self.log.append(f"kept {config}")
        else:
            origin = source if source is not None and source.exists() else None
            self._copy(origin or shipped_file("riskman.yaml"), config, 0o644)
        holidays = etc / "holidays.yaml"
        if not holidays.exists():
            self._copy(self._source_holidays(origin), holidays, 0o644)
        if origin is not None:
            self._carry_state(origin, etc)
        self._point_config(config)
        overlay = state / OVERLAY_NAME
        if overlay.exists():
            # Left by an earlier install: the guard applies it over the config file.
            self.log.append(
                f"kept {overlay}: admin changes from an earlier install, applied over "
                f"{config} (delete it to start from the file alone)"
            )
        self._unit()
        if self.trader:
            self._command(["usermod", "-a", "-G", GROUP, self.trader])
            self.log.append(f"{self.trader} may use the socket once logged in again")
        self._command(["systemctl", "daemon-reload"])
        self._command(["systemctl", "enable", "--now", UNIT])

    def _user(self) -> None:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            self._command(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--home-dir",
                    str(STATE),
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ]
            )

    def _ids(self, root_owned: bool) -> tuple[int, int] | None:
        if self.offline and os.geteuid() != 0:
            return None
        try:
            gid = grp.getgrnam(GROUP).gr_gid
            uid = 0 if root_owned else pwd.getpwnam(USER).pw_uid
        except KeyError:
            return None
        return uid, (0 if root_owned else gid)

    def _own(self, path: Path, *, root_owned: bool = False) -> None:
        ids = self._ids(root_owned)
        if ids is not None:
            os.chown(path, *ids)

    def _mkdir(self, path: Path, mode: int, *, root_owned: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
        self._own(path, root_owned=root_owned)
        self.log.append(f"{path} (mode {mode:o}, {'root' if root_owned else USER})")

    def _copy(self, source: Path, target: Path, mode: int, *, root_owned: bool = True) -> None:
        shutil.copyfile(source, target)
        os.chmod(target, mode)
        self._own(target, root_owned=root_owned)
        self.log.append(f"{target} from {source}")

    def _source_holidays(self, origin: Path | None) -> Path:
        if origin is not None:
            with contextlib.suppress(ConfigError, OSError):
                found = load_config(origin).holidays_file
                if found.exists():
                    return found
        return shipped_file("holidays.yaml")

    def _carry_state(self, origin: Path, etc: Path) -> None:
        """Move today's state and the secrets along: the guard starts as strict as the
        trader's own riskman was (locks, P&L, counts), with the same admin password."""
        from riskman.control.lockfile import EngineLock, EngineRunning
        from riskman.control.paths import lock_path

        try:
            settings = load_config(origin)
        except ConfigError as exc:
            raise ServiceError(f"{origin} is not valid: {exc.problems[0]}") from None
        state = self.path(STATE)
        database = state / "riskman.db"
        if settings.database.exists() and not database.exists():
            lock = EngineLock(lock_path(settings))
            try:
                lock.acquire(SOCKET)
            except EngineRunning as exc:
                raise ServiceError(f"stop it first: {exc}") from None
            try:
                with (
                    contextlib.closing(sqlite3.connect(settings.database)) as src,
                    contextlib.closing(sqlite3.connect(database)) as dst,
                ):
                    src.backup(dst)
            finally:
                lock.release()
            os.chmod(database, 0o600)
            self._own(database)
            self.log.append(f"{database}: today's state copied from {settings.database}")
        hashed = state / "admin.hash"
        if settings.password_file.exists() and not hashed.exists():
            self._copy(settings.password_file, hashed, 0o600, root_owned=False)
        key = settings.gateway.api_key_file
        if key is not None and key.exists() and not (etc / "api_key").exists():
            self._copy(key, etc / "api_key", 0o600, root_owned=False)

    def _point_config(self, config: Path) -> None:
        from riskman.config_writer import update_config

        changes: dict[tuple[str | int, ...], object] = {
            ("database",): str(STATE / "riskman.db"),
            ("holidays_file",): "holidays.yaml",
            ("control", "socket"): str(SOCKET),
            ("control", "group"): GROUP,
        }
        if (config.parent / "api_key").exists():
            changes[("gateway", "api_key_file")] = "api_key"  # beside the config
        elif (read_yaml(config).get("gateway") or {}).get("api_key_file"):
            # The trader's key file was not found: the key comes from /etc/riskman/env.
            changes[("gateway", "api_key_file")] = None
        try:
            update_config(config, changes)
        except ConfigError as exc:
            raise ServiceError(f"{config}: {exc.problems[0]}") from None
        self.log.append(f"{config}: database, socket and group set for the guard")

    def unit_text(self) -> str:
        text = shipped_file(UNIT).read_text(encoding="utf-8")
        lines = []
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                line = (
                    f"ExecStart={self.executable} --no-ui --config {ETC / 'riskman.yaml'} "
                    "--log-format json"
                )
            lines.append(line)
        return "\n".join(lines) + "\n"

    def _unit(self) -> None:
        unit_dir = self.path(UNIT_DIR)
        unit_dir.mkdir(parents=True, exist_ok=True)
        target = unit_dir / UNIT
        target.write_text(self.unit_text(), encoding="utf-8")
        os.chmod(target, 0o644)
        self.log.append(f"{target} (ExecStart={self.executable})")

    def _command(self, command: list[str]) -> None:
        shown = " ".join(command)
        if self.offline:
            self.log.append(f"to run: {shown}")
            return
        if self.runner(command) != 0:
            raise ServiceError(f"{shown} failed")
        self.log.append(f"ran: {shown}")

    # --- uninstall -----------------------------------------------------------------------

    def uninstall(self) -> None:
        """Stop and remove the unit; keep the config and the state (locks, P&L, audit)."""
        self.check()
        if not self.offline:
            self.runner(["systemctl", "disable", "--now", UNIT])
            self.log.append(f"ran: systemctl disable --now {UNIT}")
        else:
            self.log.append(f"to run: systemctl disable --now {UNIT}")
        unit = self.path(UNIT_DIR) / UNIT
        with contextlib.suppress(FileNotFoundError):
            unit.unlink()
            self.log.append(f"removed {unit}")
        self._command(["systemctl", "daemon-reload"])
        self.log.append(f"kept {self.path(ETC)} and {self.path(STATE)} (delete them by hand)")


def main(args: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="riskman service")
    parser.add_argument("action", choices=("install", "uninstall", "status"))
    parser.add_argument("--config", type=Path, default=None, help="config to start from")
    parser.add_argument("--trader", default=os.environ.get("SUDO_USER"), help="user to add")
    parser.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    options = parser.parse_args(list(args))
    installer = Installer(root=options.root, trader=options.trader)
    if options.action == "status":
        return status(installer)
    try:
        if options.action == "install":
            installer.install(options.config)
        else:
            installer.uninstall()
    except (ServiceError, OSError) as exc:
        print(f"riskman: service {options.action}: {exc}", file=sys.stderr)
        return 1
    for line in installer.log:
        print(line)
    if options.action == "install":
        config = ETC / "riskman.yaml"
        print(
            "next: set the admin password as the service user:\n"
            f"  sudo -u {USER} riskman set-admin-password --config {config}\n"
            f"then: riskman status --config {config}   (or export RISKMAN_CONFIG={config})"
        )
    return 0


def status(installer: Installer) -> int:
    """What systemd says of the unit, then what the engine says (`riskman status`)."""
    from riskman.control.status import EXIT_NONE, run_status

    unit = installer.path(UNIT_DIR) / UNIT
    if not unit.exists():
        print(f"riskman: the guard is not installed ({unit} does not exist)", file=sys.stderr)
        return EXIT_NONE
    if shutil.which("systemctl") is not None and not installer.offline:
        for query in ("is-enabled", "is-active"):
            result = subprocess.run(
                ["systemctl", query, UNIT], capture_output=True, text=True, check=False
            )
            print(f"{UNIT} {query.removeprefix('is-')}: {result.stdout.strip() or 'unknown'}")
    try:
        settings = load_config(installer.path(ETC) / "riskman.yaml")
    except ConfigError as exc:
        print(exc.problems[0], file=sys.stderr)
        return EXIT_NONE
    return run_status(settings, as_json=False)
