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

from .drain import Drain, Outcome
from .transport import HttpxTransport, Transport

LIFETIME_S = 30
"""Hard wall-clock cap of a detached sender, DNS and TLS included (enforced by SIGALRM)."""
DRAIN_BUDGET_S = 25.0
"""Soft deadline: stop claiming new batches well before the hard cap kills us."""
MAX_HANDOFFS = 10


def _waiting(db_path: str) -> bool:
    """Whether unleased events wait in the spool (read-only; never creates the file)."""
    if not os.path.exists(db_path):
        return False
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
        try:
            return spool.has_unleased(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def deliver(
    *,
    respect_backoff: bool = True,
    lock_timeout: float = 0.0,
    budget_s: float = DRAIN_BUDGET_S,
    transport: Transport | None = None,
    progress: Callable[[int, int], None] | None = None,
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
                return None if total == Outcome(0, 0, 0, "empty") else total
            try:
                conn = spool.connect(where.db)
                try:
                    outcome = Drain(
                        conn,
                        transport,
                        where.db,
                        respect_backoff=respect_backoff,
                        deadline=deadline,
                        progress=progress,
                    ).run()
                finally:
                    conn.close()
            finally:
                lock.release()
            total = Outcome(
                total.sent + outcome.sent,
                total.failed + outcome.failed,
                total.dropped + outcome.dropped,
                outcome.stopped_because,
            )
            if outcome.stopped_because != "empty" or not _waiting(where.db):
                return total
            lock_timeout = 0.0
        return total
    finally:
        if own_transport:
            transport.close()


def _lower_priority() -> None:
    """Yield the CPU to the user's next command: SCHED_IDLE where there is one, else nice."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        try:
            os.nice(10)
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
        deliver()
    except BaseException:
        pass
