"""One sender's life: take the lock, drain, hand off safely, and never outlive its cap.

Used by the detached `python -m sender` (respecting backoff, hard lifetime cap) and by
`visivo-telemetry flush` (in the foreground, ignoring backoff).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

from filelock import FileLock, Timeout

from visivo_telemetry import config, spool
from visivo_telemetry.spawn import SENDER_NICENESS

from .drain import Drain, Outcome
from .transport import HttpxTransport, Transport

LIFETIME_S = 30
"""Hard wall-clock cap of a detached sender, DNS and TLS included (enforced by SIGALRM)."""
DRAIN_BUDGET_S = 25.0
"""Soft deadline: stop claiming new batches well before the hard cap kills us."""
MAX_HANDOFFS = 10
LINGER_S = 0.5
"""A detached sender waits this long for more events before it lets go of the lock: commands
run back to back (scripts, Makefiles) then share one sender instead of starting one each."""
POLL_S = 0.05


def _waiting(db_path: str) -> bool:
    """Whether unleased events wait in the spool (never creates the file).

    When in doubt, yes: a needless second look costs one empty claim, a wrong "no" could
    strand the event of a host that saw us alive and so started no sender of its own.
    """
    try:
        conn = spool.open_existing(db_path)
        if conn is None:
            return False
        try:
            return spool.has_unleased(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return True


def _check_in(db_path: str) -> None:
    """Tell hosts this sender has come and gone: the lock holder will drain their rows."""
    try:
        conn = spool.connect(db_path)
        try:
            spool.set_state(conn, "sender_started_at", f"{time.time():.6f}")
        finally:
            conn.close()
    except sqlite3.Error:
        pass


def _drain_locked(db_path: str, make_drain: Callable[[sqlite3.Connection], Drain]) -> Outcome:
    """One drain under the lock; a spool found corrupt while draining is moved aside."""
    conn = spool.connect(db_path)
    try:
        return make_drain(conn).run()
    except sqlite3.DatabaseError as error:
        if not spool.is_corruption(error):
            raise
        conn.close()
        spool.move_aside(db_path)
        return Outcome(0, 0, 0, "corrupt")
    finally:
        conn.close()


def _add(before: Outcome, after: Outcome) -> Outcome:
    """Two drains' counts together, stopped for the later one's reason."""
    return Outcome(
        before.sent + after.sent,
        before.failed + after.failed,
        before.dropped + after.dropped,
        after.stopped_because,
    )


def deliver(
    *,
    respect_backoff: bool = True,
    lock_timeout: float = 0.0,
    budget_s: float = DRAIN_BUDGET_S,
    transport: Transport | None = None,
    progress: Callable[[int, int], None] | None = None,
    linger_s: float = 0.0,
) -> Outcome | None:
    """Drain the spool as the only sender; None when another sender holds the lock.

    After releasing the lock we look at the spool once more: a host that appended while we
    were finishing saw the lock held and did not start a sender, so its events are ours.
    """
    where = config.paths()
    if where is None or not os.path.exists(where.db):
        return Outcome(0, 0, 0, "empty")
    if not config.decide(None).enabled:
        spool.purge(where.db)
        return Outcome(0, 0, 0, "opted-out")
    deadline = time.monotonic() + budget_s
    total = Outcome(0, 0, 0, "empty")
    own_transport = transport is None
    transport = transport or HttpxTransport()
    try:
        for _ in range(MAX_HANDOFFS):
            lock = FileLock(where.lock, timeout=lock_timeout, mode=0o600)
            try:
                lock.acquire()
            except Timeout:
                _check_in(where.db)
                return None if total == Outcome(0, 0, 0, "empty") else total

            def make_drain(conn: sqlite3.Connection) -> Drain:
                return Drain(
                    conn,
                    transport,
                    where.db,
                    respect_backoff=respect_backoff,
                    deadline=deadline,
                    progress=progress,
                )

            try:
                outcome = _drain_locked(where.db, make_drain)
                quiet_until = time.monotonic() + linger_s
                while outcome.stopped_because == "empty" and time.monotonic() < min(
                    quiet_until, deadline
                ):
                    time.sleep(POLL_S)
                    if _waiting(where.db):
                        outcome = _add(outcome, _drain_locked(where.db, make_drain))
                        quiet_until = time.monotonic() + linger_s
            finally:
                lock.release()
            total = _add(total, outcome)
            if outcome.stopped_because != "empty" or not _waiting(where.db):
                return total
            lock_timeout = 0.0
        return total
    finally:
        if own_transport:
            transport.close()


def _lower_priority() -> None:
    """Yield the CPU to the user's next command, but never starve (hosts lower it too).

    Not SCHED_IDLE: on a busy machine an idle-class process may not run for minutes, so it
    could neither honour its lifetime cap nor release a SQLite lock that hosts wait on.
    """
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, max(current, SENDER_NICENESS))
    except (AttributeError, OSError):
        pass


def _arm_lifetime_cap() -> None:
    """SIGALRM with its default action ends the process even inside a blocking DNS lookup."""
    try:
        import signal

        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(LIFETIME_S)
    except (AttributeError, ValueError, OSError):
        pass


def main() -> None:
    """Entry point of the detached sender: silent, bounded, exits when the spool is empty."""
    _arm_lifetime_cap()
    _lower_priority()
    try:
        deliver(linger_s=LINGER_S)
    except BaseException:
        pass
