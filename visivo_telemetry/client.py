"""`Telemetry`: what a host holds. Records events to the spool and starts the sender.

Every public method is wrapped so that nothing from telemetry ever raises into the host or
prints (debug mode aside). The opt-out decision is made once, in the constructor.
"""

from __future__ import annotations

import _thread
import atexit
import contextvars
import os
import sys
import time

from . import config, events, spool
from .sanitize import sanitize_args, sanitize_endpoint
from .spawn import reap, sender_alive, spawn_sender

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType
    from typing import Any

SERVER_BATCH_READY = 100
"""A long-running host starts a sender once this many events were recorded since the last…"""
SERVER_SPAWN_INTERVAL_S = 60.0
"""…or once this long has passed since it last started one, whichever comes first."""

_SPOOL_LOCK = _thread.allocate_lock()
"""Held around every SQLite call, and taken before `fork()`: a child forked while another
thread was inside SQLite would inherit SQLite's internal mutexes held, and hang."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_SPOOL_LOCK.acquire,
        after_in_parent=_SPOOL_LOCK.release,
        after_in_child=_SPOOL_LOCK.release,
    )

_INHERITED: list[Any] = []
"""Connections a forked child inherited: parked, never used or closed, because closing one in
the child could disturb the parent's WAL (SQLite forbids using a connection across fork)."""

_current: contextvars.ContextVar[CommandRecorder | None] = contextvars.ContextVar(
    "visivo_telemetry_command", default=None
)


def set_metric(name: str, value: Any) -> None:
    """Attach a metric (`job_count`, `object_counts`) to the command being recorded, if any."""
    recorder = _current.get()
    if recorder is not None:
        recorder.metrics[name] = value


class CommandRecorder:
    """The `with telemetry.command(...)` block: times it and records one `cli_command`."""

    def __init__(self, telemetry: Telemetry, name: str, args: Iterable[object]) -> None:
        self._telemetry = telemetry
        self.name = name
        self.args = args
        self.metrics: dict[str, Any] = {}
        self._started = 0.0
        self._token: contextvars.Token[CommandRecorder | None] | None = None

    def __enter__(self) -> CommandRecorder:
        self._started = time.perf_counter()
        try:
            self._token = _current.set(self)
        except Exception:
            self._token = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        duration_ms = (time.perf_counter() - self._started) * 1000.0
        try:
            if self._token is not None:
                _current.reset(self._token)
        except Exception:
            pass
        error_type = None
        if exc_type is not None and not _counts_as_success(exc):
            error_type = exc_type.__name__
        self._telemetry.record_command(self.name, self.args, duration_ms, error_type, self.metrics)
        self._telemetry.finish()
        return False


def _counts_as_success(exc: BaseException | None) -> bool:
    """`SystemExit(0)` and click's `Exit(0)` end a command normally (click not imported)."""
    if isinstance(exc, SystemExit):
        return exc.code in (0, None)
    return type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0


