"""`riskman init`: the first run, from nothing to a working, checked configuration.

It asks for the firm (TopstepX, the ProjectX demo gateway, another ProjectX firm by name, or
custom URLs), the username and the API key (saved to a file of mode 0600, then checked with a
real login and `Account/search`), which accounts to guard (picked from the gateway's list), a
starting rule set, optional notification URLs (saved 0600 too), the admin password, and at the
end whether to install the guard service. Every question has a flag (`riskman init --help`),
so it also runs unattended; without a terminal, a missing answer is an error naming its flag.

Nothing is written until every answer is in and the gateway accepted the key; the config is
written last, atomically, and validated by the same loader riskman uses.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from riskman.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    GatewayConfig,
    load_config,
    shipped_file,
)
from riskman.core.files import write_private

FIRMS = {
    "topstepx": ("TopstepX", "https://api.topstepx.com", "https://rtc.topstepx.com"),
    "demo": (
        "ProjectX demo gateway",
        "https://gateway-api-demo.s2f.projectx.com",
        "https://gateway-rtc-demo.s2f.projectx.com",
    ),
}
"""Presets: name, API URL, realtime host (its /hubs/user and /hubs/market)."""


def _topstep_combine(
    size: int, drawdown: int, daily: int, contracts: int
) -> tuple[str, dict[str, Any]]:
    """A Topstep Combine of `size` thousand dollars: its max loss limit, daily loss and size."""
    return (
        f"Topstep {size}K Combine: ${drawdown:,} max loss limit, ${daily:,} daily loss, "
        f"{contracts} contracts",
        {
            "max_loss_limit": {
                "enabled": True,
                "starting_balance": size * 1000,
                "drawdown": drawdown,
            },
            "daily_realized_loss": {"enabled": True, "limit": daily, "include_unrealized": True},
            "max_contracts": {"enabled": True, "limit": contracts, "count": "gross"},
            "contract_weights": {"enabled": True, "micro_weight": 0.1},
            "auth_loss_guard": {"enabled": True},
        },
    )


TEMPLATES: dict[str, tuple[str, dict[str, Any]]] = {
    "topstep-50k": _topstep_combine(50, 2000, 1000, 5),
    "topstep-100k": _topstep_combine(100, 3000, 2000, 10),
    "topstep-150k": _topstep_combine(150, 4500, 3000, 15),
    "day-trader": (
        "Conservative day trader: $300 daily loss, 2 contracts, a stop on every trade, "
        "cooldowns after losses and over-trading",
        {
            "daily_realized_loss": {"enabled": True, "limit": 300, "include_unrealized": True},
            "daily_unrealized_loss": {"enabled": True, "limit": 150},
            "max_contracts": {"enabled": True, "limit": 2, "count": "gross"},
            "trade_frequency_limit": {
                "enabled": True,
                "per_minute": 2,
                "per_hour": 8,
                "per_session": 20,
            },
            "cooldown_after_loss": {
                "enabled": True,
                "tiers": [{"loss": 100, "cooldown": "10m"}, {"loss": 200, "cooldown": "30m"}],
            },
            "no_stop_loss_grace": {"enabled": True, "grace_seconds": 30},
            "auth_loss_guard": {"enabled": True},
        },
    ),
    "custom": (
        "Custom: only the gateway guard; set your rules in the admin screens (a)",
        {
            "auth_loss_guard": {"enabled": True},
        },
    ),
}


class InitError(Exception):
    """One line saying what is wrong; nothing was written."""


@dataclass
class Answers:
    config: Path
    api_url: str = ""
    rtc_url: str = ""
    firm: str = ""
    username: str = ""
    api_key: str = ""
    accounts: list[int] = field(default_factory=list)
    account_names: dict[int, str] = field(default_factory=dict)
    template: str = ""
    notify_urls: list[str] = field(default_factory=list)
    password: str = ""
    install_service: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riskman init",
        description="Write a working riskman configuration (asks what no flag answers).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("RISKMAN_CONFIG", DEFAULT_CONFIG_PATH)),
        help=f"where to write the configuration (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--firm", help="topstepx, demo (ProjectX demo gateway), a ProjectX firm's name, or custom"
    )
    parser.add_argument("--api-url", help="the gateway's REST URL (with --firm custom)")
    parser.add_argument("--rtc-url", help="the realtime host, without /hubs/... (--firm custom)")
    parser.add_argument("--username", help="your gateway (TopstepX) username")
    parser.add_argument(
        "--api-key-stdin",
        action="store_true",
        help="read the API key from the first line of stdin (or set RISKMAN_GATEWAY__API_KEY)",
    )
    parser.add_argument("--accounts", help="account ids to guard, comma-separated, or 'all'")
    parser.add_argument("--template", choices=sorted(TEMPLATES), help="the starting rule set")
    parser.add_argument(
        "--notify-url",
        action="append",
        default=None,
        help="an Apprise URL for notifications (repeat for more; 'none' for none)",
    )
    parser.add_argument(
        "--admin-password-stdin",
        action="store_true",
        help="read the admin password from the next line of stdin (or RISKMAN_ADMIN_PASSWORD)",
    )
    service = parser.add_mutually_exclusive_group()
    service.add_argument("--install-service", action="store_true", default=None)
    service.add_argument("--no-install-service", dest="install_service", action="store_false")
    parser.add_argument(
        "--yes", action="store_true", help="never ask: a missing answer is an error"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing config")
    return parser


class Asker:
    """Asks on the terminal, or fails naming the flag when it may not ask."""

    def __init__(self, interactive: bool, out: TextIO = sys.stdout) -> None:
        self.interactive = interactive
        self.out = out

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def ask(
        self, question: str, flag: str, default: str | None = None, secret: bool = False
    ) -> str:
        if not self.interactive:
            if default is not None:
                return default
            raise InitError(f"{question.rstrip(': ?')}: give {flag} (running without a terminal)")
        suffix = f" [{default}]" if default else ""
        while True:
            prompt = f"{question}{suffix}: "
            answer = getpass.getpass(prompt) if secret else input(prompt)
            answer = answer.strip()
            if answer:
                return answer
            if default is not None:
                return default
            self.say("  (an answer is needed)")

    def choose(
        self, question: str, flag: str, options: Sequence[tuple[str, str]], default: str
    ) -> str:
        if not self.interactive:
            return default
        self.say(question)
        for n, (_key, label) in enumerate(options, 1):
            self.say(f"  {n}) {label}")
        keys = [key for key, _ in options]
        while True:
            answer = self.ask("Your choice (number or name)", flag, str(keys.index(default) + 1))
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return keys[int(answer) - 1]
            if answer in keys:
                return answer
            self.say(f"  choose 1-{len(options)}")

    def confirm(self, question: str, default: bool) -> bool:
        if not self.interactive:
            return default
        answer = self.ask(f"{question} (y/n)", "", "y" if default else "n")
        return answer.lower().startswith("y")


def firm_urls(firm: str, api_url: str | None, rtc_url: str | None) -> tuple[str, str, str]:
    """(name, API URL, realtime host) of a preset, a ProjectX firm by name, or custom URLs."""
    key = firm.strip().lower()
    if key in FIRMS:
        return FIRMS[key]
    if key == "custom":
        if not api_url or not rtc_url:
            raise InitError("--firm custom needs --api-url and --rtc-url")
        return "custom", api_url.rstrip("/"), rtc_url.rstrip("/").removesuffix("/hubs")
    if not key.replace("-", "").isalnum():
        raise InitError(f"{firm!r} is not a firm name (letters, digits, dashes)")
    return key, f"https://api.{key}.projectx.com", f"https://rtc.{key}.projectx.com"


def gateway_config(answers: Answers) -> GatewayConfig:
    return GatewayConfig(
        api_url=answers.api_url,
        user_hub_url=f"{answers.rtc_url}/hubs/user",
        market_hub_url=f"{answers.rtc_url}/hubs/market",
        username=answers.username,
    )


async def check_gateway(answers: Answers) -> list[tuple[int, str, bool]]:
    """Log in with the key and list the accounts: (id, name, can trade). Raises InitError."""
    from riskman.gateway.errors import AuthError, GatewayError
    from riskman.gateway.rest import RestClient

    client = RestClient(gateway_config(answers), answers.api_key)
    try:
        try:
            await client.login()
            accounts = await client.search_accounts(only_active=True)
        except AuthError as exc:
            raise InitError(f"the gateway at {answers.api_url} refused the login: {exc}") from None
        except GatewayError as exc:
            raise InitError(f"cannot reach the gateway at {answers.api_url}: {exc}") from None
    finally:
        await client.aclose()
    return [(a.id, a.name, a.can_trade) for a in accounts]


def gather(args: argparse.Namespace, asker: Asker, stdin: TextIO) -> Answers:
    answers = Answers(config=args.config)
    if args.config.exists() and not args.force:
        raise InitError(f"{args.config} exists already; give --force to replace it")
    asker.say(
        "riskman init: a working configuration in a few questions (Ctrl-C: nothing is written)."
    )
    asker.say()

    firm = args.firm or asker.choose(
        "Which firm's gateway?",
        "--firm",
        [
            ("topstepx", "TopstepX"),
            ("demo", "The ProjectX demo gateway"),
            ("projectx", "Another ProjectX firm (api.<firm>.projectx.com)"),
            ("custom", "Custom URLs"),
        ],
        "topstepx",
    )
    if args.firm is None and not asker.interactive:
        raise InitError("which firm: give --firm (running without a terminal)")
    if firm == "projectx":
        firm = asker.ask(
            "The firm's name in its gateway address (api.<name>.projectx.com)", "--firm"
        )
    api_url, rtc_url = args.api_url, args.rtc_url
    if firm == "custom":
        api_url = api_url or asker.ask("REST API URL (https://...)", "--api-url")
        rtc_url = rtc_url or asker.ask(
            "Realtime host URL (https://..., without /hubs)", "--rtc-url"
        )
    answers.firm, answers.api_url, answers.rtc_url = firm_urls(firm, api_url, rtc_url)
    try:
        gateway_config(answers)
    except ValueError as exc:
        raise InitError(f"gateway URL: {exc}") from None

    answers.username = args.username or asker.ask("Your gateway username", "--username")
    key = os.environ.get("RISKMAN_GATEWAY__API_KEY", "")
    if args.api_key_stdin:
        key = stdin.readline().strip()
    if not key:
        key = asker.ask(
            "Your API key (from the firm's settings page; not shown)",
            "--api-key-stdin or RISKMAN_GATEWAY__API_KEY",
            secret=True,
        )
    answers.api_key = key

    asker.say(f"Checking the key with {answers.api_url} ...")
    listed = asyncio.run(check_gateway(answers))
    if not listed:
        raise InitError("the gateway lists no active account for this login")
    answers.account_names = {account_id: name for account_id, name, _ in listed}
    asker.say(f"Logged in. {len(listed)} active account(s):")
    for n, (account_id, name, can_trade) in enumerate(listed, 1):
        asker.say(f"  {n}) {name} ({account_id}){'' if can_trade else ' - cannot trade now'}")
    picked = args.accounts or asker.ask(
        "Which to guard (numbers or ids, comma-separated, or all)", "--accounts", "all"
    )
    answers.accounts = pick_accounts(picked, [a for a, _, _ in listed])

    template = args.template or asker.choose(
        "Starting rules (change them later in the admin screens)?",
        "--template",
        [(key, label) for key, (label, _) in TEMPLATES.items()],
        "day-trader",
    )
    if args.template is None and not asker.interactive:
        raise InitError("which rules: give --template (running without a terminal)")
    answers.template = template

    if args.notify_url is not None:
        answers.notify_urls = [u for u in args.notify_url if u.lower() != "none"]
    elif asker.interactive:
        url = asker.ask(
            "A notification URL for your phone (e.g. ntfy://my-secret-topic; Enter for none)",
            "--notify-url",
            "",
        )
        answers.notify_urls = [url] if url else []

    password = os.environ.get("RISKMAN_ADMIN_PASSWORD", "")
    if args.admin_password_stdin:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        password = asker.ask(
            "Admin password (guards rule changes; give it to someone calm)",
            "--admin-password-stdin or RISKMAN_ADMIN_PASSWORD",
            secret=True,
        )
        if asker.interactive and getpass.getpass("Repeat it: ") != password:
            raise InitError("the two passwords differ")
    from riskman.admin import MIN_LENGTH

    if len(password) < MIN_LENGTH:
        raise InitError(f"the admin password needs at least {MIN_LENGTH} characters")
    answers.password = password

    if args.install_service is not None:
        answers.install_service = args.install_service
    else:
        answers.install_service = asker.confirm(
            "Install riskman as a guard service (systemd, needs root)?", False
        )
    return answers


def pick_accounts(text: str, listed: Sequence[int]) -> list[int]:
    if text.strip().lower() == "all":
        return []
    picked = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit():
            raise InitError(f"{part!r} is not an account number or id")
        value = int(part)
        if 1 <= value <= len(listed) and value not in listed:
            value = listed[value - 1]
        if value not in listed:
            raise InitError(f"account {value} is not among the gateway's active accounts")
        if value not in picked:
            picked.append(value)
    if not picked:
        raise InitError("no account picked")
    return picked


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def config_text(answers: Answers) -> str:
    label, rules = TEMPLATES[answers.template]
    accounts = (
        "accounts: []      # every active account"
        if not answers.accounts
        else "accounts:\n"
        + "".join(
            f"  - {a}        # {answers.account_names.get(a, '')}\n" for a in answers.accounts
        ).rstrip("\n")
    )
    rule_lines = "\n".join(f"  {key}: {_yaml_value(value)}" for key, value in rules.items())
    notify = (
        "notify:\n  urls_file: notify_urls   # mode 0600; try it: riskman notify-test\n"
        if answers.notify_urls
        else "notify:\n  urls: []   # add Apprise URLs (or urls_file) for phone notifications\n"
    )
    return f"""\
