"""For a host's own test suite: the events its code records, as a list, with nothing written.

    from visivo_telemetry.testing import capture_events

    def test_run_records_its_job_count(tmp_path, monkeypatch):
        monkeypatch.setenv("HOME", str(tmp_path))           # no opt-out of the developer's
        monkeypatch.delenv("VISIVO_TELEMETRY_DISABLED", raising=False)
        monkeypatch.delenv("DO_NOT_TRACK", raising=False)
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

What production would not record is not captured either: with telemetry off (the environment,
the project's `project.visivo.yml`, the user's `~/.visivo/config.yml`) or without a usable
PostHog key the list stays empty. A host's tests construct `Telemetry` with its real key, as
production does, and run with a clean `HOME` and environment.

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

from . import _client as client
from . import _events as events

__all__ = ["capture_events"]


class _Capture:
    """Where `Telemetry` hands its built events while a capture runs."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._windows: dict[str, tuple[dict[str, Any], events.Event, int, float]] = {}
        self._lock = threading.Lock()

    def add(self, event: events.Event) -> None:
        item = _as_sent(event, event.properties_json, "events")
        if item is not None:
            with self._lock:
                self.events.append(item)

    def add_window(self, key: str, event: events.Event, count: int, total_ms: float) -> None:
        """Counts for a request window: added to its item, as the spool adds them to its row."""
        with self._lock:
            item, first, seen, seen_ms = self._windows.get(key, ({}, event, 0, 0.0))
            seen, seen_ms = seen + count, seen_ms + total_ms
            properties = events.window_properties(first.properties_json, seen, seen_ms)
            sent = _as_sent(first, properties, "request_windows")
            if sent is None:
                return
            if not item:
                self.events.append(item)
            item.clear()
            item.update(sent)
            self._windows[key] = (item, first, seen, seen_ms)


def _as_sent(event: events.Event, properties: str, table: str) -> dict[str, Any] | None:
    """The batch item the sender would send for this row; None where it would refuse it."""
    row = events.Row(0, event.uuid, event.event, event.created_at, properties, table)
    wire = events.wire_json(row)
    return None if wire is None else json.loads(wire)


@contextmanager
def capture_events() -> Iterator[list[dict[str, Any]]]:
    """Capture the events recorded inside the block instead of spooling or sending them."""
    capture = _Capture()
    previous, client._capture = client._capture, capture
    try:
        yield capture.events
    finally:
        client._capture = previous
