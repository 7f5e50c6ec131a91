"""Count the requests to any WSGI application as `api_request` events.

    from visivo_telemetry.integrations.wsgi import instrument

    application = instrument(application, telemetry, route_words={"api", "projects"})

For servers with no route table this library knows (Django, Pyramid, Bottle, a bare WSGI
function): a path keeps a segment only when it is one of `route_words` (the fixed words of the
app's routes) or of Visivo's API, every other segment becomes a placeholder, so
`/api/projects/sales-dashboard/` is recorded as `/api/projects/{value}/`. Written against the
integration API alone (`visivo_telemetry.integrations`); the Flask integration uses its
middleware with Flask's own route templates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import Telemetry
from . import WINDOW_S, RequestCounter, sanitize_endpoint

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CountingMiddleware:
    """A WSGI middleware handing each finished request to a `RequestCounter`: its method, its
    status, its duration, and `where_of(environ)` for the counter's `endpoint_of`."""

    def __init__(
        self,
        app: WsgiApp,
        counter: RequestCounter,
        where_of: Callable[[dict[str, Any]], object],
    ) -> None:
        self.app = app
        self.counter = counter
        self.where_of = where_of

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        status = [500]

        def recording_start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
            try:
                status[0] = int(line[:3])
            except ValueError:
                pass
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            self.counter.submit(
                environ.get("REQUEST_METHOD", "OTHER"),
                status[0],
                (time.perf_counter() - started) * 1000.0,
                self.where_of(environ),
            )


def _path(environ: dict[str, Any]) -> str:
    return environ.get("PATH_INFO", "/")


def instrument(
    app: WsgiApp,
    telemetry: Telemetry,
    *,
    route_words: Iterable[str] = (),
    include: Callable[[str], bool] | None = None,
    window_s: float = WINDOW_S,
) -> CountingMiddleware:
    """`app` wrapped so each request it answers is counted; serve what this returns.

    `include(path)` chooses which requests count (default: all). Identical requests within
    `window_s` are one event with their `request_count`; `.counter.drain()` spools what waits.
    """
    if not callable(app):
        raise TypeError(f"instrument() needs a WSGI application, got {type(app).__name__}")
    words = frozenset(route_words)

    def endpoint_of(path: str) -> str | None:
        if include is not None and not include(path):
            return None
        return sanitize_endpoint(path, known_segments=words)

    counter = telemetry.request_counter(endpoint_of, window_s=window_s)
    return CountingMiddleware(app, counter, _path)
