"""Timing and size constants whose values depend on one another, with those relations.

`check` runs when this module is imported, so a change that breaks a relation fails every
process and every test at once, instead of stranding or duplicating events on a user's machine
later. The modules that use a constant import it from here (and keep its old name importable):
the sender's life (`sender/run.py`) and delivery (`sender/drain.py`), `flush` and `purge`
(`cli.py`), the host's launcher (`_spool.py`, `_launcher.py`), request counting
(`_pipeline.py`, `_requests.py`) and the integrations' default window.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

LIFETIME_S = 30
"""Hard wall-clock cap of a detached sender, DNS and TLS included (enforced by SIGALRM, or by
a watchdog thread where there is none)."""
DRAIN_BUDGET_S = 25.0
"""Soft deadline: a sender stops claiming new batches well before the hard cap kills it."""
LINGER_S = 22.0
"""A detached sender waits this long after its last event for more, within its drain budget,
before it lets go of the lock: the next command of a script, or of a user at a terminal, then
hands its event to this sender instead of starting one of its own (an interpreter and httpx,
about 100 ms of CPU each). `flush` and `purge` ask it to let go at once."""
BRISK_S = 1.0
"""For this long after its last event a lingering sender looks for more every `POLL_S`
(commands run back to back by a script), and every `IDLE_POLL_S` after that."""
POLL_S = 0.05
"""How often a lingering sender looks for new events while commands come back to back."""
IDLE_POLL_S = 0.25
"""How often it looks after that where hosts cannot ring it (Windows): each look wakes the CPU
(a laptop's battery), and an event still leaves within about the time a fresh sender would
take to start."""
RING_WAIT_S = 2.0
"""A lingering sender that hosts can ring (a FIFO beside the lock, POSIX) sleeps until they do,
but still looks this often: a writer that does not ring (an older version) waits no longer."""
HANDOFF_S = 3.0
"""A lingering sender stops waiting this long before its drain budget ends: what a host wrote
in its last moments (it saw the lock held, so it started no sender) is drained in that time."""
SENDER_WAIT_S = 35.0
"""How long `flush` and `purge` wait for a running sender to finish."""
LEASE_S = 120.0
"""How long a claimed row stays held by its sender: the same drain never claims it twice, and
hosts leave it to that sender instead of starting another."""
SPAWN_GRACE_S = 3.0
"""How long hosts trust a sender that was just started to take the lock and drain their rows."""

BATCH_SIZE = 100
"""Events per `/batch/` request."""
SERVER_BATCH_READY = BATCH_SIZE
"""A long-running host starts a sender once this many events were recorded since the last…"""
SERVER_SPAWN_INTERVAL_S = 60.0
"""…or once this long has passed since it last started one, whichever comes first."""

WINDOW_S = 60.0
"""Identical API requests (endpoint, method, status) of one process in a window of this length
are one event, with `request_count`."""
WINDOW_GRACE_S = 5.0
"""A window is sendable this long after it ends: its writer adds the last counts within a
flush, and a late one would start a new row rather than be lost."""
FLUSH_S = 1.0
"""How often the Flask writer adds its counts to the spool: what a crash of the server may lose."""

BACKOFF_MAX_S = 3600.0
"""The longest a failure's own backoff waits (exponential, jittered)."""
LONGEST_WAIT_S = 86_400.0
"""The longest any wait may last (a receiver's `Retry-After` is capped at this): a next attempt
set further away (a clock that jumped back, an edited spool) is no wait at all, so it can never
hold automatic delivery back for good."""

RELATIONS = (
    ("POLL_S", "<", "IDLE_POLL_S", "a sender looks more often while commands come quickly"),
    ("IDLE_POLL_S", "<", "BRISK_S", "the brisk looks last longer than one idle look"),
    ("BRISK_S", "<", "LINGER_S", "a lingering sender slows its looks before it lets go"),
    ("LINGER_S", "<", "DRAIN_BUDGET_S", "a sender's whole linger fits in its drain budget"),
    ("IDLE_POLL_S", "<", "RING_WAIT_S", "a sender hosts can ring looks by itself less often"),
    ("RING_WAIT_S", "<", "LINGER_S", "a sender hosts can ring still looks while it lingers"),
    ("HANDOFF_S", "<", "LINGER_S", "a linger leaves time to drain what came at its end"),
    ("DRAIN_BUDGET_S", "<", "LIFETIME_S", "a sender stops claiming before its hard cap ends it"),
    ("SPAWN_GRACE_S", "<", "LIFETIME_S", "hosts never trust a sender longer than it lives"),
    ("LIFETIME_S", "<", "SENDER_WAIT_S", "`flush` and `purge` outwait any running sender"),
    ("LIFETIME_S", "<", "LEASE_S", "a live sender's rows are never claimed twice"),
    ("SERVER_BATCH_READY", "<=", "BATCH_SIZE", "what a server starts a sender for fits one batch"),
    ("FLUSH_S", "<", "SERVER_SPAWN_INTERVAL_S", "the writer checks the interval at each flush"),
    ("FLUSH_S", "<", "WINDOW_GRACE_S", "a window's last counts are spooled before it may be sent"),
    ("BACKOFF_MAX_S", "<=", "LONGEST_WAIT_S", "no backoff outlasts the cap on every wait"),
)
"""`(smaller, "<" or "<=", larger, what the relation keeps true)`."""


def check(values: Mapping[str, Any]) -> None:
    """Raise `ValueError` naming each constant in `values` (its upper-case numbers) that is not
    positive and each relation between them that does not hold."""
    broken = [
        f"{name} = {value} must be positive"
        for name, value in values.items()
        if name.isupper() and type(value) in (int, float) and not value > 0
    ]
    for smaller, sign, larger, why in RELATIONS:
        low, high = values[smaller], values[larger]
        if not (low < high if sign == "<" else low <= high):
            broken.append(f"{smaller} = {low} must be {sign} {larger} = {high}: {why}")
    if broken:
        raise ValueError("; ".join(broken))


check(globals())
