"""The screens' full `EngineSnapshot` and the engine's news as JSON, lossless both ways
(the control API's snapshot and stream, read back by the attached terminal). The commands'
requests and answers are the interface's pydantic models (riskman.control.interface).

Money is a decimal string ("-120.50"), never a float; times are ISO 8601 in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from riskman.core.views import (
    Breach,
    EnforcementRecord,
    EngineSnapshot,
    LimitWarning,
    LockoutChange,
    ResetDone,
)

SNAPSHOT = TypeAdapter(EngineSnapshot)
LOG = TypeAdapter(list[EnforcementRecord])
"""Enforcement log lines (the stream sends the new ones, not the whole log each time)."""
NOT_GUARDED = "NOT GUARDED"
"""An account's status when nothing enforces for it (not armed, or not to be guarded)."""


def snapshot_to_json(snapshot: EngineSnapshot) -> bytes:
    return SNAPSHOT.dump_json(snapshot, by_alias=True)


def snapshot_from_json(data: str | bytes) -> EngineSnapshot:
    """The snapshot a `snapshot_to_json` made, equal to the engine's (raises ValueError)."""
    return SNAPSHOT.validate_json(data)


CHANGES: dict[str, TypeAdapter[Any]] = {
    "enforcement": TypeAdapter(EnforcementRecord),
    "lockout": TypeAdapter(LockoutChange),
    "reset": TypeAdapter(ResetDone),
    "breach": TypeAdapter(Breach),
    "warning": TypeAdapter(LimitWarning),
}
"""The engine's news a stream frame carries beside the snapshot (for the terminal's toasts)."""


def change_to_json(kind: str, change: Any) -> bytes:
    return b'{"kind":"%s","change":%s}' % (kind.encode(), CHANGES[kind].dump_json(change))


def change_from_json(item: Mapping[str, Any]) -> Any:
    """One entry of a frame's `changes` back as the engine's object (raises ValueError)."""
    adapter = CHANGES.get(str(item.get("kind")))
    if adapter is None:
        raise ValueError(f"unknown change kind {item.get('kind')!r}")
    return adapter.validate_python(item.get("change"))
