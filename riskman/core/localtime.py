"""Times as a trader reads them: in the configured zone, with its abbreviation. Inside, times
are aware UTC (and stored text, such as a lock's end in a breach report, says them in ISO);
the screens, the breach reports and `riskman report` show them here, one way.

Standard library only: the widgets and the reports both use it.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:\+00:00|Z)")


def clock_time(at: datetime, zone: tzinfo, *, seconds: bool = False) -> str:
    """A time of day in the configured zone, with its abbreviation: `17:00 CST`."""
    local = at.astimezone(zone)
    text = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    name = local.tzname()
    return f"{text} {name}" if name else text


def local_times(text: str, zone: tzinfo) -> str:
    """UTC instants written into a text (ISO), as the local time of day a trader reads:
    `until 2026-12-06T05:40:50+00:00` -> `until 23:40:50 CST`."""
    return _INSTANT.sub(
        lambda match: clock_time(
            datetime.fromisoformat(match.group(0).replace("Z", "+00:00")), zone, seconds=True
        ),
        text,
    )
