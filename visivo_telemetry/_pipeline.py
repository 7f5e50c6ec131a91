"""`Pipeline`: what one `Telemetry` records with — its opt-out, its sink, its launcher.

Data flows one way: the front (`Telemetry`) hands a command or request counts to its pipeline,
which sanitizes and builds the event against the allowlist (`_events`, `_schema`), gives it to
the sink chosen once, and tells the launcher that rows wait. `production()` makes the pipeline
of a real process; a test's `capture_events()` installs an `Environment` of its own, which
makes pipelines that ignore the developer's own settings and capture instead of spooling.
"""

from __future__ import annotations

from . import _events as events
from . import _tuning as tuning
from ._destination import settings as user_settings
from ._files import paths, spool_refusal
from ._launcher import Launcher
from ._precedence import Decision, OptOut, decide
from ._record import Record
from ._sanitize import sanitize_args
from ._sinks import DebugSink, NullSink, SpoolSink, Window, purge_spool, write_stderr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Protocol

    from ._destination import Settings
    from ._files import Paths

    RequestCount = tuple[str, str, int, float, int, float, float]
    """`(method, endpoint, status_code, window_start, count, duration_ms_total, first_at)`."""

    class Sink(Protocol):
        synchronous: bool

        def add(self, event: events.Event) -> None: ...
        def add_windows(self, windows: list[Window]) -> None: ...
        def close_windows(self) -> None: ...
        def close(self) -> None: ...

    class Environment(Protocol):
        def pipeline_for(self, app: App) -> Pipeline: ...


class App(Record):
    """What the application told `Telemetry`: its version, PostHog key and host, and the
    project it works in (absolute, or None)."""

    _fields = ("version", "api_key", "host", "project_dir")


class Pipeline:
    """Sanitize, build, validate; then the sink; then the launcher. Every method may raise:
    the front (`Telemetry`) is the boundary that never lets it reach the host."""

    def __init__(
        self,
        app: App,
        opt_out: OptOut,
        settings: Settings | None = None,
        sink: Sink | None = None,
        launcher: Launcher | None = None,
        home: Paths | None = None,
    ) -> None:
        """`home` is where the first-run notice is remembered (None: never shown)."""
        self.app = app
        self.opt_out = opt_out
        self.settings = settings
        self.sink: Sink = NullSink() if sink is None else sink
        self.launcher = launcher
        self.home = home

    @property
    def enabled(self) -> bool:
        return self.opt_out.enabled

    @property
    def has_key(self) -> bool:
        """On, and someone gave a usable key and host (nothing is recorded without both: an
        event goes where the settings said when it was recorded, or nowhere)."""
        usable = self.settings is not None and not (
            self.settings.key_error or self.settings.host_error
        )
        return bool(self.enabled and usable)

    @property
    def debug(self) -> bool:
        return bool(self.enabled and self.settings is not None and self.settings.debug)

    def explain(self, why: str) -> None:
        """In debug mode, say on stderr why something was not recorded; otherwise nothing."""
        if self.debug:
            write_stderr(f"visivo-telemetry: {why}")

    def record_command(
        self,
        name: str,
        args: Iterable[object],
        duration_ms: float,
        error_type: str | None,
        metrics: dict[str, Any],
    ) -> None:
        """One finished CLI command, unless the command itself opted out meanwhile."""
        if not self.enabled or not self.opt_out.still_enabled():
            return
        props = events.cli_command_properties(
            name, sanitize_args(args), duration_ms, error_type, dict(metrics)
        )
        for key in sorted(set(metrics) - set(props), key=str)[:10]:
            owner = events.METRIC_COMMANDS.get(key)
            why = "" if owner in (None, props["command"]) else f": {owner} only"
            self.explain(f"metric {events.safe_name(key)} dropped{why}")
        try:
            event = events.build("cli_command", self.app.version, props)
        except events.NotRecorded as refused:
            self.explain(f"cli_command not recorded: {refused}")
            return
        self.sink.add(event)

    def count_requests(
        self, counts: list[RequestCount], sendable_at: float | None, window_s: float
    ) -> None:
        """Add request counts to their windows, in one go.

        A window becomes sendable `WINDOW_GRACE_S` after it ends, or at `sendable_at` when
        given (a single request, or a server that is shutting down).
        """
        if not self.enabled or not counts:
            return
        windows = []
        for method, endpoint, status, start, count, total_ms, first_at in counts:
            props = events.api_request_properties(method, endpoint, status, total_ms / count, count)
            try:
                event = events.build("api_request", self.app.version, props)
            except events.NotRecorded as refused:
                self.explain(f"api_request not recorded: {refused}")
                continue
            key = " ".join(
                (events.session_id(), f"{start:.6f}", props["method"], str(status), endpoint)
            )
            closes = (
                start + window_s + tuning.WINDOW_GRACE_S if sendable_at is None else sendable_at
            )
            windows.append(Window(key, event, events.iso_utc(first_at), count, total_ms, closes))
        if windows:
            self.sink.add_windows(windows)
            if self.launcher is not None:
                self.launcher.recorded(len(windows))

    def command_ended(self) -> None:
        if self.launcher is not None and self.enabled:
            self.launcher.command_ended()

    def when_due(self, force: bool = False) -> None:
        if self.launcher is not None and self.enabled:
            self.launcher.when_due(force)

    def close_windows(self) -> None:
        self.sink.close_windows()

    def close(self) -> None:
        """Shutdown: a server's windows go now and a sender starts; the sink lets go."""
        if self.launcher is not None and self.launcher.long_running and self.enabled:
            self.sink.close_windows()
            self.launcher.when_due(force=True)
        self.sink.close()

    def serve(self) -> None:
        """This process is a server from now on: senders start as batches fill up."""
        if self.launcher is not None:
            self.launcher.long_running = True

    def notice(self) -> str | None:
        """The notice, when due; then this process starts no sender: nothing leaves before
        the user could read it (and opt out)."""
        if not self.has_key or self.home is None:
            return None
        from ._notice import first_run_notice

        text = first_run_notice(self.enabled, self.home)
        if text is not None and self.launcher is not None:
            self.launcher.hold()
        return text


