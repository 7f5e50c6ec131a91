"""API requests are counted, not sent one by one: one `api_request` per (endpoint, method, status)
and window of one process, with `request_count`; no count is lost at exit or SIGTERM, a crash
loses at most the last second, and a window that is still open is never sent."""

from __future__ import annotations

import calendar
import collections
import json
import signal
import threading
import time

from flask import Flask
from helpers import flush, spool_path, spool_rows, wait_for_senders_to_exit
from test_flask_integration import get, make_app, start_server

from visivo_telemetry import Telemetry
from visivo_telemetry import _events as events
from visivo_telemetry import _spool as spool
from visivo_telemetry.integrations.flask import instrument

Key = tuple[str, str, int]


def counted(received: list[dict]) -> collections.Counter[Key]:
    """Requests per (method, endpoint, status), from the `request_count`s that arrived."""
    totals: collections.Counter[Key] = collections.Counter()
    for event in received:
        p = event["properties"]
        totals[(p["method"], p["endpoint"], p["status_code"])] += p["request_count"]
    return totals


def windows_of(received: list[dict]) -> list[tuple]:
    return [
        (
            e["properties"]["session_id"],
            e["properties"]["method"],
            e["properties"]["endpoint"],
            e["properties"]["status_code"],
            e["timestamp"][:16],
        )
        for e in received
    ]


