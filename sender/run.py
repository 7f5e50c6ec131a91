"""One sender's life: take the lock, drain, hand off safely, and never outlive its cap.

Used by the detached `python -m sender` (respecting backoff, hard lifetime cap) and by
`visivo-telemetry flush` (in the foreground, ignoring backoff).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from visivo_telemetry import _spool as spool
from visivo_telemetry._files import is_plain_or_absent, paths, spool_refusal
from visivo_telemetry._precedence import decide
from visivo_telemetry._spawn import SENDER_NICENESS
from visivo_telemetry._tuning import DRAIN_BUDGET_S, LIFETIME_S, LINGER_S, POLL_S

from .drain import Drain, Failure, Outcome, Stop, record_failure
from .transport import HttpxTransport, Transport, TransportError, describe

MAX_HANDOFFS = 10


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


def _wal_signature(db_path: str) -> tuple[int, int] | None:
    """The write-ahead log's size and time: every write a host makes changes one of them, so
    a lingering sender opens the spool only when something was written (one `stat` a poll)."""
    try:
        found = os.stat(db_path + "-wal")
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def _check_in(db_path: str) -> None:
    """Tell hosts this sender is about to try the lock: whoever holds it drains their rows."""
    try:
        conn = spool.connect(db_path)
        try:
            spool.stamp(conn, spool.SENDER_STARTED_AT, time.time())
        finally:
            conn.close()
    except sqlite3.Error:
        pass


def drain_spool(db_path: str, transport: Transport, **options: Any) -> Outcome:
    """One drain of the spool at `db_path` by the lock holder (`options` go to `Drain`).

    This opens the connection, so this closes it; an opt-out seen while draining deletes the
    spool, and a spool found corrupt is moved aside.
    """
    conn = spool.connect(db_path)
    try:
        outcome = Drain(conn, transport, **options).run()
    except sqlite3.DatabaseError as error:
        if not spool.is_corruption(error):
            raise
        conn.close()
        spool.move_aside(db_path)
        return Outcome(stopped_because=Stop.CORRUPT)
    finally:
        conn.close()
    if outcome.stopped_because is Stop.OPTED_OUT:
        spool.purge(db_path)
    return outcome


def deliver(
    *,
    respect_backoff: bool = True,
    lock_timeout: float = 0.0,
    budget_s: float = DRAIN_BUDGET_S,
    transport: Transport | None = None,
    progress: Callable[[int, int], None] | None = None,
    linger_s: float = 0.0,
    explain: Callable[[str], None] | None = None,
) -> Outcome:
    """Drain the spool as the only sender; `Stop.BUSY` when another sender holds the lock.

    After releasing the lock we look at the spool once more: a host that appended while we
    were finishing saw the lock held and did not start a sender, so its events are ours.
    """
    where = paths()
    if where is None or not os.path.exists(where.db) or spool_refusal(where) is not None:
        return Outcome()  # a spool that is not the user's own is never read, sent or deleted
    if not decide(None).enabled:
        spool.purge(where.db)
        return Outcome(stopped_because=Stop.OPTED_OUT)
    deadline = time.monotonic() + budget_s
    total: Outcome | None = None
    own_transport = transport is None
    try:
        from filelock import FileLock, Timeout

        transport = transport or HttpxTransport()
    except TransportError as error:
        return cannot_send(where.db, Failure(error.kind, None, error.detail), respect_backoff)
    except ImportError as error:  # filelock (httpx's is a `TransportError` already)
        failure = Failure("sender-unavailable", None, describe(error))
        return cannot_send(where.db, failure, respect_backoff)
    options = {
        "respect_backoff": respect_backoff,
        "deadline": deadline,
        "progress": progress,
        "explain": explain,
    }
    try:
        for _ in range(MAX_HANDOFFS):
            # Checked in before trying the lock: a host that still sees this sender as "starting"
            # committed its row before we try, so a holder we lose to will see that row.
            _check_in(where.db)
            if not is_plain_or_absent(where.lock):
                return Outcome(stopped_because=Stop.UNSAFE_LOCK)
            lock = FileLock(where.lock, timeout=lock_timeout, mode=0o600)
            try:
                lock.acquire()
            except Timeout:
                return Outcome(stopped_because=Stop.BUSY) if total in (None, Outcome()) else total
            try:
                outcome = drain_spool(where.db, transport, **options)
                quiet_until = time.monotonic() + linger_s
                seen = _wal_signature(where.db)
                while outcome.stopped_because is Stop.EMPTY and time.monotonic() < min(
                    quiet_until, deadline
                ):
                    time.sleep(POLL_S)
                    if _wal_signature(where.db) == seen:
                        continue  # nothing written: the final check below stays the safety net
                    if _waiting(where.db):
                        outcome = outcome.then(drain_spool(where.db, transport, **options))
                        quiet_until = time.monotonic() + linger_s
                    seen = _wal_signature(where.db)
            finally:
                lock.release()
            total = outcome if total is None else total.then(outcome)
            if outcome.stopped_because is not Stop.EMPTY or not _waiting(where.db):
                return total
            lock_timeout = 0.0
        return total or Outcome()
    finally:
        if own_transport:
            transport.close()


def cannot_send(db_path: str, failure: Failure, respect_backoff: bool = True) -> Outcome:
    """Record a failure that happened before any request (no HTTP stack, an unusable proxy or
    CA bundle), with its backoff: hosts then start no sender per command until it allows."""
    try:
        conn = spool.open_existing(db_path)
        if conn is None:
            return Outcome()
        try:
            if respect_backoff and not spool.backoff_allows(conn):
                return Outcome(stopped_because=Stop.BACKOFF)
            pending, _ = spool.summary(conn)
            record_failure(conn, [], failure)
            spool.stamp(conn, spool.SENDER_STARTED_AT, time.time())  # started, and done
        finally:
            conn.close()
    except sqlite3.Error:
        return Outcome(stopped_because=Stop.FAILED)
    return Outcome(failed=pending, stopped_because=Stop.FAILED)


_LIFETIME_ENV = "VISIVO_TELEMETRY_SENDER_LIFETIME_S"
_MIN_LIFETIME_S = 1.0


def _lifetime_s() -> float:
    """This sender's hard cap: `LIFETIME_S`, or less when `VISIVO_TELEMETRY_SENDER_LIFETIME_S` says.

    A private knob, read only here by the detached sender (tests use it to meet the cap in
    seconds rather than half a minute): a number of seconds, clamped to 1…`LIFETIME_S`, so it
    can shorten the cap but never lengthen it; anything that is not a number is ignored.
    """
    raw = os.environ.get(_LIFETIME_ENV, "")
    try:
        value = float(raw) if raw.strip() else float(LIFETIME_S)
    except ValueError:
        return float(LIFETIME_S)
    if value != value:  # NaN
        return float(LIFETIME_S)
    return min(max(value, _MIN_LIFETIME_S), float(LIFETIME_S))


def _lower_priority() -> None:
    """Yield the CPU to the user's next command, but never starve (hosts lower it too).

    Not SCHED_IDLE: on a busy machine an idle-class process may not run for minutes, so it
    could neither honour its lifetime cap nor release a SQLite lock that hosts wait on.
    Windows has no `os.getpriority`/`os.setpriority`: there this does nothing, the host having
    created the sender with `BELOW_NORMAL_PRIORITY_CLASS` (`spawn.popen_options`).
    """
    getpriority = getattr(os, "getpriority", None)
    setpriority = getattr(os, "setpriority", None)
    if getpriority is None or setpriority is None:
        return
    try:
        current = getpriority(os.PRIO_PROCESS, 0)
        setpriority(os.PRIO_PROCESS, 0, max(current, SENDER_NICENESS))
    except OSError:
        pass


def _arm_lifetime_cap(lifetime_s: float = LIFETIME_S) -> None:
    """End this process after `lifetime_s` whatever it is doing, a blocking DNS lookup included.

    With SIGALRM (POSIX): an alarm with the default action, which the kernel carries out even
    while the interpreter is stuck in C code. Without it (Windows), or when arming it fails:
    a watchdog thread (`_start_watchdog`).
    """
    try:
        import signal

        alarm = signal.alarm
        sigalrm = signal.SIGALRM
    except (ImportError, AttributeError):
        _start_watchdog(lifetime_s)
        return
    try:
        unblock = getattr(signal, "pthread_sigmask", None)
        if unblock is not None:
            unblock(signal.SIG_UNBLOCK, {sigalrm})
        signal.signal(sigalrm, signal.SIG_DFL)
        alarm(max(1, int(-(-lifetime_s // 1))))  # whole seconds, rounded up
    except (AttributeError, ValueError, OSError):
        _start_watchdog(lifetime_s)


def _start_watchdog(lifetime_s: float) -> None:
    """A daemon thread that ends the process after `lifetime_s`: the cap where SIGALRM is not.

    The calls a sender blocks in (`getaddrinfo`, connect, recv, SQLite's busy wait) release
    the GIL, so this thread runs while the main thread waits in one. `os._exit` ends the whole
    process from any thread at once, running no cleanup that could block in turn; the OS
    releases the lock, and rows are kept (deleted only after a 2xx), as when SIGALRM ends it.
    """
    import threading

    deadline = time.monotonic() + lifetime_s

    def expire() -> None:
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(left)
        os._exit(0)

    threading.Thread(target=expire, name="visivo-telemetry-lifetime-cap", daemon=True).start()


def main() -> None:
    """Entry point of the detached sender: silent, bounded, exits when the spool is empty."""
    try:
        lifetime_s = _lifetime_s()
        _arm_lifetime_cap(lifetime_s)
        _lower_priority()
        deliver(linger_s=LINGER_S, budget_s=DRAIN_BUDGET_S * lifetime_s / LIFETIME_S)
    except Exception as error:  # a bug or a broken install: backed off, never one per command
        _record_crash(error)
    except BaseException:
        pass


def _record_crash(error: Exception) -> None:
    try:
        where = paths()
        if where is not None:
            cannot_send(where.db, Failure("sender-unavailable", None, describe(error)))
    except Exception:
        pass
