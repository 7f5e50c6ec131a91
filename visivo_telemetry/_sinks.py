"""Where a built, validated event goes: the spool, stderr, or nowhere.

A `Telemetry` picks its sink once (`_wiring`), from the opt-out and the user's settings; a
host's test suite installs a sink of its own (`testing.capture_events()`). Every sink takes the
same two calls, as every transport of the sender takes the same two:

- `add(event)`: one event (a `cli_command`, or a raw `request()`), as built.
- `add_windows(windows)`: request counts (`Window`s), each added to its window's total.

and answers `synchronous`: whether a server should hand it each request as it happens (an
in-memory sink a test reads when the response returns) rather than batch counts on a writer
thread (the spool, whose writes cost I/O). `close_windows()` lets a shutting-down server's
windows go at once; `close()` lets go of what the sink holds.
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import time

from . import _events as events
from . import _spool as spool
from ._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._files import Paths


class Window(Record):
    """Counts for one request window: `key` names it (session, window start, method, status,
    endpoint), `event` was built for it, `created_at` is its first request's time."""

    _fields = ("key", "event", "created_at", "count", "duration_ms_total", "sendable_at")


_LOCK = _thread.allocate_lock()
"""Held around every SQLite call of this process, and taken before `fork()`: a child forked
while another thread was inside SQLite would inherit SQLite's internal mutexes held, and hang."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_LOCK.acquire, after_in_parent=_LOCK.release, after_in_child=_LOCK.release
    )


def spool_idle(timeout: float) -> bool:
    """Whether no thread of this process is inside a spool call, waiting up to `timeout`.

    A signal handler asks before it records: the signal may have interrupted this very thread
    inside a spool write, and the lock is not reentrant.
    """
    if not _LOCK.acquire(timeout=timeout):
        return False
    _LOCK.release()
    return True


_INHERITED: list[Any] = []
"""Connections a forked child inherited: parked, never used or closed, because closing one in
the child could disturb the parent's WAL (SQLite forbids using a connection across fork)."""


class SpoolSink:
    """Production: events into `~/.visivo/telemetry.db`, for a sender to deliver."""

    synchronous = False

    def __init__(
        self,
        paths: Paths,
        api_key: str | None,
        host: str | None,
        destination: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """`destination` is where this process's events go, as the user's settings (else the
        application's) say now: it travels with each event, so a sender started by any later
        process sends it there. `api_key` and `host` are the application's own, remembered in
        the spool for events that carry none (an older version recorded them)."""
        self.paths = paths
        self._destination = (api_key, host)
        self._event_destination = destination
        self._destination_saved = False
        self._conn: Any = None
        self._pid = os.getpid()
        self._close_at_exit_registered = False

    def add(self, event: events.Event) -> None:
        with _LOCK:
            conn = self._connection()
            spool.append(conn, event, self._event_destination)
            self._remember_destination(conn)

    def add_windows(self, windows: list[Window]) -> None:
        rows = [
            (w.key, w.event.uuid, w.created_at, w.event.properties_json, w.count)
            + (w.duration_ms_total, w.sendable_at, *self._event_destination)
            for w in windows
        ]
        with _LOCK:
            conn = self._connection()
            spool.add_request_counts(conn, rows)
            self._remember_destination(conn)

    def close_windows(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with _LOCK:
                spool.close_windows(self._conn, events.session_id(), time.time())

    def sender_wanted(self, respect_backoff: bool) -> bool | None:
        """Whether a sender should start: rows wait (and the backoff allows, if respected);
        None when one started moments ago will drain them."""
        with _LOCK:
            conn = self._connection()
            if not spool.has_unleased(conn):
                return False
            if respect_backoff and not spool.backoff_allows(conn):
                return False
            return None if spool.sender_starting(conn) else True

    def stamp_spawn(self, when: float | None) -> None:
        """Tell other hosts a sender was just started (None: the start failed)."""
        with _LOCK:
            spool.stamp(self._connection(), spool.SENDER_SPAWNED_AT, when)

    def close(self) -> None:
        self._adopt_fork()
        with _LOCK:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _remember_destination(self, conn: Any) -> None:
        if not self._destination_saved:
            spool.remember_destination(conn, *self._destination)
            self._destination_saved = True

    def _connection(self) -> Any:
        """This process's connection (a forked child parks its parent's and opens its own)."""
        self._adopt_fork()
        if self._conn is None:
            self._conn = spool.connect(self.paths.db)
            if not self._close_at_exit_registered:
                atexit.register(self._close_at_exit)
                self._close_at_exit_registered = True
        return self._conn

    def _adopt_fork(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            if self._conn is not None:
                _INHERITED.append(self._conn)
            self._conn = None

    def _close_at_exit(self) -> None:
        """Close the connection as the host exits, so Python 3.13+ never prints a
        `ResourceWarning` about it on the host's stderr; never waits long for a busy thread."""
        try:
            self._adopt_fork()
            if not _LOCK.acquire(timeout=1.0):
                return
            try:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()
            finally:
                _LOCK.release()
        except Exception:
            pass


class DebugSink:
    """`VISIVO_TELEMETRY_DEBUG=1`: each event as one JSON line on stderr, nothing stored."""

    synchronous = False

    def add(self, event: events.Event) -> None:
        write_stderr(events.dumps(event.wire()))

    def add_windows(self, windows: list[Window]) -> None:
        for window in windows:
            self.add(window.event)

    def close_windows(self) -> None:
        pass

    def close(self) -> None:
        pass


class NullSink:
    """Telemetry is on but nobody gave a usable PostHog key: events are built, then dropped."""

    synchronous = False

    def add(self, event: events.Event) -> None:
        pass

    def add_windows(self, windows: list[Window]) -> None:
        pass

    def close_windows(self) -> None:
        pass

    def close(self) -> None:
        pass


def purge_spool(home: Paths) -> None:
    """An opt-out: delete the spool and every copy of it set aside."""
    with _LOCK:
        spool.purge(home.db)


def write_stderr(line: str) -> None:
    """One line on the host's stderr, never raising (a closed or broken stderr is ignored)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        pass