def test_thousands_of_real_requests_arrive_as_exact_counts(env, home, project, collector):
    """A real server, 2,400 requests over several endpoints, ids and statuses, then SIGTERM."""
    proc, url, probes = start_server(env, project)
    paths = {
        ("GET", "/api/projects/{project_id}/", 200): [
            url + "/api/projects/1/",
            url + "/api/projects/2/",
        ],
        ("GET", "/api/projects/{project_id}/", 404): [url + "/api/projects/999/"],
        ("GET", "/api/health", 200): [url + "/api/health"],
        ("GET", "/api/boom", 500): [url + "/api/boom"],
        ("GET", "/api/{value}/{id}", 404): [url + "/api/acme-plans/77"],
    }
    served: collections.Counter[Key] = collections.Counter({("GET", "/api/health", 200): probes})
    lock = threading.Lock()

    def poll(worker: int) -> None:
        for i in range(400):
            key = list(paths)[(worker + i) % len(paths)]
            options = paths[key]
            status = get(options[i % len(options)])
            with lock:
                served[(key[0], key[1], status)] += 1

    threads = [threading.Thread(target=poll, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM

    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    received = [e for e in collector.events() if e["event"] == "api_request"]
    assert sum(served.values()) == 2400 + probes
    assert counted(received) == served
    assert len(windows_of(received)) == len(set(windows_of(received)))
    assert len(received) <= 2 * len(served), "at most one event per key and window"
    assert spool_rows(home) == []


def test_a_crash_loses_at_most_the_last_second_of_counts(env, home, project, collector):
    """SIGKILL while requests flow: the writer adds its counts every second, so what arrives is
    every request answered more than 1.5 s before the kill, and never more than was served."""
    proc, url, _ = start_server({**env, "VISIVO_EXAMPLE_WINDOW_S": "2"}, project)
    answered: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                status = get(url + "/api/projects/1/")
            except OSError:  # the server was killed mid-request
                return
            if status == 200:
                answered.append(time.monotonic())

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    killed_at = time.monotonic()
    proc.kill()
    proc.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join()

    time.sleep(2 + 5 + 1)  # the last window's end and its grace: unclosed windows wait for it
    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    received = counted(e for e in collector.events() if e["event"] == "api_request")
    arrived = received[("GET", "/api/projects/{project_id}/", 200)]
    before_the_last_second = sum(1 for at in answered if at < killed_at - 1.5)
    assert before_the_last_second > 0
    assert before_the_last_second <= arrived <= len(answered)


def _epoch(timestamp: str) -> float:
    return calendar.timegm(time.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(
        timestamp[19:23]
    )


def _wait_for_window_start(window_s: float) -> None:
    while time.time() % window_s > 0.3:
        time.sleep(0.02)


def test_a_window_is_sent_only_once_closed_and_a_later_request_starts_a_new_one(
    env, home, collector
):
    app = make_app()
    recorder = instrument(
        app, Telemetry("1.4.0", api_key="phc_test_key", project_dir=None), window_s=2.0
    )
    client = app.test_client()
    _wait_for_window_start(2.0)
    for _ in range(5):
        assert client.get("/api/projects/1/").status_code == 200
    deadline = time.monotonic() + 10
    while not spool_rows(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [row["request_count"] for row in spool_rows(home)] == [5]

    assert flush(env).returncode == 0
    assert collector.events() == [], "an open window is never sent"

    time.sleep(2 + 5)  # past the window and its grace
    for _ in range(3):
        assert client.get("/api/projects/1/").status_code == 200
    assert flush(env).returncode == 0
    assert [e["properties"]["request_count"] for e in collector.events()] == [5]

    recorder.drain()  # shutting down: the open window may go now
    assert flush(env).returncode == 0
    received = collector.events()
    assert [e["properties"]["request_count"] for e in received] == [5, 3]
    first, second = (_epoch(e["timestamp"]) // 2.0 for e in received)
    assert second > first, "the later requests are a window of their own"


def _static_app(tmp_path) -> Flask:
    static = tmp_path / "static"
    static.mkdir()
    (static / "viewer.js").write_text("console.log('viewer')\n")
    app = make_app()
    app.static_folder = str(static)
    return app


def test_static_files_are_not_recorded_by_default(home, tmp_path):
    app = _static_app(tmp_path)
    recorder = instrument(app, Telemetry("1.4.0", api_key="phc_test_key", project_dir=None))
    client = app.test_client()
    assert client.get("/static/viewer.js").status_code == 200
    assert client.get("/static/missing.js").status_code == 404
    assert client.get("/api/projects/1/").status_code == 200
    recorder.drain()
    assert [row["properties"]["endpoint"] for row in spool_rows(home)] == [
        "/api/projects/{project_id}/"
    ]


def test_include_chooses_which_requests_are_recorded(home, tmp_path):
    """Visivo records only its API, and not its own telemetry relay."""

    def visivo_api(path: str, endpoint: str | None) -> bool:
        return path.startswith("/api/") and not path.startswith("/api/telemetry")

    app = _static_app(tmp_path)

    @app.post("/api/telemetry/event")
    def relay() -> dict:
        return {}

    recorder = instrument(
        app, Telemetry("1.4.0", api_key="phc_test_key", project_dir=None), include=visivo_api
    )
    client = app.test_client()
    assert client.get("/static/viewer.js").status_code == 200
    assert client.get("/").status_code == 404
    assert client.post("/api/telemetry/event").status_code == 200
    assert client.get("/api/health").status_code == 404
    assert client.get("/api/projects/1/").status_code == 200
    recorder.drain()
    recorded = sorted(row["properties"]["endpoint"] for row in spool_rows(home))
    assert recorded == ["/api/projects/{project_id}/", "/api/{value}"]
    assert spool_path(home).exists()


def test_counts_added_while_a_sender_holds_the_window_are_kept_for_the_next_event(home):
    """A sender took a closed window (it is sending it); counts for that window that arrive
    meanwhile (a writer that stalled past the window's grace) start a row of their own, so the
    sender's delete after its 2xx cannot take them along."""
    start = time.time() - 120  # a window that has ended: sendable
    key = f"{events.session_id()} {start:.6f} GET 200 /api/projects/"

    def one_request() -> tuple[object, ...]:
        """A count for that window, as a host's writer adds it (an event built each time)."""
        props = events.api_request_properties("GET", "/api/projects/", 200, 2.0)
        event = events.build("api_request", "1.4.0", props)
        created = events.iso_utc(start)
        return (key, event.uuid, created, event.properties_json, 1, 2.0, start, "phc_k", "h")

    conn = spool.connect(str(spool_path(home)))
    try:
        spool.add_request_counts(conn, [one_request()])
        _, taken = spool.claim(conn, 100, 120.0, time.time())
        assert [json.loads(row.properties)["request_count"] for row in taken] == [1]
        spool.add_request_counts(conn, [one_request(), one_request()])  # the same window, two more
        spool.delete(conn, taken)  # the receiver answered 2xx
    finally:
        conn.close()
    assert [row["request_count"] for row in spool_rows(home)] == [2]