def production(app: App, long_running: bool) -> Pipeline:
    """A real process's pipeline: the user's opt-out and settings decide; events are spooled,
    printed (debug mode) or, without a usable key or a spool folder of the user's own
    (`spool_refusal`), dropped. Any "off" purges the spool."""
    home = paths()
    spool_sinks: list[SpoolSink] = []

    def purge() -> None:
        for sink in spool_sinks:
            sink.close()
        if home is not None:
            purge_spool(home)

    opt_out = OptOut(app.project_dir, decide, purge)
    if not opt_out.enabled or home is None:
        return Pipeline(app, opt_out)
    settings = user_settings(None, app.api_key, app.host)
    if settings.debug:
        return Pipeline(app, opt_out, settings, DebugSink(), home=home)
    if settings.key_error or settings.host_error:
        return Pipeline(app, opt_out, settings, home=home)
    if spool_refusal(home) is not None:
        return Pipeline(app, opt_out, settings)  # nothing recorded, no sender (`status` says why)
    sink = SpoolSink(home, app.api_key, app.host, (settings.api_key, settings.host))
    spool_sinks.append(sink)
    return Pipeline(app, opt_out, settings, sink, Launcher(sink, long_running), home)


def off(app: App, why: str) -> Pipeline:
    """A pipeline that records nothing (something went wrong deciding)."""
    return Pipeline(app, OptOut(None, lambda _project: Decision(False, why)))


_installed: list[Environment] = []


def install(environment: Environment) -> None:
    """Every `Telemetry` of the process records through `environment` until `uninstall`."""
    _installed.append(environment)


def uninstall(environment: Environment) -> None:
    _installed.remove(environment)


def installed() -> Environment | None:
    """The environment a test installed, or None: production."""
    return _installed[-1] if _installed else None
