"""The admin screens (behind the password), one module per tab: rules, guarded accounts,
reset time and holidays, lockouts, the password, and the audit trail.

Every change goes through the control interface (`riskman.control.interface`): validated as
the config file is, written atomically with its comments kept, applied to the running engine
at once, and recorded (old and new values) in the audit table, all on the engine's side. The
screen locks itself after `admin.idle_lock` without a key press.
"""

from riskman.tui.admin.screen import AdminData, AdminScreen

__all__ = ["AdminData", "AdminScreen"]
