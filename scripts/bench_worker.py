"""Child processes of the benchmark, one job each, each printing one JSON line.

    python scripts/bench_worker.py hotpath N          time command()/request() in a warm process
    python scripts/bench_worker.py writer N START OUT append N events at full speed from START
    python scripts/bench_worker.py fill N             bulk-insert N valid events into the spool
    python scripts/bench_worker.py drain BUDGET       run the real sender's deliver() once
    python scripts/bench_worker.py poller MIN SCALE W a viewer polling the API server (W: window s)

Only `sys` is imported at the top (and no `__future__`), so `hotpath` sees exactly the modules
that importing visivo_telemetry and recording an event bring in.
"""

import sys

VERSION = "1.4.0"
POSTHOG_KEY = "phc_bench_project_key"
ARGS = ["--threads", "4", "--dag-filter", "+my_chart+", "--output-dir", "/tmp/out"]


def hotpath(n: int) -> None:
    """Cold import and first event, then `n` warm `command()` blocks and `request` calls each.

    Only recording is timed: each sanitizes, builds, validates and INSERTs into the spool. The
    first command's end starts the process's one sender (to a refusing receiver, so the rows
    stay); later ones start none.
    """
    before = set(sys.modules)
    import time

    clock = time.perf_counter
    started = clock()
    from visivo_telemetry import Telemetry

    imported = clock()
    telemetry = Telemetry(version=VERSION, project_dir=".", api_key=POSTHOG_KEY)
    constructed = clock()
    _command(telemetry, "run", ARGS)
    first = clock()
    after_first = set(sys.modules)
    commands = _time_calls(n, clock, lambda: _command(telemetry, "run", ARGS))
    requests = _time_calls(n, clock, lambda: telemetry.request("GET", "/api/trace/42/", 200, 3.5))
    after = set(sys.modules)
    _emit(
        {
            "enabled": telemetry.enabled,
            "import_ms": (imported - started) * 1e3,
            "construct_ms": (constructed - imported) * 1e3,
            "first_record_ms": (first - constructed) * 1e3,
            "command_us": [x * 1e6 for x in commands],
            "request_us": [x * 1e6 for x in requests],
            "new_modules": sorted(after_first - before),
            "new_modules_warm": sorted(after - after_first),
            "expected_rows": 1 + 2 * n,
            "rows": _spool_rows(),
        }
    )


def _command(telemetry, name: str, args: list) -> None:
    """One command as a host records it: an empty `with telemetry.command(...)` block."""
    with telemetry.command(name, args):
        pass


def _time_calls(n: int, clock, call) -> list:
    """Seconds taken by each of `n` calls."""
    taken = []
    for _ in range(n):
        begin = clock()
        call()
        taken.append(clock() - begin)
    return taken


def writer(n: int, start_at: float, out: str) -> None:
    """One concurrent writer: warm up, wait for the common start, append `n` events."""
    import json
    import time

    from visivo_telemetry import Telemetry

    telemetry = Telemetry(version=VERSION, project_dir=".", api_key=POSTHOG_KEY)
    _command(telemetry, "warmup", [])
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.time()
    latencies = _time_calls(n, time.perf_counter, lambda: _command(telemetry, "run", ARGS))
    ended = time.time()
    with open(out, "w") as handle:
        json.dump({"began": began, "ended": ended, "latencies": latencies}, handle)


def fill(n: int) -> None:
    """Spool `n` valid events in one transaction (built by the real event builder)."""
    import time

    from visivo_telemetry import _events as events
    from visivo_telemetry import _spool as spool
    from visivo_telemetry._files import paths

    started = time.perf_counter()
    conn = spool.connect(paths().db)
    rows = []
    for i in range(n):
        props = events.cli_command_properties("run", ["--threads", "<value>"], i % 997, None, {})
        event = events.build("cli_command", VERSION, props)
        rows.append((event.uuid, event.event, event.created_at, event.properties_json))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)", rows
    )
    conn.execute("COMMIT")
    conn.close()
    _emit({"rows": len(rows), "seconds": time.perf_counter() - started})


