"""Writing the YAML configuration back (admin screens): comments kept, validated, atomic.

A change is applied to a round-trip copy of the file (ruamel keeps comments, order and flow
style), the result is validated exactly as at start-up from a temporary file beside the real
one, and only then renamed over it. An invalid change leaves the file untouched.

Where riskman may not write the config file (the guard: `/etc/riskman` is root's), an admin
change goes into the admin overlay instead (`riskman.admin.yaml` beside the database, see
`riskman.config.load_config`): it holds only what admins changed through riskman, and wins
over the file for those keys.
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
from riskman.config import ConfigError, Settings, load_config, merge_overlay
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
    *,
    source: Path | None = None,
    header: str | None = None,
) -> None:
    """Write `path` as `source` (default: `path` itself; missing: empty) changed by `mutate`,
    once `validate` accepts it from a temporary file in the same folder. `header`: the
    comment a new file starts with."""
    yaml = _yaml()
    source = path if source is None else source
    original = source.read_text(encoding="utf-8") if source.exists() else ""
    data = yaml.load(original) or CommentedMap()
    if not original and header:
        data.yaml_set_start_comment(header)
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


def _changes_from(before: Any, changes: Mapping[KeyPath, Any]) -> list[Change]:
    """The changes that change something, with the old values read from `before`."""
    return [
        Change(key, _get(before, key), value)
        for key, value in changes.items()
        if _get(before, key) != _plain(value) or (value is NULL and not _has(before, key))
    ]


def update_config(path: Path, changes: Mapping[KeyPath, Any]) -> tuple[Settings, list[Change]]:
    """Apply `changes` (key path -> new value; None removes the key, NULL writes a null) to
    the config file.

    Returns the new effective settings and what changed (old and new values, for the audit).
    Raises ConfigError (the file untouched) when the result is invalid.
    """
    before = _yaml().load(path.read_text(encoding="utf-8")) or {}
    applied = _changes_from(before, changes)

    def mutate(data: CommentedMap) -> None:
        for change in applied:
            _set(data, change.path, change.new)

    if applied:
        _edit(path, mutate, load_config)
    return load_config(path), applied


def admin_target(config: Path, overlay: Path) -> Path:
    """Where an admin change is written: the overlay once it exists (it wins over the file,
    so a change written to the file would not show), or when this process may not write
    the config file or its folder (the atomic rename needs both); else the config file."""
    if overlay.exists():
        return overlay
    if os.access(config, os.W_OK) and os.access(config.parent, os.W_OK):
        return config
    return overlay


def overlay_header(config: Path) -> str:
    return (
        "riskman's admin overlay: changes an admin made through riskman (the admin\n"
        f"screens or the control API), because riskman may not write {config.resolve()}.\n"
        "For the keys set here they win over that file. Written by riskman: to go back to\n"
        "the file's values, delete this file and restart riskman."
    )


def update_overlay(
    config: Path, overlay: Path, changes: Mapping[KeyPath, Any]
) -> tuple[Settings, list[Change]]:
    """`update_config` for the admin overlay: old values come from the file and the overlay
    merged (what riskman reads); the overlay gets only the changed keys. A change under
    `accounts` first copies the file's whole list (the overlay's list replaces the file's,
    and the key paths index into it); removing a key the file sets writes an explicit null,
    else the file's value would show through."""
    yaml = _yaml()
    file_data = yaml.load(config.read_text(encoding="utf-8")) or CommentedMap()
    over = yaml.load(overlay.read_text(encoding="utf-8")) if overlay.exists() else None
    before = merge_overlay(file_data, over or {})
    applied = _changes_from(before, changes)

    def mutate(data: CommentedMap) -> None:
        for change in applied:
            value = change.new
            if change.path[0] == "accounts":
                if "accounts" not in data:
                    data["accounts"] = _plain(list(file_data.get("accounts") or []))
            elif value is None and _get(file_data, change.path) is not None:
                value = NULL
            _set(data, change.path, value)
        _block_style(data)

    if applied:
        _edit(
            overlay,
            mutate,
            lambda tmp: load_config(config, overlay=tmp),
            header=overlay_header(config),
        )
    if overlay.exists():
        return load_config(config, overlay=overlay), applied
    return load_config(config), applied


def _block_style(data: CommentedMap) -> None:
    """The overlay's mappings one key a line (its lists stay as they were written)."""
    for value in data.values():
        if isinstance(value, CommentedMap):
            value.fa.set_block_style()
            _block_style(value)


def holidays_target(path: Path, folder: Path) -> Path:
    """Where edited holidays are written: the holidays file itself when this process may
    write it (and its folder), else a copy `holidays.yaml` in `folder` (the database's)."""
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return path
    return folder / "holidays.yaml"


def update_holidays(
    path: Path,
    closed: Sequence[Mapping[str, Any]],
    early_close: Sequence[Mapping[str, Any]],
    *,
    into: Path | None = None,
) -> HolidayCalendar:
    """Replace the holiday lists (comments at the top of the file are kept); `into`: write
    the result there instead of over `path`."""

    order = ("date", "time", "name")

    def ordered(entry: Mapping[str, Any]) -> dict[str, Any]:
        return {key: entry[key] for key in order if key in entry}

    def mutate(data: CommentedMap) -> None:
        data["closed"] = CommentedSeq(_plain(ordered(entry)) for entry in closed)
        data["early_close"] = CommentedSeq(_plain(ordered(entry)) for entry in early_close)

    target = path if into is None else into
    _edit(target, mutate, HolidayCalendar.load, source=path)
    return HolidayCalendar.load(target)
