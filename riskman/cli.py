"""The `riskman` command (SPEC.md §5). Textual is imported only for the terminal commands."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import os
import sys
from pathlib import Path

from riskman.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_config

EXIT_CONFIG = 2

USAGE = """\
riskman [--config PATH] [--attach]        the trader terminal: attached to the running
                                          engine (the guard), else with the engine inside
riskman --no-ui [--config PATH] [--log-format text|json]
                                          the same engine headless, as a daemon
riskman demo                              the terminal on the embedded simulator
riskman sim [--port N] [--seed S]         the simulator alone
riskman check-config [--config PATH]      validate and print the effective config
riskman set-admin-password [--config PATH] [--reset]
riskman lock --for 30m|1h|session|reset|HH:MM [--account ID] [--config PATH]
                                          lock yourself out now (cannot be undone)
riskman status [--config PATH] [--json]   is the engine running and armed? (exit 0/1/3)
riskman service install|uninstall|status  the guard as a systemd service (as root)
riskman notify-test [--config PATH]       send a test notification to every URL
riskman init [--config PATH] [flags]      first run: write a working, checked config
riskman report [--day YYYY-MM-DD] [--csv] [--config PATH]
                                          the day's summary and breach reports
"""


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("RISKMAN_CONFIG", DEFAULT_CONFIG_PATH)),
        help=f"configuration file (default {DEFAULT_CONFIG_PATH}, or $RISKMAN_CONFIG)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskman", usage=USAGE, description=__doc__)
    _config_arg(parser)
    parser.add_argument("--no-ui", action="store_true", help="run headless (daemon)")
    parser.add_argument(
        "--attach",
        action="store_true",
        help="attach to the running engine; exit 3 if none answers (never start one)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="the terminal on the embedded simulator")
    demo.add_argument("--seed", type=int, default=None, help="random seed of the simulator")
    demo.add_argument(
        "--keep", type=Path, default=None, help="keep the demo's config and database in this folder"
    )

    sim = sub.add_parser("sim", help="run the simulator alone")
    sim.add_argument("--port", type=int, default=None)
    sim.add_argument("--seed", type=int, default=None)

    check = sub.add_parser("check-config", help="validate and print the effective config")
    _config_arg(check)

    password = sub.add_parser(
        "set-admin-password",
        help="set the admin password (asks for the current one; from a pipe: the current "
        "password on the first line, the new one on the second)",
    )
    _config_arg(password)
    password.add_argument(
        "--reset",
        action="store_true",
        help="replace it without the current one (root or riskman's own user only; audited)",
    )

    lock = sub.add_parser(
        "lock",
        help="lock yourself out now: flatten, cancel, lock (cannot be undone before its end)",
    )
    _config_arg(lock)
    lock.add_argument(
        "--for",
        dest="lock_for",
        required=True,
        help="15m, 30m, 1h (any duration), session, reset, or a local time HH:MM",
    )
    lock.add_argument("--account", type=int, default=None, help="one account (default: all)")

    status = sub.add_parser("status", help="ask the running engine (exit 0 armed, 1 not, 3 none)")
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="print the API's JSON answer")

    service = sub.add_parser(
        "service", help="install | uninstall | status of the guard (systemd, as root)"
    )
    service.add_argument("args", nargs=argparse.REMAINDER)

    notify = sub.add_parser("notify-test", help="send a test notification to every URL")
    _config_arg(notify)

    # `riskman init ...` is dispatched before this parser (its flags are its own).
    sub.add_parser("init", help="first run: write a working config (riskman init --help)")

    report = sub.add_parser("report", help="the day's summary and breach reports")
    _config_arg(report)
    report.add_argument("--day", help="the trading day, YYYY-MM-DD (default: the current one)")
    report.add_argument("--csv", action="store_true", help="CSV instead of text")
    return parser


def _load(path: Path) -> Settings | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def check_config(path: Path) -> int:
    from ruamel.yaml import YAML

    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    text = io.StringIO()
    yaml.dump(settings.redacted(), text)
    print(f"# {path}: valid. Effective configuration (secrets hidden):")
    for line in overlay_lines(settings):
        print(f"# {line}")
    print(text.getvalue(), end="")
    return 0


def overlay_lines(settings: Settings) -> list[str]:
    """What the admin overlay does to these settings, in a line or two (nothing: none)."""
    from riskman.config import overlay_keys

    loaded = type(settings)
    if loaded.overlay_problem:
        return [loaded.overlay_problem]
    if loaded.overlay_path is None or loaded.overlay_data is None:
        return []
    keys = ", ".join(overlay_keys(loaded.overlay_data)) or "nothing"
    return [
        f"the admin overlay {loaded.overlay_path} is in effect (changes made through "
        f"riskman; they win over this file): it sets {keys}"
    ]


def set_admin_password(path: Path, *, reset: bool = False) -> int:
    """Set the admin password. When one exists, the current one is needed (issue 13): a
    missing or wrong current password exits 2 and leaves the hash file as it was."""
    from datetime import UTC, datetime

    from riskman.admin import PasswordError, PasswordStore

    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    store = PasswordStore.of(settings)
    tty = sys.stdin.isatty()
    try:
        had = store.exists() or store.existed() or asyncio.run(_password_audited(settings))
    except Exception:  # an unreadable database: the hash file and the anchor decide
        had = store.exists() or store.existed()
    if reset:
        owner = _engine_owner(settings)
        if os.geteuid() not in (0, owner):
            print(
                "riskman: --reset is allowed only to root or to riskman's own user "
                f"(uid {owner}); nothing changed",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    elif had:
        current = (
            getpass.getpass("Current admin password: ") if tty else sys.stdin.readline()
        ).rstrip("\r\n")
        if not store.exists():
            print(f"riskman: {store.missing_message()} Nothing changed.", file=sys.stderr)
            return EXIT_CONFIG
        if not current:
            print("riskman: the current admin password is needed; nothing changed", file=sys.stderr)
            return EXIT_CONFIG
        try:
            attempt = store.check(current, datetime.now(UTC))
        except (PasswordError, OSError) as exc:
            print(f"riskman: {exc}; nothing changed", file=sys.stderr)
            return EXIT_CONFIG
        if not attempt.ok:
            later = (
                f"; locked until {attempt.locked_until.isoformat(timespec='seconds')}"
                if attempt.locked_until is not None
                else ""
            )
            print(
                f"riskman: the current admin password is wrong{later}; nothing changed",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    if tty:
        first = getpass.getpass("New admin password: ")
        second = getpass.getpass("Repeat it: ")
        if first != second:
            print("riskman: the two passwords differ; nothing changed", file=sys.stderr)
            return 1
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    existed = store.exists()
    try:
        store.set(first)
    except PasswordError as exc:
        print(f"riskman: {exc}; nothing changed", file=sys.stderr)
        return 1
    print(f"admin password set ({store.path}, mode 600)")
    what = "reset" if reset else "changed" if existed else "set"
    try:
        asyncio.run(_audit_password(settings, what))
    except Exception as exc:  # the password is set; say the audit trail lacks it
        print(f"riskman: warning: not recorded in the audit table ({exc})", file=sys.stderr)
    return 0


def lock_me_out(settings: Settings, spec: str, account: int | None) -> int:
    """`riskman lock`: through the running engine's control API (exit 3 if none answers)."""
    from riskman.control.client import ApiError, ControlClient, NotAnswering
    from riskman.control.interface import SelfLock

    async def ask() -> list[SelfLock]:
        async with ControlClient.for_settings(settings) as client:
            return await client.lock(spec, account)

    try:
        locked = asyncio.run(ask())
    except NotAnswering as exc:
        print(f"riskman: {exc}", file=sys.stderr)
        return 3
    except ApiError as exc:
        print(f"riskman: not locked: {exc}", file=sys.stderr)
        return 1
    for lock in locked:
        print(f"account {lock.account}: {lock.reason}")
    return 0