class Telemetry:
    """Anonymous usage telemetry for one host process. Never raises, never prints."""

    def __init__(
        self,
        version: str,
        project_dir: str | os.PathLike[str] | None = ".",
        *,
        api_key: str | None = None,
        host: str | None = None,
        long_running: bool = False,
    ) -> None:
        """`api_key` and `host` are the application's PostHog project key and ingestion host.

        The user's `VISIVO_POSTHOG_API_KEY` / `VISIVO_POSTHOG_HOST` (or `~/.visivo/config.yml`)
        override them. With no key from either, nothing is recorded or sent.
        """
        self.version = str(version)
        self.api_key = api_key
        self.host = host
        self.long_running = long_running
        self._pid = os.getpid()
        self._conn: Any = None
        self._spawned = False
        self._destination_saved = False
        self._close_at_exit_registered = False
        self._children: list[int] = []
        self._since_spawn = 0
        self._last_spawn = 0.0
        self.paths = None
        self.settings: config.Settings | None = None
        try:
            decision = config.decide(project_dir)
            self.paths = config.paths()
            if decision.enabled and self.paths is not None:
                self.settings = config.settings(None, api_key, host)
            elif self.paths is not None:
                spool.purge(self.paths.db)
        except Exception:
            decision = config.Decision(False, "error")
        self.decision = decision

    @property
    def enabled(self) -> bool:
        """Whether this process records anything at all."""
        return self.decision.enabled

    @property
    def decided_by(self) -> str:
        """Which source decided: `env:NAME`, `project`, `global` or `default`."""
        return self.decision.decided_by

    @property
    def debug(self) -> bool:
        """Print events instead of spooling them; never turns on telemetry that is off."""
        return bool(self.enabled and self.settings is not None and self.settings.debug)

    @property
    def _sends(self) -> bool:
        """Whether this process spools events and starts senders (on, not debug, has a key)."""
        return self._has_key and not self.debug

    @property
    def _has_key(self) -> bool:
        """Whether telemetry is on and someone gave a usable key (nothing is sent without)."""
        return bool(self.enabled and self.settings is not None and not self.settings.key_error)

    def notice(self) -> str | None:
        """The first-run notice to print to stderr, once per machine; None when not to show."""
        if not self._has_key:
            return None
        try:
            from .notice import first_run_notice

            return first_run_notice(self)
        except Exception:
            return None

    def command(self, name: str, args: Iterable[object] = ()) -> CommandRecorder:
        """A context manager recording one `cli_command` when the block ends."""
        return CommandRecorder(self, name, args)

    def record_command(
        self,
        name: str,
        args: Iterable[object],
        duration_ms: float,
        error_type: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Record one finished CLI command; `args` are sanitized here."""
        if not self.enabled:
            return
        try:
            props = events.cli_command_properties(
                name, sanitize_args(args), duration_ms, error_type, dict(metrics or {})
            )
            if self.debug:
                for key in sorted(set(metrics or {}) - set(props), key=str)[:10]:
                    sys.stderr.write(f"visivo-telemetry: metric {events.safe_name(key)} dropped\n")
            self._record("cli_command", props)
        except Exception:
            pass

    def request(self, method: str, endpoint: str, status_code: int, duration_ms: float) -> None:
        """Record one API request; `endpoint` is sanitized unless it is a known template."""
        if not self.enabled:
            return
        try:
            self.record_request(method, sanitize_endpoint(endpoint), status_code, duration_ms)
        except Exception:
            pass

    def record_request(
        self, method: str, endpoint: str, status_code: int, duration_ms: float
    ) -> None:
        """Record one API request whose endpoint is already a route template."""
        if not self.enabled:
            return
        try:
            props = events.api_request_properties(method, endpoint, status_code, duration_ms)
            self._record("api_request", props)
            if self.long_running:
                self._since_spawn += 1
                self.maybe_start_sender()
        except Exception:
            pass

    def _adopt_fork(self) -> None:
        """In a forked child: the parent's connection parked, a sender of our own to start."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None
        self._spawned = False
        self._children = []

    def _record(self, name: str, props: dict[str, Any]) -> None:
        self._adopt_fork()
        event = events.build(name, self.version, props)
        if event is None:
            return
        if self.debug:
            self._print_debug(event)
            return
        if not self._has_key:
            return
        with _SPOOL_LOCK:
            conn = self._connection()
            if conn is not None:
                spool.append(conn, event)
                if not self._destination_saved:
                    spool.remember_destination(conn, self.api_key, self.host)
                    self._destination_saved = True

    @staticmethod
    def _print_debug(event: events.Event) -> None:
        try:
            sys.stderr.write(events.dumps(event.wire()) + "\n")
            sys.stderr.flush()
        except Exception:
            pass

    def _connection(self) -> Any:
        """This process's spool connection (`_adopt_fork` parks a parent's after a fork)."""
        if self._conn is not None:
            return self._conn
        if self.paths is None:
            return None
        try:
            self._conn = spool.connect(self.paths.db)
        except Exception:
            self._conn = None
        if self._conn is not None and not self._close_at_exit_registered:
            atexit.register(self._close_at_exit)
            self._close_at_exit_registered = True
        return self._conn

    def _close_at_exit(self) -> None:
        """Close the spool connection as the host exits, so Python 3.13+ never prints a
        `ResourceWarning` about it on the host's stderr; never waits long for a busy thread."""
        self._adopt_fork()
        if not _SPOOL_LOCK.acquire(timeout=1.0):
            return
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        except Exception:
            pass
        finally:
            _SPOOL_LOCK.release()

    def finish(self) -> None:
        """End of a CLI command: start the sender if events wait (at most once per process)."""
        self._adopt_fork()
        if self._spawned or not self._sends:
            return
        try:
            self._start_sender_if_needed(respect_backoff=True)
        except Exception:
            pass

    def maybe_start_sender(self, force: bool = False) -> None:
        """For long-running hosts: start a sender when a batch is ready or the interval passed."""
        if not self._sends:
            return
        due = self._since_spawn >= SERVER_BATCH_READY or (
            self._since_spawn and time.monotonic() - self._last_spawn >= SERVER_SPAWN_INTERVAL_S
        )
        if not (force or due):
            return
        try:
            self._adopt_fork()
            self._children = reap(self._children)
            self._spawned = False
            self._start_sender_if_needed(respect_backoff=False)
        except Exception:
            pass

    def _start_sender_if_needed(self, respect_backoff: bool) -> None:
        if self.paths is None:
            return
        with _SPOOL_LOCK:
            conn = self._connection()
            if conn is None or not spool.has_unleased(conn):
                return
            if respect_backoff and not spool.backoff_allows(conn):
                return
            if spool.sender_starting(conn):
                self._spawned = True
                return
        # Probe after our rows are committed: a sender that is about to exit re-checks the
        # spool after releasing the lock, so one of us always sees the other's work.
        if sender_alive(self.paths.lock):
            return
        with _SPOOL_LOCK:
            spool.set_state(conn, "sender_spawned_at", f"{time.time():.6f}")
        pid = spawn_sender()
        if pid is None:
            with _SPOOL_LOCK:
                spool.set_state(conn, "sender_spawned_at", None)
        self._spawned = True
        self._last_spawn = time.monotonic()
        self._since_spawn = 0
        if pid is not None:
            self._children.append(pid)

    def close(self) -> None:
        """Close the spool connection (long-running hosts at shutdown)."""
        self._adopt_fork()
        with _SPOOL_LOCK:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    pass
            self._conn = None
