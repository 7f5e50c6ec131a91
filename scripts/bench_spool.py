"""Benchmarks of the spool: recording one event, draining a large spool, concurrent writers."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench_common import (
    PYTHON,
    WORKER,
    Row,
    arrived,
    child_env,
    median,
    new_home,
    quantile,
    refusing_url,
    spooled,
    verdict,
)

FORBIDDEN = ("httpx", "sqlite_utils", "filelock", "subprocess", "yaml", "click", "flask", "asyncio")
RECORD_TARGET_US = 200.0
DRAIN_TARGET_RATE = 20_000
DRAIN_TARGET_RSS_MB = 60.0
SENDER_BUDGET_S = 25.0
WORKER_TIMEOUT_S = 120.0


def _worker(args: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run one worker job and return its JSON answer (raises with its stderr if it failed)."""
    done = subprocess.run(
        [PYTHON, str(WORKER), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"worker {args[0]} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def hot_path(base: Path, calls: int) -> list[Row]:
    """Warm per-event cost and the modules recording imports, in a fresh process."""
    home = new_home(base, "hotpath")
    env = child_env(home, refusing_url())
    _worker(["hotpath", "10"], child_env(new_home(base, "hotpath-warm"), refusing_url()), base)
    found = _worker(["hotpath", str(calls)], env, base)
    return _hot_path_rows(found)


def _hot_path_rows(found: dict) -> list[Row]:
    command_us = median(found["command_us"])
    request_us = median(found["request_us"])
    stored = f"{found['rows']}/{found['expected_rows']} spooled"
    if not found["enabled"]:
        stored += " (telemetry was off!)"
    leaked = sorted({m.split(".")[0] for m in found["new_modules"]} & set(FORBIDDEN))
    ours = [m for m in found["new_modules"] if not m.startswith("visivo_telemetry")]
    notable = [m for m in ours if "." not in m and not m.startswith("_")]
    return [
        Row(
            "Hot path: record one `cli_command`, warm",
            "visivo-telemetry",
            f"{command_us:.0f} µs (p95 {quantile(found['command_us'], 0.95):.0f} µs)",
            events=stored,
            target=verdict(command_us <= RECORD_TARGET_US, "≤ 200 µs"),
        ),
        Row(
            "Hot path: record one `api_request`, warm",
            "visivo-telemetry",
            f"{request_us:.0f} µs (p95 {quantile(found['request_us'], 0.95):.0f} µs)",
            target=verdict(request_us <= RECORD_TARGET_US, "≤ 200 µs"),
        ),
        Row(
            "Hot path: import + `Telemetry()` + first event, cold process",
            "visivo-telemetry",
            f"{found['import_ms']:.1f} + {found['construct_ms']:.1f} + "
            f"{found['first_record_ms']:.1f} ms",
        ),
        Row(
            "Hot path: modules imported by import + first event",
            "visivo-telemetry",
            f"{len(ours)} modules besides ours: {', '.join(notable)}",
            target=verdict(not leaked, "none of " + "/".join(FORBIDDEN))
            + (f" (found {', '.join(leaked)})" if leaked else ""),
        ),
    ]


def drain(base: Path, collector, events: int) -> list[Row]:
    """Spool `events` events, then time the real sender delivering them to the receiver."""
    home = new_home(base, "drain")
    key = "bench-drain"
    env = child_env(home, collector.url, key)
    filled = _worker(["fill", str(events)], env, base)
    first_request = len(collector.requests()) + 1
    sent, seconds, rss_mb, cpu_s, wall_s = _run_drain(env, base)
    rate = sent.get("sent", 0) / seconds if seconds else 0.0
    got = arrived(collector.db_path, key)
    ok = rate >= DRAIN_TARGET_RATE and rss_mb <= DRAIN_TARGET_RSS_MB
    fits = "fits" if sent.get("seconds", 0) <= SENDER_BUDGET_S else "exceeds"
    return [
        Row(
            f"Drain: {events:,} spooled events to the local receiver",
            "sender `deliver()`",
            f"{rate:,.0f} events/s; peak RSS {rss_mb:.1f} MB; sender CPU {cpu_s:.1f} s "
            f"({cpu_s / max(events, 1) * 1e6:.0f} µs/event incl. start-up); "
            f"drain {seconds:.1f} s ({fits} the sender's 25 s budget), process {wall_s:.1f} s; "
            f"spool filled in {filled['seconds']:.1f} s",
            events=f"{got:,}/{events:,} arrived; {spooled(home):,} left "
            f"({sent.get('stopped', '?')})",
            target=verdict(ok, "≥ 20,000 events/s, ≤ 60 MB"),
        ),
        *_wire_rows(collector.requests()[first_request - 1 :]),
    ]


def _wire_rows(requests: list[dict]) -> list[Row]:
    """Bytes per event on the wire, gzip as sent and the same JSON uncompressed, from the
    receiver's log of the drain's batches (request bodies; HTTP headers not counted)."""
    accepted = [r for r in requests if r["status"] == 200 and r["n_events"]]
    events = sum(r["n_events"] for r in accepted)
    if not events:
        return []
    gzipped = sum(r["body_bytes"] for r in accepted) / events
    plain = sum(r["json_bytes"] for r in accepted) / events
    batches = f"{len(accepted):,} batches, {events:,} events"
    return [
        Row(
            "Wire: request body bytes per event (drain)",
            "JSON, uncompressed",
            f"{plain:.0f} B",
            events=batches,
            chart=("Request body bytes per event on the wire", "JSON, uncompressed", plain),
        ),
        Row(
            "Wire: request body bytes per event (drain)",
            "gzip, as sent",
            f"{gzipped:.0f} B ({plain / gzipped:.1f}× smaller)",
            events=batches,
            chart=("Request body bytes per event on the wire", "gzip, as sent", gzipped),
        ),
    ]


def _run_drain(env: dict[str, str], cwd: Path) -> tuple[dict, float, float, float, float]:
    """Run the drain worker; its answer, drain seconds, peak RSS (MB), CPU and wall seconds."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [PYTHON, str(WORKER), "drain", "300"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode().strip()
    answer = json.loads(text.splitlines()[-1]) if text else {}
    return answer, answer.get("seconds", 0.0), usage.ru_maxrss / 1024, _cpu(usage), wall


def _cpu(usage: os.struct_rusage | object) -> float:
    return usage.ru_utime + usage.ru_stime


def concurrency(base: Path, per_writer: int, counts: tuple[int, ...] = (1, 2, 4, 8)) -> list[Row]:
    """1, 2, 4, 8 processes appending to one spool at full speed."""
    return [_writers(base, n, per_writer) for n in counts]


def _writers(base: Path, writers: int, per_writer: int) -> Row:
    home = new_home(base, f"writers-{writers}")
    env = child_env(home, refusing_url())
    start_at = time.time() + 1.0 + 0.15 * writers
    outs = [base / f"writer-{writers}-{i}.json" for i in range(writers)]
    procs = [
        subprocess.Popen(
            [PYTHON, str(WORKER), "writer", str(per_writer), f"{start_at:.6f}", str(out)],
            env=env,
            cwd=base,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for out in outs
    ]
    crashed = printed = 0
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=WORKER_TIMEOUT_S)
        crashed += proc.returncode != 0
        printed += bool(stdout or stderr)
    results = [json.loads(out.read_text()) for out in outs if out.exists()]
    return _writer_row(writers, per_writer, results, crashed, printed, spooled(home))


def _writer_row(
    writers: int, per_writer: int, results: list[dict], crashed: int, printed: int, rows: int
) -> Row:
    expected = writers * (per_writer + 1)
    missing = expected - rows
    errors = crashed + printed + max(missing, 0)
    latencies = [x for r in results for x in r["latencies"]]
    span = max((r["ended"] for r in results), default=0) - min(
        (r["began"] for r in results), default=0
    )
    rate = len(latencies) / span if span > 0 else 0.0
    worst = max(latencies, default=0.0) * 1e3
    p50 = (median(latencies) or 0.0) * 1e6
    return Row(
        f"Concurrency: {writers} writer process{'es' if writers > 1 else ''}",
        f"{per_writer:,} events each",
        f"{rate:,.0f} events/s; append median {p50:.0f} µs, max {worst:.1f} ms",
        events=f"{rows:,}/{expected:,} spooled; errors {errors} "
        f"({crashed} crashed, {printed} printed, {max(missing, 0)} missing)",
        target=verdict(errors == 0, "0 errors") if writers == 8 else "—",
    )


def poller(base: Path, collector, minutes: float, scale: float) -> list[Row]:
    """A viewer polling the API server: 3 endpoints, 10 times a second, for `minutes` (time
    compressed by `scale`), with 60 s windows and with one window per request."""
    rows = []
    for variant, window_s in (("coalesced, 60 s windows", 60.0), ("one event per request", 1e-6)):
        key = f"bench-poller-{int(window_s)}"
        home = new_home(base, key)
        env = child_env(home, collector.url, key)
        found = _worker(["poller", str(minutes), str(scale), str(window_s)], env, base)
        wait_for_quiet(home)
        _worker(["drain", "60"], env, base)
        received = _received_requests(collector.db_path, key)
        rows.append(
            Row(
                f"Poller: 3 endpoints × 10/s for {minutes:g} min ({found['requests']:,} requests;"
                f" time compressed {scale:g}×)",
                variant,
                f"{received['n']:,} events sent; {found['peak_rows']:,} rows in the spool at "
                f"peak; request thread {found['cpu_us_per_request']:.1f} µs CPU per request "
                f"for telemetry (Flask itself {found['bare_cpu_us_per_request']:.0f} µs)",
                events=f"{received['counted']:,}/{found['requests']:,} requests counted; "
                f"{spooled(home):,} left",
            )
        )
    return rows


def wait_for_quiet(home: Path, timeout: float = 60.0) -> None:
    """Until no sender of this HOME runs (they were started by the poller's server)."""
    from bench_common import sender_pids

    deadline = time.monotonic() + timeout
    while sender_pids([home]) and time.monotonic() < deadline:
        time.sleep(0.1)


def _received_requests(receiver_db: Path, api_key: str) -> dict[str, int]:
    """`api_request` events the receiver stored under one key, and the requests they count."""
    import sqlite3

    conn = sqlite3.connect(receiver_db, timeout=5.0)
    try:
        found = conn.execute(
            "SELECT properties FROM events WHERE api_key = ? AND event = 'api_request'",
            (api_key,),
        ).fetchall()
    finally:
        conn.close()
    counts = [json.loads(properties).get("request_count", 1) for (properties,) in found]
    return {"n": len(counts), "counted": sum(counts)}