# riskman configuration, written by `riskman init` ({answers.firm}).
# Check it with: riskman check-config --config {answers.config}
gateway:
  api_url: {answers.api_url}
  user_hub_url: {answers.rtc_url}/hubs/user
  market_hub_url: {answers.rtc_url}/hubs/market
  username: {answers.username}
  api_key_file: api_key   # mode 0600, beside this file

{accounts}
timezone: America/Chicago
daily_reset: "17:00"
holidays_file: holidays.yaml
database: riskman.db

# {label}
rules:
{rule_lines}

warnings:
  at: [50, 75, 90]

{notify}"""


def write_all(answers: Answers) -> tuple[Path, bool]:
    """Write the key, the URLs, the holidays, the password hash and the config (last); on a
    failure remove what was written. Returns the config's path and whether the password was
    set (an existing admin password is never replaced here)."""
    from riskman.admin import PasswordError, PasswordStore

    folder = answers.config.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def undo() -> None:
        for path in written:
            path.unlink(missing_ok=True)

    try:
        write_private(folder / "api_key", answers.api_key + "\n")
        written.append(folder / "api_key")
        if answers.notify_urls:
            write_private(folder / "notify_urls", "".join(f"{u}\n" for u in answers.notify_urls))
            written.append(folder / "notify_urls")
        holidays = folder / "holidays.yaml"
        if not holidays.exists():
            shutil.copyfile(shipped_file("holidays.yaml"), holidays)
            written.append(holidays)
        tmp = answers.config.with_name(answers.config.name + ".tmp")
        tmp.write_text(config_text(answers), encoding="utf-8")
        written.append(tmp)
        try:
            settings = load_config(tmp)
        except ConfigError as exc:
            raise InitError(
                "the written configuration is invalid: " + "; ".join(exc.problems)
            ) from None
        store = PasswordStore(settings.password_file)
        password_set = not store.exists()
        if password_set:
            try:
                store.set(answers.password)
            except PasswordError as exc:
                raise InitError(str(exc)) from None
            written.append(settings.password_file)
        os.replace(tmp, answers.config)
    except BaseException:
        undo()
        raise
    return answers.config, password_set


def offer_service(answers: Answers, asker: Asker, install: Callable[[list[str]], int]) -> int:
    from riskman.service import why_not

    command = f"sudo riskman service install --config {answers.config.resolve()}"
    if not answers.install_service:
        asker.say(f"To run riskman as a guard the trader cannot stop: {command}")
        return 0
    reason = why_not(
        systemd=Path("/run/systemd/system").exists(),
        systemctl=shutil.which("systemctl") is not None,
        euid=os.geteuid(),
    )
    if reason is not None:
        asker.say(f"The guard service is not installed: {reason}.")
        asker.say(f"When you can: {command}")
        return 0
    return install(["install", "--config", str(answers.config.resolve())])


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    stdin = stdin or sys.stdin
    interactive = not args.yes and stdin.isatty()
    asker = Asker(interactive)
    try:
        answers = gather(args, asker, stdin)
        path, password_set = write_all(answers)
    except InitError as exc:
        print(f"riskman init: {exc}; nothing was written", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("\nriskman init: stopped; nothing was written", file=sys.stderr)
        return 1
    asker.say()
    asker.say(f"Written: {path} (API key in {path.parent / 'api_key'}, mode 600).")
    if not password_set:
        asker.say("An admin password was set before: it is kept (change it in the admin screens).")
    if answers.notify_urls:
        asker.say("Notifications: riskman notify-test --config " + str(path))
    asker.say(f"Start the terminal: riskman --config {path}")
    from riskman.service import main as service_main

    return offer_service(answers, asker, service_main)
