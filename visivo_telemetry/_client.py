"""`Telemetry`: what a host holds, and the one boundary between telemetry and the host.

Every entry point is guarded: nothing from telemetry ever raises into the host or prints (debug
mode, where it says why an event was not recorded, aside). The work is the pipeline's
(`_pipeline`): the opt-out, the sink and the launcher, chosen once when `Telemetry` is made;
while a test's `capture_events()` runs, the capture's pipeline stands in for it.

Public, for hosts: `Telemetry(...)`, `command()`, `request()`, `notice()`, `close()`, the
`enabled`/`decided_by`/`debug` properties and `set_metric()`. For integrations (documented in
`visivo_telemetry.integrations`): `request_counter()` and the `Command`'s `works_on()`.
"""

from __future__ import annotations

import contextvars
import os
import time

from . import _pipeline
from ._sanitize import sanitize_endpoint
from ._tuning import WINDOW_S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType
    from typing import Any

    from ._pipeline import Pipeline
    from ._requests import RequestCounter

_current: contextvars.ContextVar[Command | None] = contextvars.ContextVar(
    "visivo_telemetry_command", default=None
)


def set_metric(name: str, value: Any) -> None:
    """Attach a metric (`job_count`, `object_counts`) to the command being recorded, if any."""
    command = _current.get()
    if command is not None:
        command.metrics[name] = value


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
        The opt-out is decided here, once (and an opted-out spool is purged here).
        """
        self._production: Pipeline | None = None
        self._long_running = bool(long_running)
        try:
            folder = None if project_dir is None else os.path.abspath(os.fspath(project_dir))
            self._app = _pipeline.App(str(version), api_key, host, folder)
        except Exception:
            self._app = _pipeline.App("unknown", None, None, None)
            self._production = _pipeline.off(self._app, "error")
        self._pipeline()

    def _pipeline(self) -> Pipeline:
        """Where this process's events go now: a test's capture, else production."""
        environment = _pipeline.installed()
        try:
            if environment is not None:
                return environment.pipeline_for(self._app)
            if self._production is None:
                self._production = _pipeline.production(self._app, self._long_running)
            return self._production
        except Exception:
            broken = _pipeline.off(self._app, "error")
            if environment is None:
                self._production = broken
            return broken

    @property
    def enabled(self) -> bool:
        """Whether this process records anything now (off, too, while a command works on a
        project that opted out)."""
        return self._pipeline().enabled

    @property
    def decided_by(self) -> str:
        """Which source decided: `env:NAME`, `project`, `global` or `default`."""
        return self._pipeline().opt_out.decided_by

    @property
    def debug(self) -> bool:
        """Print events instead of spooling them; never turns on telemetry that is off."""
        return self._pipeline().debug

    def notice(self) -> str | None:
        """The first-run notice to print to stderr, once per machine; None when not to show."""
        try:
            return self._pipeline().notice()
        except Exception:
            return None

    def command(
        self, name: str, args: Iterable[object] = (), *, started_at: float | None = None
    ) -> Command:
        """A context manager recording one `cli_command` when the block ends.

        `name` comes from the CLI's own command table, never from raw argv; `args` (the argv
        after it) are sanitized when the block ends. `duration_ms` is measured from
        `started_at`, a `time.perf_counter()` reading the host took earlier (at the import of
        its CLI module, say), else from the start of the block.
        """
        return Command(self, name, args, started_at)

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
        try:
            pipeline = self._pipeline()
            if pipeline.enabled:
                endpoint = sanitize_endpoint(path, known_segments=route_words)
                now = time.time()
                count = (method, endpoint, status_code, now, 1, duration_ms, now)
                pipeline.count_requests([count], now, WINDOW_S)
        except Exception as error:
            self._explain("request", error)

    def request_counter(
        self, endpoint_of: Callable[[Any], str | None], *, window_s: float = WINDOW_S
    ) -> RequestCounter:
        """For server integrations: a counter of this process's requests, off the request
        thread; this process is a server from now on (senders start as batches fill up).

        `endpoint_of(where)` turns what the integration passes to `submit` into an endpoint
        (a route template, or a path through `sanitize_endpoint`), or None for a request that
        is not recorded; it runs on the counter's writer thread. Identical requests within
        `window_s` (aligned to the clock) are one event with their `request_count`.
        """
        self._long_running = True
        if self._production is not None:  # only production starts senders
            self._production.serve()
        from ._requests import RequestCounter

        return RequestCounter(self._pipeline, endpoint_of, window_s)

    def close(self) -> None:
        """A server shutting down: its request windows may go now, a sender starts for what
        waits, and the spool connection is closed. A CLI needs none of it (its command's end
        starts the sender)."""
        try:
            self._pipeline().close()
        except Exception as error:
            self._explain("close", error)

    def _explain(self, what: str, error: Exception) -> None:
        try:
            self._pipeline().explain(f"{what} failed: {type(error).__name__}")
        except Exception:
            pass


class Command:
    """The `with telemetry.command(...)` block: times it and records one `cli_command`.

    An integration that learns more while the command runs may set `name` and `args` (they
    are read when the block ends) and call `works_on()`; the command sets `metrics`.
    """

    def __init__(
        self, telemetry: Telemetry, name: str, args: Iterable[object], started_at: object
    ) -> None:
        self._telemetry = telemetry
        self.name = name
        self.args = args
        self.metrics: dict[str, Any] = {}
        self._started_at = _perf_counter_reading(started_at)
        self._started = 0.0
        self._token: contextvars.Token[Command | None] | None = None

    def works_on(self, project_dir: str | os.PathLike[str]) -> None:
        """The command works on `project_dir` (its `--working-dir`), not the folder decided at
        start: that project's opt-out wins until the block ends, and the spool is purged as
        for any "off". It can only turn telemetry off."""
        try:
            self._telemetry._pipeline().opt_out.enter_project(project_dir)
        except Exception as error:
            self._telemetry._explain("works_on", error)

    def __enter__(self) -> Command:
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
        pipeline = self._telemetry._pipeline()
        try:
            pipeline.record_command(self.name, self.args, duration_ms, error_type, self.metrics)
        except Exception as error:
            self._telemetry._explain("record_command", error)
        try:
            pipeline.command_ended()
        except Exception as error:
            self._telemetry._explain("finish", error)
        finally:
            pipeline.opt_out.leave_project()
        return False


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
