"""Wiring telemetry into the frameworks hosts are built on, and the contract they are written to.

`integrations.click`, `integrations.flask` and `integrations.wsgi` are each one `instrument()`
call. They, and any integration written outside this package (Typer, ASGI, another server), use
only the public package and the integration API below: nothing else of the library, so the
library's inside can change without breaking them (`tests/test_public_api.py` checks ours).

The integration API:

- On `Telemetry`: `enabled` (read it per run, not once: a test's `capture_events()` changes it),
  `command(name, args, started_at=)`, `notice()`, and `request_counter(endpoint_of, window_s=)`.
- On the `Command` that `command()` returns (a context manager): `name` and `args` may be set
  while it runs (they are read when it ends), `metrics` holds what `set_metric` attached, and
  `works_on(project_dir)` tells it which project the command works on (that project's opt-out
  then wins for the run).
- On the `RequestCounter`: `submit(method, status, duration_ms, where)` from the request
  thread, never blocking (`where` is handed to `endpoint_of` on the writer thread), and
  `drain()` at shutdown; it drains by itself at interpreter exit and on a fatal SIGTERM.
  `WINDOW_S` is the default window.
- `on_signal(callback, signums)` / `remove_signal_callback(callback)`: `callback(signum,
  fatal)` runs when one of `signums` (`INTERRUPT_OR_TERMINATE`, the default, or `TERMINATE`)
  arrives, before it takes effect; the process then ends exactly as it would have without us.
- For naming what a parser saw: `DeclaredOption(text, sensitive)` marks a token the host's own
  parser knows is one of its options (kept as typed by `sanitize_args`), `is_sensitive_flag`,
  `is_number`, the placeholders `REDACTED` and `VALUE`, and `MAX_ARGS`, how many argument
  tokens are ever recorded (an integration need not read further); for routes, `is_clean_segment` (a
  segment the sender accepts) and `sanitize_endpoint`.
"""

from .._client import Command
from .._requests import RequestCounter
from .._sanitize import DeclaredOption, is_number, is_sensitive_flag, sanitize_endpoint
from .._schema import MAX_ARGS, REDACTED, VALUE, is_clean_segment
from .._signals import INTERRUPT_OR_TERMINATE, TERMINATE
from .._signals import register as on_signal
from .._signals import unregister as remove_signal_callback
from .._tuning import WINDOW_S

__all__ = [
    "INTERRUPT_OR_TERMINATE",
    "MAX_ARGS",
    "REDACTED",
    "TERMINATE",
    "VALUE",
    "WINDOW_S",
    "Command",
    "DeclaredOption",
    "RequestCounter",
    "is_clean_segment",
    "is_number",
    "is_sensitive_flag",
    "on_signal",
    "remove_signal_callback",
    "sanitize_endpoint",
]
