"""`Telemetry`: what a host holds. Records events to the spool and starts the sender.

Every entry point is wrapped by `_never_raises`, the one boundary between telemetry and the
host: nothing from telemetry ever raises into the host or prints (debug mode, where it says why
an event was not recorded, aside). The opt-out decision is made once, in the constructor.

The public surface is what Visivo calls: `Telemetry(...)`, `command()`, `request()`,
`notice()`, `close()`, the `enabled`/`decided_by`/`debug` properties and `set_metric()`.
Underscored methods are hooks for our own integrations (`integrations/click.py`, `flask.py`).
"""

from __future__ import annotations

import _thread
import atexit
import contextvars
import os
import sys
import time

from . import _destination as destination
from . import _events as events
from . import _files as files
from . import _precedence as precedence
from . import _spool as spool
from ._sanitize import sanitize_args, sanitize_endpoint
from ._spawn import reap, sender_alive, spawn_sender

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType
    from typing import Any

    RequestCount = tuple[str, str, int, float, int, float, float]
    """`(method, endpoint, status_code, window_start, count, duration_ms_total, first_at)`."""

SERVER_BATCH_READY = 100
"""A long-running host starts a sender once this many events were recorded since the last…"""
SERVER_SPAWN_INTERVAL_S = 60.0
"""…or once this long has passed since it last started one, whichever comes first."""
WINDOW_S = 60.0
"""Identical API requests (endpoint, method, status) of one process in a window of this length
are one event, with `request_count`."""
WINDOW_GRACE_S = 5.0
"""A window is sendable this long after it ends: its writer adds the last counts within a
second, and a late one would start a new row rather than be lost."""

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

_capture: Any = None
"""While `visivo_telemetry.testing.capture_events()` runs: where built events go instead of the
spool, stderr or a sender (`add(event)`, `add_window(key, event, count, duration_ms_total)`)."""


def set_metric(name: str, value: Any) -> None:
    """Attach a metric (`job_count`, `object_counts`) to the command being recorded, if any."""
    recorder = _current.get()
    if recorder is not None:
        recorder.metrics[name] = value


class CommandRecorder:
    """The `with telemetry.command(...)` block: times it and records one `cli_command`."""

    def __init__(
        self,
        telemetry: Telemetry,
        name: str,
        args: Iterable[object],
        started_at: float | None = None,
    ) -> None:
        self._telemetry = telemetry
        self.name = name
        self.args = args
        self.metrics: dict[str, Any] = {}
        self._started_at = _perf_counter_reading(started_at)
        self._started = 0.0
        self._token: contextvars.Token[CommandRecorder | None] | None = None

    def __enter__(self) -> CommandRecorder:
        now = time.perf_counter()
        self._started = now if self._started_at is None else min(self._started_at, now)
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
        self._telemetry._record_command(self.name, self.args, duration_ms, error_type, self.metrics)
        self._telemetry._finish()
        return False


