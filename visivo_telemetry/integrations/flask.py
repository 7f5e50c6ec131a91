"""Count the requests to a Flask app as `api_request` events: `instrument(app, telemetry)`.

The request thread only reads a clock and puts a tuple on a queue. A writer thread turns it into
an endpoint (route template, or the sanitized path of an unmatched request) and counts it in
memory under (endpoint, method, status, 60 s window); every second it adds the counts to the
spool (`spool.add_request_counts`, one transaction), so a crash loses at most the last second.
Each window is one event with `request_count` and the mean `duration_ms`, sent once the window
has ended. At interpreter exit, and on a SIGTERM that would otherwise kill the process outright,
the queue and the counts are written and the process's windows made sendable before it ends.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request

from .. import _client as client
from .. import _signals as signals
from .._client import WINDOW_S, Telemetry
from .._sanitize import sanitize_endpoint
from .._schema import is_clean_segment

QUEUE_LIMIT = 10_000
"""Requests waiting for the writer; beyond this (spool stuck) new ones are dropped, not held."""
DRAIN_TIMEOUT_S = 5.0
"""At shutdown, wait at most this long for the writer to spool what is queued."""
FLUSH_S = 1.0
"""How often the writer adds its counts to the spool: what a crash of the server may lose."""
_RULE_KEY = "visivo_telemetry.rule"
_ENDPOINT_KEY = "visivo_telemetry.endpoint"
_STOP = None


def not_static(path: str, endpoint: str | None) -> bool:
    """The default choice of requests to record: all but Flask's static files."""
    return endpoint != "static"


def rule_template(rule: str) -> str:
    """`/api/projects/<int:project_id>/` → `/api/projects/{project_id}/`.

    A segment mixing text and variables (`report-<id>.pdf`) becomes one placeholder naming
    its variables (`{id}`, `{a-b}` for two), so every segment is a route word or a
    placeholder; a segment the sender's check would refuse (odd punctuation) is `{value}`.
    """
    return "/".join(_template_segment(segment) for segment in rule.split("/"))


def _template_segment(segment: str) -> str:
    names = [part.split(">", 1)[0].rsplit(":", 1)[-1].strip() for part in segment.split("<")[1:]]
    if not names:
        return segment if is_clean_segment(segment) else "{value}"
    if not all(name.isascii() and name.isidentifier() for name in names):
        return "{value}"
    return "{" + "-".join(names) + "}"


def static_segments(app: Flask) -> frozenset[str]:
    """The fixed words of the app's routes: the only words an unmatched path may keep."""
    words: set[str] = set()
    for rule in app.url_map.iter_rules():
        words.update(s for s in rule.rule.split("/") if s and "<" not in s and ">" not in s)
    return frozenset(words)


