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
from visivo_telemetry._spawn import SENDER_NICENESS, ring_sender
from visivo_telemetry._tuning import (
    BRISK_S,
    DRAIN_BUDGET_S,
    HANDOFF_S,
    IDLE_POLL_S,
    LIFETIME_S,
    LINGER_S,
    POLL_S,
    RING_WAIT_S,
)

from .doorbell import Doorbell
from .drain import Drain, Failure, Outcome, Stop, record_failure
from .transport import HttpxTransport, Transport, TransportError, describe

MAX_HANDOFFS = 10


def _look(db_path: str) -> tuple[bool, str | None]:
    """Whether unleased events wait in the spool, and when `flush` or `purge` last asked the
    lock holder to let go (never creates the file).

    When in doubt, events wait: a needless second look costs one empty claim, a wrong "no"
    could strand the event of a host that saw us alive and so started no sender of its own.
    """
    try:
        conn = spool.open_existing(db_path)
        if conn is None:
            return False, None
        try:
            return spool.has_unleased(conn), spool.get_state(conn, spool.LET_GO_ASKED_AT)
        finally:
            conn.close()
    except sqlite3.Error:
        return True, None


def _waiting(db_path: str) -> bool:
    return _look(db_path)[0]


def _write_signature(db_path: str) -> tuple[tuple[int, int] | None, ...]:
    """The sizes and times of the spool and its write-ahead log: every write changes one of
    them (a writer that closes the last connection folds the log into the spool and deletes
    it), so a lingering sender opens the spool only when something was written."""
    found = []
    for path in (db_path, db_path + "-wal"):
        try:
            stat = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((stat.st_size, stat.st_mtime_ns))
    return tuple(found)


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
    nudge: Callable[[], None] | None = None,
) -> Outcome:
    """Drain the spool as the only sender; `Stop.BUSY` when another sender holds the lock
    (`nudge` runs every second while we wait up to `lock_timeout` for it: `flush` asks a
    lingering sender to let go).

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
    asked_before = _look(where.db)[1] if linger_s > 0 else None
    asked_to_go = False

    def drain() -> Outcome:
        return drain_spool(where.db, transport, **options)

    try:
        for _ in range(MAX_HANDOFFS):
            # Checked in before trying the lock: a host that still sees this sender as "starting"
            # committed its row before we try, so a holder we lose to will see that row.
            _check_in(where.db)
            if not is_plain_or_absent(where.lock):
                return Outcome(stopped_because=Stop.UNSAFE_LOCK)
            lock = FileLock(where.lock, timeout=lock_timeout, mode=0o600)
            try:
                acquire(lock, lock_timeout, nudge)
            except Timeout:
                return Outcome(stopped_because=Stop.BUSY) if total in (None, Outcome()) else total
            # Listening before the first drain: a host that writes after it rings, and one
            # that wrote before it is drained.
            bell = Doorbell.open(where.lock) if linger_s > 0 else None
            try:
                outcome = drain()
                if linger_s > 0 and outcome.stopped_because is Stop.EMPTY:
                    outcome, asked_to_go = _linger(
                        where.db, linger_s, asked_before, outcome, drain, deadline, bell
                    )
            finally:
                if bell is not None:
                    bell.close()
                lock.release()
            total = outcome if total is None else total.then(outcome)
            if asked_to_go:
                return total  # whoever asked waits for the lock and takes the spool over
            if outcome.stopped_because is not Stop.EMPTY or not _waiting(where.db):
                return total
            lock_timeout = 0.0
        return total or Outcome()
    finally:
        if own_transport:
            transport.close()


def ask_to_let_go(db_path: str, lock_path: str) -> None:
    """Ask the sender lingering with the lock to let go: stamp `LET_GO_ASKED_AT` in the spool,
    then ring its doorbell (a spool we cannot write to: we wait for the sender's own end)."""
    try:
        conn = spool.open_existing(db_path)
        if conn is None:
            return
        try:
            spool.stamp(conn, spool.LET_GO_ASKED_AT, time.time())
        finally:
            conn.close()
    except sqlite3.Error:
        return
    ring_sender(lock_path)


def acquire(lock: Any, timeout_s: float, nudge: Callable[[], None] | None) -> None:
    """Take `lock` (a `FileLock`) within `timeout_s`, calling `nudge` every second we wait: a
    sender that took the lock after we last asked it to let go is asked again."""
    from filelock import Timeout

    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            lock.acquire(timeout=max(0.0, min(left, 1.0)) if nudge else max(0.0, left))
            return
        except Timeout:
            if nudge is None or time.monotonic() >= deadline:
                raise
            nudge()


def _linger(
    db_path: str,
    linger_s: float,
    asked_before: str | None,
    outcome: Outcome,
    drain: Callable[[], Outcome],
    deadline: float,
    bell: Doorbell | None,
) -> tuple[Outcome, bool]:
    """Hold the lock and drain what hosts write, until `linger_s` pass without an event or the
    drain budget nears its end; and whether `flush` or `purge` asked us to let go meanwhile.

    A host that finds the lock held starts no sender (it rings the doorbell), so commands run
    within the linger share this one. Without a doorbell each look is two `stat`s (the spool
    and its log); the spool is opened only when something was written, and once right after
    each drain, for what a host wrote while it ran.
    """
    seen = None
    quiet_since = time.monotonic()
    while outcome.stopped_because is Stop.EMPTY:
        now = time.monotonic()
        until = min(quiet_since + linger_s, deadline - HANDOFF_S)
        if now >= until:
            break
        if seen is not None:
            if bell is not None and bell.listening:
                bell.wait(min(until - now, RING_WAIT_S))
            else:
                time.sleep(POLL_S if now - quiet_since < BRISK_S else IDLE_POLL_S)
            if _write_signature(db_path) == seen:
                continue  # nothing written: the final check after the release stays the safety net
        seen = _write_signature(db_path)
        waiting, asked = _look(db_path)
        if asked != asked_before:
            return outcome, True
        if waiting:
            step = drain()
            outcome = outcome.then(step)
            quiet_since = time.monotonic()
            if step.sent or step.failed or step.dropped:
                seen = None  # look again at once; a drain that did nothing waits for a write
    return outcome, False


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
_LINGER_ENV = "VISIVO_TELEMETRY_SENDER_LINGER_S"
_MIN_LIFETIME_S = 1.0


def _lifetime_s() -> float:
    """This sender's hard cap: `LIFETIME_S`, or less when `VISIVO_TELEMETRY_SENDER_LIFETIME_S`
    says."""
    return _shortened(_LIFETIME_ENV, float(LIFETIME_S), _MIN_LIFETIME_S)


def _linger_s() -> float:
    """How long this sender lingers: `LINGER_S`, or less when `VISIVO_TELEMETRY_SENDER_LINGER_S`
    says (0 for none)."""
    return _shortened(_LINGER_ENV, LINGER_S, 0.0)


def _shortened(variable: str, default: float, least: float) -> float:
    """`default`, or the number of seconds the private knob `variable` gives, clamped to
    `least`…`default`: it can shorten a duration but never lengthen it; anything that is not a
    number is ignored.

    Read only here, by the detached sender: tests use them to meet the cap in seconds rather
    than half a minute, and to see a sender exit soon after its last event.
    """
    raw = os.environ.get(variable, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        return default
    if value != value:  # NaN
        return default
    return min(max(value, least), default)


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
        deliver(linger_s=_linger_s(), budget_s=DRAIN_BUDGET_S * lifetime_s / LIFETIME_S)
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
