"""The demo: a Visivo-like CLI run many times, quickly, against a local PostHog stand-in.

It shows the whole life of an event: spooled while the receiver is down (inspected with
`sqlite3`), delivered by `visivo-telemetry flush` once it is back, then many short runs whose
events a detached sender delivers after each CLI has already exited; then the API server
(`scripts/flask_app.py`), whose requests are counted per route template and sent when it stops.
Everything happens in a temporary HOME on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = HERE / "visivo_cli.py"
SERVER = HERE / "flask_app.py"

_spec = importlib.util.spec_from_file_location("collector", HERE / "collector.py")
collector_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collector_module)

RUNS = [
    ["run", "--dag-filter", "+my_chart+", "--threads", "4", "--output-dir", "/home/user/output"],
    ["compile", "--working-dir", "./analytics"],
    ["deploy", "--token=s3cr3t-t0ken", "--port", "8443"],
    ["dbt", "build", "--select", "tag:finance", "--full-refresh"],
    ["rnu", "--threads", "4"],
]
REQUESTS = [
    *[("/api/health", 200)] * 30,
    *[("/api/projects/1/", 200)] * 20,
    ("/api/projects/7/", 404),
    ("/api/projects/sales-dashboard/?token=s3cr3t", 404),
    ("/api/users/ada/", 404),
    ("/api/boom", 500),
]
"""What the demo asks the API server, and the status each answer has."""


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def print_failure(env: dict[str, str], project: Path) -> None:
    """The failure lines of `visivo-telemetry status` (from `failures:` to `dropped:`)."""
    status = subprocess.run(
        [sys.executable, "-m", "visivo_telemetry.cli", "status"],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    start = next((i for i, line in enumerate(status) if line.startswith("failures:")), 0)
    end = next((i for i, line in enumerate(status) if line.startswith("dropped:")), len(status))
    for line in status[start:end]:
        print(f"    {line}")


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float]:
    """One CLI run as a user would start it; returns its exit code and wall time."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(CLI), *args], env=env, cwd=cwd, capture_output=True, timeout=30
    )
    return result.returncode, (time.perf_counter() - started) * 1000


def show_spool(db: Path) -> None:
    """Print the spool the way a user would look at it."""
    query = "select id, event, created_at, attempts, properties from events"
    print(f"$ sqlite3 {db} '{query}'")
    if shutil.which("sqlite3"):
        subprocess.run(["sqlite3", str(db), query], check=False)
        return
    conn = sqlite3.connect(db)
    for row in conn.execute(query):
        print("|".join("" if v is None else str(v) for v in row))
    conn.close()