def drain(budget_s: float) -> None:
    """The sender's own `deliver()`, with the row cap lifted so every spooled event is sent.

    The detached sender keeps at most 10,000 rows (dropping the oldest); the benchmark measures
    delivery speed, so it lifts that cap. Priority is left normal (the real sender idles).
    """
    import functools
    import time

    from visivo_telemetry._sender import drain as drain_module
    from visivo_telemetry._sender import run

    run.Drain = functools.partial(drain_module.Drain, limits=drain_module.Limits(max_rows=10**9))
    started = time.perf_counter()
    outcome = run.deliver(respect_backoff=False, budget_s=budget_s)
    seconds = time.perf_counter() - started
    sent = getattr(outcome, "sent", 0)
    failed = getattr(outcome, "failed", 0)
    reason = getattr(outcome, "stopped_because", "busy")
    _emit({"sent": sent, "failed": failed, "stopped": reason, "seconds": seconds})


def poller(minutes: float, scale: float, window_s: float) -> None:
    """A viewer polling 3 endpoints 10 times a second for `minutes`, in `minutes / scale`.

    Time is compressed by `scale`: the poll interval, the request windows, the writer's flush
    interval and the windows' grace all shrink together, so the events and rows are those of
    the real run. A `window_s` far below a poll interval gives every request a window of its
    own: one event per request, the cost without coalescing. Senders really run (to the
    benchmark's receiver). The request thread's CPU is measured with `time.thread_time` around
    each request, paired with the same request to the same app not instrumented; the difference
    is telemetry's.
    """
    import os
    import time

    from flask import Flask

    from visivo_telemetry import Telemetry
    from visivo_telemetry import _tuning as tuning
    from visivo_telemetry.integrations import flask as integration

    tuning.FLUSH_S = 1.0 / scale
    tuning.WINDOW_GRACE_S = 5.0 / scale
    tuning.SERVER_SPAWN_INTERVAL_S = 60.0 / scale

    def make_app() -> Flask:
        app = Flask("bench_poller")
        for name in ("traces", "charts", "dashboards"):
            app.add_url_rule(f"/api/{name}/<int:item>/", name, lambda item: {"id": item})
        return app

    ticks = int(minutes * 60 * 10)
    tick_s = 0.1 / scale
    paths = ["/api/traces/1/", "/api/charts/2/", "/api/dashboards/3/"]

    bare = make_app().test_client()
    app = make_app()
    telemetry = Telemetry(VERSION, project_dir=".", api_key=POSTHOG_KEY, long_running=True)
    writer = integration.instrument(app, telemetry, window_s=window_s / scale)
    instrumented = app.test_client()
    db = os.path.join(os.environ["HOME"], ".visivo", "telemetry.db")
    cpu = {bare: 0.0, instrumented: 0.0}
    peak = 0
    started = time.monotonic()
    for tick in range(ticks):
        while time.monotonic() < started + tick * tick_s:
            time.sleep(tick_s / 4)
        for path in paths:
            pair = (bare, instrumented) if tick % 2 else (instrumented, bare)
            for test_client in pair:  # paired, in turns, so noise and order hit both alike
                before = time.thread_time()
                test_client.get(path)
                cpu[test_client] += time.thread_time() - before
        if tick % 10 == 0:
            peak = max(peak, _rows(db))
    writer.drain()
    cpu, bare_cpu = cpu[instrumented], cpu[bare]
    requests = ticks * len(paths)
    _emit(
        {
            "requests": requests,
            "peak_rows": peak,
            "cpu_us_per_request": (cpu - bare_cpu) / requests * 1e6,
            "bare_cpu_us_per_request": bare_cpu / requests * 1e6,
            "left_rows": _rows(db),
        }
    )


def _rows(db: str) -> int:
    import os
    import sqlite3

    if not os.path.exists(db):
        return 0
    conn = sqlite3.connect(db)
    try:
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("events", "request_windows")
        )
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _spool_rows() -> int:
    """Events in this HOME's spool, both tables (read after all timing is done): a raw
    `request()` is one row of `request_windows`."""
    import os
    import sqlite3

    path = os.path.join(os.environ["HOME"], ".visivo", "telemetry.db")
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(path)
    try:
        tables = ("events", "request_windows")
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)
    finally:
        conn.close()


def _emit(result: dict) -> None:
    import json

    sys.stdout.write(json.dumps(result) + "\n")


def main(argv: list) -> None:
    """Dispatch one job."""
    job = argv[0]
    if job == "hotpath":
        hotpath(int(argv[1]))
    elif job == "writer":
        writer(int(argv[1]), float(argv[2]), argv[3])
    elif job == "fill":
        fill(int(argv[1]))
    elif job == "drain":
        drain(float(argv[1]))
    elif job == "poller":
        poller(float(argv[1]), float(argv[2]), float(argv[3]))
    else:
        raise SystemExit(f"unknown job {job!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
