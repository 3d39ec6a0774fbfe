"""Reading the trader's YAML files and the few value parsers both of them (the configuration and
the holiday calendar) share, with the one error type their problems are reported as.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError


class ConfigError(Exception):
    """Invalid configuration: one ``file: key.path: reason`` line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _HHMM_RE.match(value.strip()):
        raise ValueError(f"{value!r} is not a time of day HH:MM (24 h, quote it in YAML)")
    hour, minute = value.strip().split(":")
    return time(int(hour), int(minute))


def parse_zone(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected an IANA timezone name such as America/Chicago")
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA timezone (e.g. America/Chicago)") from None
    return name


class YamlProblem(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping (YAML 1.2: `17:00` stays a string); raise YamlProblem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlProblem("(file)", "not found") from None
    except OSError as exc:
        raise YamlProblem("(file)", f"cannot be read ({exc.strerror})") from None
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlProblem(where, f"not valid YAML: {problem}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # ruamel builds dates while parsing: 2026-13-01 fails here, not as a YAMLError.
        raise YamlProblem("(file)", f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YamlProblem("(file)", "the top level must be a mapping of keys")
    return data