def _engine_owner(settings: Settings) -> int:
    """The uid riskman's engine runs as: the owner of its database (else of its folder)."""
    for candidate in (settings.database, settings.database.parent):
        try:
            return candidate.stat().st_uid
        except OSError:
            continue
    return 0


async def _password_audited(settings: Settings) -> bool:
    if not settings.database.exists():
        return False
    from riskman.storage.db import Database

    db = await Database.open(settings.database)
    try:
        row = await db.fetchone("SELECT 1 FROM admin_audit WHERE action = 'password' LIMIT 1")
    finally:
        await db.close()
    return row is not None


async def _audit_password(settings: Settings, what: str) -> None:
    """Every admin change is in the audit table, this one too (never the password itself)."""
    from datetime import UTC, datetime

    from riskman.storage.db import Database, to_db_time

    db = await Database.open(settings.database)
    try:
        await db.execute(
            "INSERT INTO admin_audit (ts, action, target, old_value, new_value, reason, uid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                to_db_time(datetime.now(UTC)),
                "password",
                "admin password",
                None,
                f"{what} (command line)",
                "",
                os.getuid(),
            ),
        )
    finally:
        await db.close()


def notify_test(path: Path) -> int:
    """Send one test message to each notification URL; say per URL whether it went through."""
    from riskman.notify import send_test

    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    try:
        urls = settings.notify_urls()
    except OSError as exc:
        print(f"riskman: cannot read notify.urls_file: {exc.strerror}", file=sys.stderr)
        return 1
    if not urls:
        print(
            "riskman: no notification URL: set notify.urls or notify.urls_file in "
            f"{path} (see README, 'Notifications')",
            file=sys.stderr,
        )
        return 1
    results = asyncio.run(send_test(urls, settings.notify.timeout))
    for label, ok, why in results:
        print(f"{label}: {'delivered' if ok else 'FAILED: ' + why}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{len(results) - failed} of {len(results)} delivered")
    return 0 if not failed else 1


