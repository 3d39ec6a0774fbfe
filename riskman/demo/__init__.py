"""`riskman demo`: the full terminal against the embedded simulator, on any machine.

A layer on top of the terminal; nothing below it knows the demo. The simulator runs
in-process on a free loopback port; a demo folder (temporary, or `--keep`) holds a config
with a demo rule set that a new user breaks within a minute, a copy of the holiday calendar,
the database and the admin password hash. riskman connects through its real REST and SignalR
client, exactly as it does to TopstepX. The trader's side (the keys of the demo panel and the
scripted trader) places orders at the simulated broker, and riskman does the rest: the
closes, the cooldown countdown, the log line.

- `desk`: the demo folder's config and the trader at his simulated broker;
- `screens`: the trader screen with the demo panel and its keys, and `DemoApp`;
- `session`: `riskman demo` itself, wiring the simulator, the runtime and the app.
"""

from riskman.demo.desk import DEMO_PASSWORD, INSTRUMENTS, DemoDesk, write_config
from riskman.demo.screens import DemoApp
from riskman.demo.session import demo_session, run_demo

__all__ = [
    "DEMO_PASSWORD",
    "INSTRUMENTS",
    "DemoApp",
    "DemoDesk",
    "demo_session",
    "run_demo",
    "write_config",
]
