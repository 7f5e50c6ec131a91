"""The WSGI integration, written against the integration API alone: any WSGI server's requests
are counted, paths keep only route words, and a real server stopped by SIGTERM loses none."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time

import pytest
from helpers import PYTHON, TEST_API_KEY, spool_rows
from test_flask_integration import free_port, get

from visivo_telemetry import Telemetry
from visivo_telemetry.integrations.wsgi import instrument
from visivo_telemetry.testing import capture_events


def hello(environ: dict, start_response) -> list[bytes]:
    """A bare WSGI app: 200 under /api/, 404 elsewhere, 500 for /api/boom."""
    path = environ["PATH_INFO"]
    if path == "/api/boom":
        raise RuntimeError("boom")
    status = "200 OK" if path.startswith("/api/") else "404 Not Found"
    start_response(status, [("Content-Type", "text/plain")])
    return [b"hello"]


def call(app, path: str, method: str = "GET") -> str:
    seen = []
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method}
    try:
        body = b"".join(app(environ, lambda status, headers, exc_info=None: seen.append(status)))
    except RuntimeError:
        return "500"
    assert body == b"hello"
    return seen[0][:3]


def test_requests_are_counted_with_only_route_words_kept(home):
    app = instrument(
        hello, Telemetry("1.4.0", api_key=TEST_API_KEY, project_dir=None), route_words={"reports"}
    )
    with capture_events() as captured:
        statuses = [call(app, "/api/reports/ada-lovelace/") for _ in range(3)]
        statuses += [
            call(app, "/api/reports/42", "POST"),
            call(app, "/home/ada"),
            call(app, "/api/boom"),
        ]

    assert statuses == ["200", "200", "200", "200", "404", "500"]
    recorded = [
        (e["properties"]["method"], e["properties"]["endpoint"], e["properties"]["status_code"])
        + (e["properties"]["request_count"],)
        for e in captured
    ]
    assert recorded == [
        ("GET", "/api/reports/{value}/", 200, 3),
        ("POST", "/api/reports/{id}", 200, 1),
        ("GET", "/{value}/{value}", 404, 1),
        ("GET", "/api/{value}", 500, 1),
    ]
    assert "ada" not in json.dumps(captured)


def test_include_chooses_which_requests_count_and_the_spool_gets_them_on_drain(home):
    app = instrument(
        hello,
        Telemetry("1.4.0", api_key=TEST_API_KEY, project_dir=None),
        include=lambda path: path.startswith("/api/"),
    )
    assert call(app, "/api/projects/1/") == "200"
    assert call(app, "/favicon.ico") == "404"
    app.counter.drain()
    assert [row["properties"]["endpoint"] for row in spool_rows(home)] == ["/api/projects/{id}/"]


def test_a_wrong_app_is_a_type_error_that_says_what_to_pass(home):
    with pytest.raises(TypeError, match="needs a WSGI application"):
        instrument("app", Telemetry("1.4.0", api_key=TEST_API_KEY))  # type: ignore[arg-type]


SERVER = textwrap.dedent(
    f"""
    import sys
    from wsgiref.simple_server import WSGIRequestHandler, make_server
    from visivo_telemetry import Telemetry
    from visivo_telemetry.integrations.wsgi import instrument

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    telemetry = Telemetry("1.4.0", api_key={TEST_API_KEY!r}, long_running=True)
    counted = instrument(app, telemetry)
    server = make_server("127.0.0.1", int(sys.argv[1]), counted, handler_class=Quiet)
    server.serve_forever()
    """
)


def test_a_real_wsgi_server_stopped_by_sigterm_delivers_every_request(
    env, home, project, collector
):
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-c", SERVER, str(port)],
        env=env,
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    answered = 0
    while not answered and time.monotonic() < deadline:
        try:
            answered = get(url + "/api/health") == 200
        except OSError:
            time.sleep(0.1)
    assert answered, "the WSGI server did not start"
    statuses = [get(f"{url}/api/projects/{n}/") for n in range(25)]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)

    assert statuses == [200] * 25
    assert (proc.returncode, out, err) == (-signal.SIGTERM, "", "")
    received = collector.wait_for_events(2, timeout=30)
    counts = {e["properties"]["endpoint"]: e["properties"]["request_count"] for e in received}
    # No route table: `health` is neither Visivo's route word nor one the app declared.
    assert counts == {"/api/projects/{id}/": 25, "/api/{value}": 1}