class FlaskTelemetry:
    """The writer thread and queue behind one instrumented app."""

    def __init__(
        self,
        app: Flask,
        telemetry: Telemetry,
        include: Callable[[str, str | None], bool] = not_static,
        window_s: float = WINDOW_S,
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.include = include
        self.window_s = window_s
        self._templates: dict[str, str] = {}
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self._known: frozenset[str] | None = None

    def submit(self, item: tuple[Any, ...]) -> None:
        """Called in the request thread: hand the request to the writer, never block."""
        if client._capture is not None:
            self._count_while_capturing(item)
            return
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            pass

    def _count_while_capturing(self, item: tuple[Any, ...]) -> None:
        """Under `testing.capture_events()`: count and flush at once, in the request thread,
        so the request is in the captured list when the response has been returned."""
        counts: dict[tuple[str, str, int, float], list[float]] = {}
        try:
            self._count(counts, *item)
        except Exception:
            return
        self._flush(counts)

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # After a fork (pre-forking servers) the parent's thread does not exist here.
            self._queue = queue.Queue(QUEUE_LIMIT)
            self._thread = threading.Thread(
                target=self._write, name="visivo-telemetry-writer", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def _write(self) -> None:
        counts: dict[tuple[str, str, int, float], list[float]] = {}
        next_flush = time.monotonic() + FLUSH_S
        while True:
            try:
                item = self._queue.get(timeout=max(next_flush - time.monotonic(), 0.0))
            except queue.Empty:
                item = ()
            if item is _STOP:
                self._flush(counts, closing=True)
                return
            if item:
                try:
                    self._count(counts, *item)
                except Exception:
                    pass
            if time.monotonic() >= next_flush:
                self._flush(counts)
                next_flush = time.monotonic() + FLUSH_S

    def _count(
        self,
        counts: dict[tuple[str, str, int, float], list[float]],
        rule: str | None,
        endpoint_name: str | None,
        path: str,
        method: str,
        status: int,
        duration_ms: float,
    ) -> None:
        """Count one request in its window (in memory until the next flush)."""
        if not self.include(path, endpoint_name):
            return
        now = time.time()
        key = (method, self._endpoint(rule, path), status, now - now % self.window_s)
        seen = counts.get(key)
        if seen is None:
            counts[key] = [1, duration_ms, now]
        else:
            seen[0] += 1
            seen[1] += duration_ms

    def _flush(
        self, counts: dict[tuple[str, str, int, float], list[float]], closing: bool = False
    ) -> None:
        """Add the counts to the spool; when closing, the windows may be sent at once."""
        batch = [(*key, int(count), total, first) for key, (count, total, first) in counts.items()]
        counts.clear()
        self.telemetry._count_requests(batch, None, self.window_s)
        if closing:
            self.telemetry._close_request_windows()
        else:
            self.telemetry._start_sender_when_due()

    def _endpoint(self, rule: str | None, path: str) -> str:
        if rule is None:
            return sanitize_endpoint(path, known_segments=self._known_segments())
        template = self._templates.get(rule)
        if template is None:
            template = self._templates[rule] = rule_template(rule)
        return template

    def _known_segments(self) -> frozenset[str]:
        # Flask refuses new routes once it has served a request, so computing once is exact.
        if self._known is None:
            self._known = static_segments(self.app)
        return self._known

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Spool everything queued, stop the writer, and start a sender for what waits."""
        with self._start_lock:
            thread, pending = self._thread, self._queue
            if thread is None or self._pid != os.getpid():
                return
            self._thread, self._pid = None, 0
        try:
            pending.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)
        self.telemetry._start_sender_when_due(force=True)


def _wsgi_middleware(app: Flask, writer: FlaskTelemetry) -> None:
    inner = app.wsgi_app

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        status = [500]

        def recording_start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
            try:
                status[0] = int(line[:3])
            except ValueError:
                pass
            return start_response(line, headers, exc_info)

        try:
            return inner(environ, recording_start_response)
        finally:
            writer.submit(
                (
                    environ.get(_RULE_KEY),
                    environ.get(_ENDPOINT_KEY),
                    environ.get("PATH_INFO", "/"),
                    environ.get("REQUEST_METHOD", "OTHER"),
                    status[0],
                    (time.perf_counter() - started) * 1000.0,
                )
            )

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]


def _rule_for_another_method() -> Any:
    """The rule a 405 request's path matched under one of its allowed methods."""
    methods = getattr(request.routing_exception, "valid_methods", None)
    if not methods:
        return None
    try:
        adapter = current_app.create_url_adapter(request)
        return adapter.match(method=sorted(methods)[0], return_rule=True)[0]
    except Exception:
        return None


def _remember_rule(_error: BaseException | None = None) -> None:
    rule = request.url_rule or _rule_for_another_method()
    if rule is not None:
        request.environ[_RULE_KEY] = rule.rule
        request.environ[_ENDPOINT_KEY] = rule.endpoint


def _drain_on_sigterm(writer: FlaskTelemetry) -> None:
    """Spool the queue before a default SIGTERM ends the process; the exit stays the same
    (`signals` installs the one handler, shared with the click integration's runs)."""

    def on_sigterm(_signum: int, fatal: bool) -> None:
        if fatal:
            writer.drain()

    signals.register(on_sigterm, signals.TERMINATE)


def instrument(
    app: Flask,
    telemetry: Telemetry,
    *,
    include: Callable[[str, str | None], bool] = not_static,
    window_s: float = WINDOW_S,
) -> FlaskTelemetry:
    """Count the requests to `app` as `api_request` events, off the request thread.

    `include(path, endpoint)` chooses which requests are recorded (`endpoint` is the Flask
    endpoint name of the matched route, None when none matched); it runs in the writer thread.
    By default every request but Flask's static files is. Identical requests within `window_s`
    (aligned to the clock, default 60 s) are one event with their `request_count`.
    """
    telemetry._serve()
    writer = FlaskTelemetry(app, telemetry, include, window_s)
    if telemetry.enabled:
        app.teardown_request(_remember_rule)
        _wsgi_middleware(app, writer)
        atexit.register(writer.drain)
        _drain_on_sigterm(writer)
    return writer
