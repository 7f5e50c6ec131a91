"""For a host's own test suite: the events its code records, as a list, with nothing written.

    from visivo_telemetry.testing import capture_events

    def test_run_records_its_job_count():
        with capture_events() as captured:
            CliRunner().invoke(visivo, ["run"])
        [event] = captured
        assert event["properties"]["job_count"] == 12

Inside the block every event any `Telemetry` of the process records (one created before the
block too) is built, sanitized and validated exactly as in production, checked again as the
sender checks a spooled row, and appended as the batch item that would be sent: the same dict
debug mode prints (`event`, `uuid`, `timestamp`, `distinct_id`, `properties`). Nothing is written
under `HOME` (no spool, no first-run notice, no purge), no process is started, nothing is printed
(debug mode's explanations of a dropped metric aside).

The developer's own settings do not count: a machine that opted out (`DO_NOT_TRACK`,
`VISIVO_TELEMETRY_DISABLED`, `~/.visivo/config.yml`) captures the same events as any other, and
the user's key, host and debug overrides are ignored. What the host itself decides still does:
a project whose `project.visivo.yml` opts out, or an application that gives no usable PostHog
key, captures nothing, as production would record nothing. `capture_events(opted_out=True)`
captures as if the user had opted out: nothing.

The Flask integration's requests are counted in the request thread while capturing, so each
response's request is in the list when the test client returns: one item per endpoint, method,
status and window, whose `request_count` and mean `duration_ms` grow as identical requests come.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _events as events
from . import _pipeline
from ._destination import application_settings
from ._precedence import Decision, OptOut, project_decision
from ._sinks import NullSink, Window

__all__ = ["capture_events"]


class _CaptureSink:
    """Where built events go while a capture runs: the batch items the sender would send."""

    synchronous = True
    """Each request is counted as it happens, so it is in the list when the response returns."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._windows: dict[str, tuple[dict[str, Any], Window, int, float]] = {}
        self._lock = threading.Lock()

    def add(self, event: events.Event) -> None:
        item = _as_sent(event, event.created_at, event.properties_json, "events")
        if item is not None:
            with self._lock:
                self.events.append(item)

    def add_windows(self, windows: list[Window]) -> None:
        """Counts added to their window's item, as the spool adds them to its row."""
        with self._lock:
            for window in windows:
                item, first, seen, seen_ms = self._windows.get(window.key, ({}, window, 0, 0.0))
                seen, seen_ms = seen + window.count, seen_ms + window.duration_ms_total
                properties = events.window_properties(first.event.properties_json, seen, seen_ms)
                sent = _as_sent(first.event, first.created_at, properties, "request_windows")
                if sent is None:
                    continue
                if not item:
                    self.events.append(item)
                item.clear()
                item.update(sent)
                self._windows[window.key] = (item, first, seen, seen_ms)

    def close_windows(self) -> None:
        pass

    def close(self) -> None:
        pass


def _as_sent(
    event: events.Event, created_at: str, properties: str, table: str
) -> dict[str, Any] | None:
    """The batch item the sender would send for this row; None where it would refuse it."""
    row = events.Row(0, event.uuid, event.event, created_at, properties, table)
    wire = events.wire_json(row)
    return None if wire is None else json.loads(wire)


class _Capture:
    """The environment `capture_events()` installs: a pipeline per `Telemetry` that decides
    without the developer's own settings and hands its events to one capture sink."""

    def __init__(self, opted_out: bool) -> None:
        self.sink = _CaptureSink()
        self._opted_out = opted_out
        self._pipelines: dict[int, _pipeline.Pipeline] = {}
        """By the identity of each `Telemetry`'s `App` (its pipeline keeps the `App` alive)."""

    def pipeline_for(self, app: _pipeline.App) -> _pipeline.Pipeline:
        pipeline = self._pipelines.get(id(app))
        if pipeline is None:
            opt_out = OptOut(app.project_dir, self._decide)
            settings = application_settings(app.api_key, app.host)
            sink = NullSink() if settings.key_error else self.sink
            pipeline = self._pipelines[id(app)] = _pipeline.Pipeline(app, opt_out, settings, sink)
        return pipeline

    def _decide(self, project_dir: str | None) -> Decision:
        if self._opted_out:
            return Decision(False, "capture")
        return project_decision(project_dir) or Decision(True, "default")


@contextmanager
def capture_events(*, opted_out: bool = False) -> Iterator[list[dict[str, Any]]]:
    """Capture the events recorded inside the block instead of spooling or sending them;
    `opted_out=True` records as a user who opted out would: nothing."""
    capture = _Capture(opted_out)
    _pipeline.install(capture)
    try:
        yield capture.sink.events
    finally:
        _pipeline.uninstall(capture)