def wait_for_senders(home: Path, timeout: float = 40.0) -> None:
    """Wait until no sender for this HOME is alive (they exit by themselves)."""
    deadline = time.monotonic() + timeout
    wanted = f"HOME={home}".encode()
    while time.monotonic() < deadline:
        alive = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                state = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if b"sender" in cmd and wanted in env and "State:\tZ" not in state:
                alive = True
        if not alive:
            return
        time.sleep(0.05)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="visivo-telemetry-demo-"))
    home, project = workdir / "home", workdir / "project"
    home.mkdir()
    project.mkdir()
    (project / "project.visivo.yml").write_text("name: demo\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VISIVO_", "DO_NOT_TRACK"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["HOME"] = str(home)
    db = home / ".visivo" / "telemetry.db"

    receiver = collector_module.Collector(workdir / "received.db").start()
    port = receiver.url.rsplit(":", 1)[1]
    receiver.stop()
    env["VISIVO_POSTHOG_HOST"] = f"http://127.0.0.1:{port}"
    print(f"temporary HOME: {home}\nreceiver: http://127.0.0.1:{port}/batch/ (down for now)")

    banner("1. The receiver is down: five CLI runs, each still exits at once")
    for args in RUNS:
        code, ms = run_cli(args, env, project)
        print(f"  visivo {' '.join(args):<80} exit {code}  {ms:6.1f} ms")
    wait_for_senders(home)
    print("\n  `visivo-telemetry status` says why nothing left, and what one could set:")
    print_failure(env, project)
    banner("2. The events wait in the spool, sanitized (no values, no paths, no secrets)")
    show_spool(db)

    banner("3. The receiver comes back; `visivo-telemetry flush` delivers what waited")
    receiver = collector_module.Collector(workdir / "received.db", port=int(port)).start()
    subprocess.run(
        [sys.executable, "-m", "visivo_telemetry.cli", "flush"], env=env, cwd=project, check=False
    )

    rounds = 8
    banner(f"4. {rounds * len(RUNS)} quick runs; a detached sender delivers in the background")
    other_home = workdir / "opted-out-home"
    other_home.mkdir()
    opted_out = {**env, "HOME": str(other_home), "VISIVO_TELEMETRY_DISABLED": "1"}
    timings: dict[str, list[float]] = {"with telemetry": [], "opted out": []}
    for _ in range(rounds):
        for args in RUNS:
            timings["with telemetry"].append(run_cli(args, env, project)[1])
            timings["opted out"].append(run_cli(args, opted_out, project)[1])
    for label, values in timings.items():
        median = statistics.median(values)
        print(f"  median wall time of a CLI run, {label + ':':<16} {median:6.1f} ms")

    banner("5. What arrived at the receiver")
    received = receiver.wait_for_events(len(RUNS) * (rounds + 1), timeout=30)
    for event in received[-len(RUNS) :]:
        p = event["properties"]
        print(
            f"  {p['command']:<10} args={p['command_args']} success={p['success']} "
            f"error_type={p['error_type']} duration_ms={p['duration_ms']}"
        )
    keys = sorted({event["api_key"] for event in received})
    ips = sorted({event["properties"].get("$ip") for event in received})
    print(f"\n  api_key as the CLI passes it in code (scripts/visivo_cli.py): {', '.join(keys)}")
    print(f"  $ip of every event, what PostHog keeps instead of the connection's: {', '.join(ips)}")
    requests = [r for r in receiver.requests() if r["status"] == 200]
    encodings = sorted({str(r["content_encoding"]) for r in requests})
    agents = sorted({str(r["user_agent"]) for r in requests})
    wire = sum(r["body_bytes"] for r in requests)
    plain = sum(r["json_bytes"] for r in requests)
    print(
        f"  {len(requests)} batch requests, Content-Encoding {', '.join(encodings)}, "
        f"User-Agent {', '.join(agents)}: {wire:,} bytes on the wire for {plain:,} bytes of JSON"
    )
    banner("6. The API server: requests counted per route template, sent when it stops")
    served, counted = serve_requests(env, project, receiver, workdir)
    commands = [e for e in receiver.events() if e["event"] == "cli_command"]
    stats = receiver.stats()
    receiver.stop()
    expected = len(RUNS) * (rounds + 1)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    left = sum(
        conn.execute(f"select count(*) from {table}").fetchone()[0]
        for table in ("events", "request_windows")
    )
    conn.close()
    print(
        f"\n  recorded {expected} events, received {len(commands)} distinct "
        f"({stats['duplicates']} duplicate deliveries), {left} left in the spool"
    )
    print(f"  served {served} API requests, counted {counted} of them in what arrived")
    shutil.rmtree(workdir, ignore_errors=True)
    ok = len(commands) == expected and counted == served == len(REQUESTS)
    return 0 if ok and left == 0 and stats["duplicates"] == 0 else 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> int:
    """The status of one GET, whatever it is."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def serve_requests(env: dict[str, str], project: Path, receiver, workdir: Path) -> tuple[int, int]:
    """Start the API server, ask it `REQUESTS`, stop it with SIGTERM as a service manager
    would, and show the `api_request` events that arrive: how many requests were served, and
    how many the events count."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", str(port)],
        env=env,
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            get(base + "/api/health")
            break
        except OSError:
            time.sleep(0.1)
    served = 1  # the health check that found the server up
    asked: dict[tuple[str, int], int] = {}
    for path, status in REQUESTS[1:]:
        got = get(base + path)
        served += got == status
        asked[path, got] = asked.get((path, got), 0) + 1
    for (path, got), times in asked.items():
        print(f"  GET {path:<45} {got}  × {times}")
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    # The sender lingers for the next command; `flush` asks it to let go and sends what is left.
    subprocess.run(
        [sys.executable, "-m", "visivo_telemetry.cli", "flush"],
        env=env,
        cwd=project,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    requests = [e for e in receiver.events() if e["event"] == "api_request"]
    print()
    for event in sorted(requests, key=lambda e: -e["properties"]["request_count"]):
        p = event["properties"]
        print(
            f"  api_request {p['method']} {p['endpoint']:<28} status {p['status_code']}  "
            f"request_count {p['request_count']}"
        )
    return served, sum(e["properties"]["request_count"] for e in requests)


if __name__ == "__main__":
    sys.exit(main())
