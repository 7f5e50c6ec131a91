"""The Flask integration: one event per request, route templates, nothing lost at shutdown."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from flask import Flask, abort
from helpers import PYTHON, ROOT, flush, spool_path, spool_rows, wait_for_senders_to_exit

from visivo_telemetry import Telemetry
from visivo_telemetry.integrations.flask import instrument, rule_template

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_app() -> Flask:
    app = Flask("visivo_api")

    @app.get("/api/projects/<int:project_id>/")
    def project(project_id: int) -> dict:
        if project_id > 100:
            abort(404)
        return {"id": project_id}

    @app.post("/api/projects/<int:project_id>/runs/<uuid:run_id>")
    def start_run(project_id: int, run_id: object) -> tuple[dict, int]:
        return {}, 201

    @app.get("/api/boom")
    def boom() -> dict:
        raise RuntimeError("boom")

    return app


def assert_one_event_per_window(received: list[dict]) -> None:
    """At most one event per (endpoint, method, status) and 60 s window of one process."""
    windows = [
        (
            e["properties"]["session_id"],
            e["properties"]["endpoint"],
            e["properties"]["method"],
            e["properties"]["status_code"],
            e["timestamp"][:16],  # the minute: windows are aligned to whole minutes
        )
        for e in received
    ]
    assert len(windows) == len(set(windows))


def endpoints(props: list[dict]) -> list[tuple[str, str, int]]:
    return sorted((p["method"], p["endpoint"], p["status_code"]) for p in props)


def test_rule_templates_name_variables_not_values():
    assert rule_template("/api/projects/<int:project_id>/") == "/api/projects/{project_id}/"
    assert rule_template("/static/<path:filename>") == "/static/{filename}"
    assert rule_template("/r/report-<int:id>.pdf") == "/r/{id}"
    assert rule_template("/api/health") == "/api/health"


def test_test_client_requests_arrive_as_templated_endpoints(env, home, collector):
    app = make_app()
    recorder = instrument(
        app, Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=None, long_running=True)
    )
    client = app.test_client()

    assert client.get("/api/projects/42/").status_code == 200
    assert client.get("/api/projects/4242/").status_code == 404
    run_id = "3f1c6a52-8a9e-4e3b-9a63-2f4bb1c7d3e1"
    assert client.post(f"/api/projects/7/runs/{run_id}").status_code == 201
    assert client.get("/api/acme-corp/1234567?token=hunter2#frag").status_code == 404
    assert client.delete("/api/projects/42/").status_code == 405
    assert client.get("/api/boom").status_code == 500
    recorder.drain()

    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    props = [e["properties"] for e in collector.wait_for_events(6)]
    assert endpoints(props) == [
        ("DELETE", "/api/projects/{project_id}/", 405),
        ("GET", "/api/boom", 500),
        ("GET", "/api/projects/{project_id}/", 200),
        ("GET", "/api/projects/{project_id}/", 404),
        ("GET", "/api/{value}/{id}", 404),
        ("POST", "/api/projects/{project_id}/runs/{run_id}", 201),
    ]
    assert all(p["duration_ms"] >= 0 for p in props)
    wire = json.dumps(collector.events())
    for leaked in ("acme", "token", "hunter2", "frag", run_id):
        assert leaked not in wire


def test_a_request_does_not_wait_for_the_spool(home):
    app = make_app()
    recorder = instrument(
        app, Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=None, long_running=True)
    )
    client = app.test_client()
    client.get("/api/projects/1/")
    recorder.drain()
    assert len(spool_rows(home)) == 1

    blocker = sqlite3.connect(spool_path(home), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    started = time.perf_counter()
    for _ in range(20):
        assert client.get("/api/projects/2/").status_code == 200
    elapsed = time.perf_counter() - started
    time.sleep(0.3)
    blocker.execute("ROLLBACK")
    blocker.close()
    recorder.drain()

    # One request that waited on the lock would sit out the 1 s busy timeout by itself.
    assert elapsed < 0.9, f"20 requests took {elapsed:.3f}s while the spool was locked"
    assert sum(row["request_count"] for row in spool_rows(home)) == 21


def test_telemetry_off_starts_nothing_and_records_nothing(home, monkeypatch):
    """Off, the middleware only passes requests through: no writer thread, no signal handler,
    no file (it stays wired so that a test's `capture_events()` can turn it on)."""
    monkeypatch.setenv("VISIVO_TELEMETRY_DISABLED", "1")
    app = make_app()
    threads_before = {t.name for t in threading.enumerate()}
    handler_before = signal.getsignal(signal.SIGTERM)
    recorder = instrument(app, Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=None))
    for _ in range(3):
        assert app.test_client().get("/api/projects/1/").status_code == 200
    recorder.drain()
    assert {t.name for t in threading.enumerate()} == threads_before
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert not (home / ".visivo").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, method: str = "GET") -> int:
    try:
        with NO_PROXY.open(urllib.request.Request(url, method=method), timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def start_server(env: dict[str, str], cwd) -> tuple[subprocess.Popen, str, int]:
    """The example app as a real server; returns it, its URL and how many probes it answered."""
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "scripts" / "flask_app.py"), "--port", str(port)],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if get(url + "/api/health") == 200:
                return proc, url, 1
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("the example Flask app did not start")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_served_app_spools_every_request_before_it_stops(env, home, project, collector, stop):
    proc, url, probes = start_server(env, project)
    statuses = [get(url + "/api/projects/1/") for _ in range(30)]
    statuses += [get(url + "/api/projects/999/"), get(url + "/api/acme-plans/77")]
    statuses += [get(url + "/api/boom"), get(url + "/api/health", method="DELETE")]

    def hammer() -> None:
        for _ in range(20):
            get(url + "/api/health")

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Stall the writer on a locked spool so events are still queued when the signal lands
    # (once it exists: the writer adds its counts every second).
    deadline = time.monotonic() + 10
    while not spool_path(home).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    blocker = sqlite3.connect(spool_path(home), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    statuses += [get(url + "/api/projects/2/") for _ in range(10)]
    proc.send_signal(stop)
    time.sleep(0.3)
    blocker.execute("ROLLBACK")
    blocker.close()
    code = proc.wait(timeout=30)

    assert code == (-signal.SIGTERM if stop == signal.SIGTERM else 0), "exit status unchanged"
    assert statuses == [200] * 30 + [404, 404, 500, 405] + [200] * 10
    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    total = probes + len(statuses) + 60
    received = collector.events()
    props = [e["properties"] for e in received]
    assert sum(p["request_count"] for p in props) == total, "every request counted, once"
    assert collector.stats()["duplicates"] == 0
    assert_one_event_per_window(received)
    seen = {(p["method"], p["endpoint"], p["status_code"]) for p in props}
    assert seen == {
        ("GET", "/api/health", 200),
        ("GET", "/api/projects/{project_id}/", 200),
        ("GET", "/api/projects/{project_id}/", 404),
        ("GET", "/api/{value}/{id}", 404),
        ("GET", "/api/boom", 500),
        ("DELETE", "/api/health", 405),
    }
    assert spool_rows(home) == []
