"""Count the requests to a Flask app as `api_request` events: `instrument(app, telemetry)`.

The request thread only reads a clock and hands the request to the `RequestCounter` (the
integration API, `visivo_telemetry.integrations`), which counts it off the request thread under
(endpoint, method, status, 60 s window) and adds the counts to the spool every second. What is
Flask's here: the endpoint is the matched rule's template (`/api/projects/{project_id}/`), or,
for a request no rule matched, the path with only the app's own route words kept; and Flask's
static files are not counted by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request

from .. import Telemetry
from . import WINDOW_S, RequestCounter, is_clean_segment, sanitize_endpoint
from .wsgi import CountingMiddleware

_RULE_KEY = "visivo_telemetry.rule"
_ENDPOINT_KEY = "visivo_telemetry.endpoint"


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


class _Endpoints:
    """Turns what the middleware saw (matched rule, its endpoint name, path) into an endpoint,
    on the counter's writer thread; None for a request `include` leaves out."""

    def __init__(self, app: Flask, include: Callable[[str, str | None], bool]) -> None:
        self.app = app
        self.include = include
        self._templates: dict[str, str] = {}
        self._known: frozenset[str] | None = None

    def __call__(self, where: tuple[str | None, str | None, str]) -> str | None:
        rule, endpoint_name, path = where
        if not self.include(path, endpoint_name):
            return None
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


def instrument(
    app: Flask,
    telemetry: Telemetry,
    *,
    include: Callable[[str, str | None], bool] = not_static,
    window_s: float = WINDOW_S,
) -> RequestCounter:
    """Count the requests to `app` as `api_request` events, off the request thread.

    `include(path, endpoint)` chooses which requests are recorded (`endpoint` is the Flask
    endpoint name of the matched route, None when none matched); it runs in the writer thread.
    By default every request but Flask's static files is. Identical requests within `window_s`
    (aligned to the clock, default 60 s) are one event with their `request_count`. Returns the
    counter (`drain()` it to spool what waits, e.g. before a test reads the spool).
    """
    if not isinstance(app, Flask):
        raise TypeError(f"instrument() needs a flask.Flask app, got {type(app).__name__}")
    counter = telemetry.request_counter(_Endpoints(app, include), window_s=window_s)
    app.teardown_request(_remember_rule)
    app.wsgi_app = CountingMiddleware(app.wsgi_app, counter, _where)  # type: ignore[method-assign]
    return counter


def _where(environ: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """What the writer thread needs to name a request: its rule, endpoint name and path."""
    return environ.get(_RULE_KEY), environ.get(_ENDPOINT_KEY), environ.get("PATH_INFO", "/")