def report(path: Path, day_text: str | None, as_csv: bool) -> int:
    """Print a trading day's summary and its breach reports (reads the database only)."""
    from datetime import UTC, date, datetime

    from riskman.calendar import ResetSchedule
    from riskman.report import SqliteReader, day_report, report_csv, report_text

    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    schedule = ResetSchedule(settings.daily_reset, settings.zone)
    if day_text is None:
        day = schedule.trading_day(datetime.now(UTC))
    else:
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            print(f"riskman: --day {day_text!r} is not a date YYYY-MM-DD", file=sys.stderr)
            return 1
    if not settings.database.exists():
        print(
            f"riskman: no database at {settings.database} (riskman has not run yet)",
            file=sys.stderr,
        )
        return 1
    reader = SqliteReader(settings.database)
    try:
        result = asyncio.run(day_report(reader, schedule, day))
    finally:
        reader.close()
    print(report_csv(result) if as_csv else report_text(result, settings.zone), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["init"]:
        from riskman.init_wizard import main as init_main

        return init_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command

    if command == "check-config":
        return check_config(args.config)
    if command == "set-admin-password":
        return set_admin_password(args.config, reset=args.reset)
    if command == "lock":
        settings = _load(args.config)
        if settings is None:
            return EXIT_CONFIG
        return lock_me_out(settings, args.lock_for, args.account)
    if command == "service":
        from riskman.service import main as service_main

        return service_main(args.args)
    if command == "status":
        from riskman.control.status import run_status

        settings = _load(args.config)
        if settings is None:
            return EXIT_CONFIG
        return run_status(settings, as_json=args.json)
    if command == "notify-test":
        return notify_test(args.config)
    if command == "report":
        return report(args.config, args.day, args.csv)
    if command == "sim":
        from riskman.sim.cli import main as sim_main

        sim_args = []
        if args.port is not None:
            sim_args += ["--port", str(args.port)]
        if args.seed is not None:
            sim_args += ["--seed", str(args.seed)]
        return sim_main(sim_args)
    if command == "demo":
        from riskman.demo import run_demo

        return run_demo(seed=args.seed, keep=args.keep)

    settings = _load(args.config)
    if settings is None:
        return EXIT_CONFIG
    if args.no_ui:
        from riskman.headless import run_headless
        from riskman.logs import setup_logging

        setup_logging(args.log_format, args.log_level)
        try:
            return asyncio.run(run_headless(settings))
        except KeyboardInterrupt:
            return 0
    from riskman.tui.app import run_terminal

    return run_terminal(settings, args.config, attach=args.attach)


def entry() -> int:
    """The console script: `main`, quiet when its reader goes away (`riskman ... | head`)."""
    try:
        return main()
    except BrokenPipeError:
        # Python would complain again when flushing stdout at exit: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(entry())
