"""Writing the YAML configuration back (admin screens): comments kept, validated, atomic.

A change is applied to a round-trip copy of the file (ruamel keeps comments, order and flow
style), the result is validated exactly as at start-up from a temporary file beside the real
one, and only then renamed over it. An invalid change leaves the file untouched.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from riskman.calendar import HolidayCalendar
from riskman.config import ConfigError, Settings, load_config
from riskman.core.files import write_atomically

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Change:
    path: KeyPath
    old: Any
    new: Any

    @property
    def key(self) -> str:
        return ".".join(str(part) for part in self.path)


class _Null:
    """An explicit YAML null, for an optional key whose default is not None ("no hourly
    limit"): a None value in `update_config` removes the key, which brings the default back."""

    def __repr__(self) -> str:
        return "null"


NULL: Final = _Null()


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never re-wrap lines the admin did not touch
    # `key: null`, not a bare `key:` that reads like a value was forgotten.
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _plain(value: Any) -> Any:
    """A value as YAML should hold it (Decimal -> number, time -> "HH:MM")."""
    if value is NULL:
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _plain(item)
        mapping.fa.set_flow_style()
        return mapping
    if isinstance(value, list | tuple):
        seq = CommentedSeq(_plain(item) for item in value)
        seq.fa.set_flow_style()
        return seq
    return value


def to_text(value: Any) -> str:
    """A value as the admin types it (the file's own YAML spelling, in flow style)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = True
    yaml.width = 4096
    buffer = io.StringIO()
    yaml.dump(value, buffer)
    return buffer.getvalue().strip().removesuffix("...").strip()


def _get(data: Any, path: KeyPath) -> Any:
    for part in path:
        if isinstance(data, Mapping) and part in data:  # noqa: SIM114 (two types for mypy)
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _has(data: Any, path: KeyPath) -> bool:
    parent = _get(data, path[:-1]) if len(path) > 1 else data
    return isinstance(parent, Mapping) and path[-1] in parent


def _set(data: CommentedMap, path: KeyPath, value: Any) -> None:
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, list):
            index = int(part)
            if not isinstance(node[index], Mapping):
                # An account listed as a bare id (`- 1001`) gets its own keys (`rules:`):
                # it becomes `{id: 1001, ...}`.
                entry = CommentedMap(id=node[index])
                entry.fa.set_flow_style()
                node[index] = entry
            node = node[index]
            continue
        if part not in node or node[part] is None:
            node[part] = CommentedMap()
            node[part].fa.set_flow_style()
        node = node[part]
    last = path[-1]
    if value is None and isinstance(node, dict):
        node.pop(last, None)
    elif isinstance(node, list):
        node[int(last)] = _plain(value)
    else:
        node[last] = _plain(value)


def _edit(
    path: Path,
    mutate: Callable[[CommentedMap], None],
    validate: Callable[[Path], object],
) -> None:
    yaml = _yaml()
    original = path.read_text(encoding="utf-8")
    data = yaml.load(original) or CommentedMap()
    mutate(data)
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    text = buffer.getvalue()
    # Validate from a temporary file in the same folder, so relative paths resolve the same.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.check-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            validate(Path(tmp))
        except ConfigError as exc:
            raise ConfigError([p.replace(tmp, str(path)) for p in exc.problems]) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    write_atomically(path, text)


def update_config(path: Path, changes: Mapping[KeyPath, Any]) -> tuple[Settings, list[Change]]:
    """Apply `changes` (key path -> new value; None removes the key, NULL writes a null) to
    the config file.

    Returns the new effective settings and what changed (old and new values, for the audit).
    Raises ConfigError (the file untouched) when the result is invalid.
    """
    before = _yaml().load(path.read_text(encoding="utf-8")) or {}
    applied = [
        Change(key, _get(before, key), value)
        for key, value in changes.items()
        if _get(before, key) != _plain(value) or (value is NULL and not _has(before, key))
    ]

    def mutate(data: CommentedMap) -> None:
        for change in applied:
            _set(data, change.path, change.new)

    if applied:
        _edit(path, mutate, load_config)
    return load_config(path), applied


def update_holidays(
    path: Path, closed: Sequence[Mapping[str, Any]], early_close: Sequence[Mapping[str, Any]]
) -> HolidayCalendar:
    """Replace the holiday lists (comments at the top of the file are kept)."""

    order = ("date", "time", "name")

    def ordered(entry: Mapping[str, Any]) -> dict[str, Any]:
        return {key: entry[key] for key in order if key in entry}

    def mutate(data: CommentedMap) -> None:
        data["closed"] = CommentedSeq(_plain(ordered(entry)) for entry in closed)
        data["early_close"] = CommentedSeq(_plain(ordered(entry)) for entry in early_close)

    _edit(path, mutate, HolidayCalendar.load)
    return HolidayCalendar.load(path)