def _never_raises(method: Callable[..., None]) -> Callable[..., None]:
    """The boundary: run `method`; an exception is swallowed, and explained in debug mode.

    Not `functools.wraps`: the few attributes it copies are set by hand.
    """

    def guarded(self: Telemetry, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as error:
            self._explain(f"{method.__name__.lstrip('_')} failed: {type(error).__name__}")

    guarded.__name__ = method.__name__
    guarded.__qualname__ = method.__qualname__
    guarded.__doc__ = method.__doc__
    return guarded


def _perf_counter_reading(value: object) -> float | None:
    """A host's `started_at` as a float, or None (the block's own start) when it is not one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        reading = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return reading if reading == reading else None


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
        override them. With no key from either, nothing is recorded or sent. `long_running`
        (a server) starts senders as batches fill up instead of once at the end of a command.
        """
        self._version = str(version)
        self._api_key = api_key
        self._host = host
        self._long_running = long_running
        self._pid = os.getpid()
        self._conn: Any = None
        self._spawned = False
        self._destination_saved = False
        self._close_at_exit_registered = False
        self._children: list[int] = []
        self._since_spawn = 0
        self._last_spawn = 0.0
        self._paths: files.Paths | None = None
        self._settings: destination.Settings | None = None
        self._project_dir: str | None = None
        self._command_decision: precedence.Decision | None = None
        try:
            if project_dir is not None:
                self._project_dir = os.path.abspath(os.fspath(project_dir))
            decision = precedence.decide(project_dir)
            self._paths = files.paths()
            if decision.enabled and self._paths is not None:
                self._settings = destination.settings(None, api_key, host)
            elif self._paths is not None and _capture is None:
                spool.purge(self._paths.db)
        except Exception:
            decision = precedence.Decision(False, "error")
        self._decision = decision

    @property
    def enabled(self) -> bool:
        """Whether this process records anything now (off, too, while a command works on a
        project that opted out)."""
        return self._decision.enabled and self._command_decision is None

    @property
    def decided_by(self) -> str:
        """Which source decided: `env:NAME`, `project`, `global` or `default`."""
        return (self._command_decision or self._decision).decided_by

    @_never_raises
    def _decide_for_project(self, project_dir: str | os.PathLike[str]) -> None:
        """A command works on `project_dir` (its `--working-dir`), not the folder decided at
        start: that project's opt-out turns telemetry off until `_end_command_decision`, and
        the spool is purged as for any "off". It can only turn telemetry off, and the
        environment and user's file keep their precedence (`precedence.decide` reads them again).
        """
        if not self.enabled or os.path.abspath(os.fspath(project_dir)) == self._project_dir:
            return
        decision = precedence.decide(project_dir)
        if not decision.enabled:
            self._command_decision = decision
            self._purge_spool()

    def _purge_spool(self) -> None:
        """An opt-out found after start: the spool goes, as at start (not while capturing)."""
        if self._paths is not None and _capture is None:
            self.close()
            with _SPOOL_LOCK:
                spool.purge(self._paths.db)

    def _opted_out_meanwhile(self) -> bool:
        """Whether the command itself opted out (Visivo's `telemetry off` writes the user's
        file): the environment and that file are read again before its event is written."""
        decision = precedence.decide(None)
        if decision.enabled:
            return False
        self._decision = decision
        self._purge_spool()
        return True

    def _end_command_decision(self) -> None:
        """The command that worked on another project has ended."""
        self._command_decision = None

    @property
    def debug(self) -> bool:
        """Print events instead of spooling them; never turns on telemetry that is off."""
        return bool(self.enabled and self._settings is not None and self._settings.debug)

    @property
    def _sends(self) -> bool:
        """Whether this process spools events and starts senders (on, not debug, has a key,
        not capturing)."""
        return self._has_key and not self.debug and _capture is None

    @property
    def _has_key(self) -> bool:
        """Whether telemetry is on and someone gave a usable key (nothing is sent without)."""
        return bool(self.enabled and self._settings is not None and not self._settings.key_error)

    def notice(self) -> str | None:
        """The first-run notice to print to stderr, once per machine; None when not to show."""
        if not self._has_key or _capture is not None:
            return None
        try:
            from ._notice import first_run_notice

            return first_run_notice(self.enabled, self._paths)
        except Exception:
            return None

    def command(
        self, name: str, args: Iterable[object] = (), *, started_at: float | None = None
    ) -> CommandRecorder:
        """A context manager recording one `cli_command` when the block ends.

        `name` comes from the CLI's own command table, never from raw argv; `args` (the argv
        after it) are sanitized when the block ends. `duration_ms` is measured from
        `started_at`, a `time.perf_counter()` reading the host took earlier (at the import of
        its CLI module, say), else from the start of the block.
        """
        return CommandRecorder(self, name, args, started_at)

    @_never_raises
    def request(
        self,
        method: str,
        path: str,
        status_code: int,
        duration_ms: float,
        *,
        route_words: Iterable[str] | None = None,
    ) -> None:
        """Record one API request from its raw path (hosts without a route table; the Flask
        integration records route templates instead).

        A segment of `path` is kept only when it is one of `route_words` (the fixed words of
        the host's routes) or of Visivo's API; any other becomes a placeholder, so a project
        or user name in the path never leaves the machine.
        """
        if self.enabled:
            endpoint = sanitize_endpoint(path, known_segments=route_words)
            self._record_route(method, endpoint, status_code, duration_ms)

    @_never_raises
    def _record_command(
        self,
        name: str,
        args: Iterable[object],
        duration_ms: float,
        error_type: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Record one finished CLI command; `args` are sanitized here."""
        if not self.enabled or self._opted_out_meanwhile():
            return
        props = events.cli_command_properties(
            name, sanitize_args(args), duration_ms, error_type, dict(metrics or {})
        )
        for key in sorted(set(metrics or {}) - set(props), key=str)[:10]:
            owner = events.METRIC_COMMANDS.get(key)
            why = "" if owner in (None, props["command"]) else f": {owner} only"
            self._explain(f"metric {events.safe_name(key)} dropped{why}")
        self._record("cli_command", props)

    @_never_raises
    def _record_route(self, method: str, route: str, status_code: int, duration_ms: float) -> None:
        """Record one API request whose endpoint is the app's route template (trusted, though
        the schema still checks it); sendable at once."""
        if self.enabled:
            now = time.time()
            self._count_requests([(method, route, status_code, now, 1, duration_ms, now)], now)

    @_never_raises
    def _count_requests(
        self, counts: list[RequestCount], sendable_at: float | None, window_s: float = WINDOW_S
    ) -> None:
        """Add request counts to their windows in the spool, one transaction for all.

        Each is `(method, endpoint, status_code, window_start, count, duration_ms_total,
        first_at)`; a window becomes sendable `WINDOW_GRACE_S` after it ends, or at
        `sendable_at` when given (a single request, or a server that is shutting down).
        """
        if not self.enabled or not counts:
            return
        self._adopt_fork()
        windows = []
        for method, endpoint, status, start, count, total_ms, first_at in counts:
            props = events.api_request_properties(method, endpoint, status, total_ms / count, count)
            try:
                event = events.build("api_request", self._version, props)
            except events.NotRecorded as refused:
                self._explain(f"api_request not recorded: {refused}")
                continue
            key = " ".join(
                (events.session_id(), f"{start:.6f}", props["method"], str(status), endpoint)
            )
            if _capture is not None:
                if self._has_key:
                    _capture.add_window(key, event, count, total_ms)
                continue
            if self.debug:
                self._write_stderr(events.dumps(event.wire()))
                continue
            closes = start + window_s + WINDOW_GRACE_S if sendable_at is None else sendable_at
            created = events.iso_utc(first_at)
            windows.append(
                (key, event.uuid, created, event.properties_json, count, total_ms, closes)
            )
        if windows and self._has_key and not self.debug:
            with _SPOOL_LOCK:
                conn = self._connection()
                spool.add_request_counts(conn, windows)
                self._remember_destination(conn)
            if self._long_running:
                self._since_spawn += len(windows)
                self._start_sender_when_due()

    @_never_raises
    def _close_request_windows(self) -> None:
        """A server shutting down: its windows will get no more counts, so they may go now."""
        if self._sends and self._conn is not None:
            with _SPOOL_LOCK:
                spool.close_windows(self._connection(), events.session_id(), time.time())

    def _serve(self) -> None:
        """For our server integrations: this process is long-running from now on."""
        self._long_running = True

    def _explain(self, why: str) -> None:
        """In debug mode, say on stderr why something was not recorded; otherwise nothing."""
        if self.debug:
            self._write_stderr(f"visivo-telemetry: {why}")

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
        try:
            event = events.build(name, self._version, props)
        except events.NotRecorded as refused:
            self._explain(f"{name} not recorded: {refused}")
            return
        if _capture is not None:
            if self._has_key:
                _capture.add(event)
            return
        if self.debug:
            self._write_stderr(events.dumps(event.wire()))
            return
        if not self._has_key:
            return
        with _SPOOL_LOCK:
            conn = self._connection()
            if conn is not None:
                spool.append(conn, event)
                self._remember_destination(conn)

    def _remember_destination(self, conn: Any) -> None:
        if not self._destination_saved:
            spool.remember_destination(conn, self._api_key, self._host)
            self._destination_saved = True

    @staticmethod
    def _write_stderr(line: str) -> None:
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            pass

    def _connection(self) -> Any:
        """This process's spool connection (`_adopt_fork` parks a parent's after a fork)."""
        if self._conn is not None:
            return self._conn
        if self._paths is None:
            return None
        self._conn = spool.connect(self._paths.db)
        if not self._close_at_exit_registered:
            atexit.register(self._close_at_exit)
            self._close_at_exit_registered = True
        return self._conn

    @_never_raises
    def _close_at_exit(self) -> None:
        """Close the spool connection as the host exits, so Python 3.13+ never prints a
        `ResourceWarning` about it on the host's stderr; never waits long for a busy thread."""
        self._adopt_fork()
        if not _SPOOL_LOCK.acquire(timeout=1.0):
            return
        try:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
        finally:
            _SPOOL_LOCK.release()

    @_never_raises
    def _finish(self) -> None:
        """End of a CLI command: start the sender if events wait (at most once per process)."""
        self._adopt_fork()
        if not self._spawned and self._sends:
            self._start_sender_if_needed(respect_backoff=True)

    @_never_raises
    def _start_sender_when_due(self, force: bool = False) -> None:
        """For long-running hosts: start a sender when a batch is ready or the interval passed."""
        if not self._sends:
            return
        due = self._since_spawn >= SERVER_BATCH_READY or (
            self._since_spawn and time.monotonic() - self._last_spawn >= SERVER_SPAWN_INTERVAL_S
        )
        if force or due:
            self._adopt_fork()
            self._children = reap(self._children)
            self._spawned = False
            self._start_sender_if_needed(respect_backoff=False)

    def _start_sender_if_needed(self, respect_backoff: bool) -> None:
        if self._paths is None:
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
        if sender_alive(self._paths.lock):
            return
        with _SPOOL_LOCK:
            spool.stamp(conn, spool.SENDER_SPAWNED_AT, time.time())
        pid = spawn_sender()
        if pid is None:
            with _SPOOL_LOCK:
                spool.stamp(conn, spool.SENDER_SPAWNED_AT, None)
        self._spawned = True
        self._last_spawn = time.monotonic()
        self._since_spawn = 0
        if pid is not None:
            self._children.append(pid)

    @_never_raises
    def close(self) -> None:
        """Close the spool connection (long-running hosts at shutdown)."""
        self._adopt_fork()
        with _SPOOL_LOCK:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
