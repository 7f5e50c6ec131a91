"""Shared test machinery: real host processes, a real receiver, a real spool in a temp HOME."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

_spec = importlib.util.spec_from_file_location("collector", ROOT / "scripts" / "collector.py")
collector_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collector_module)
Collector = collector_module.Collector

TEST_API_KEY = "phc_test_key"
"""The project key the test hosts pass in code, as Visivo passes its own."""

DEAD_RECEIVER = "http://127.0.0.1:9"
"""Where events go unless a test names a receiver: loopback, nothing listens, never the internet."""

TELEMETRY_ENV = (
    "VISIVO_TELEMETRY_DISABLED",
    "DO_NOT_TRACK",
    "VISIVO_POSTHOG_HOST",
    "VISIVO_POSTHOG_API_KEY",
    "VISIVO_TELEMETRY_DEBUG",
    "CI",
)


NETWORK_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
"""The runner's proxies and CA bundles (any case) never reach a test's hosts and senders."""


LINGER_KNOB = "VISIVO_TELEMETRY_SENDER_LINGER_S"
SHORT_LINGER = "0.5"
"""A test's senders let go half a second after their last event (a script's commands still
share one), so that a test waiting for them to exit waits no longer; the tests of sharing a
sender across commands seconds apart set the knob to "" (the real `LINGER_S`)."""


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a host process: our HOME, no telemetry or network settings of the
    runner's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in TELEMETRY_ENV and k.upper() not in NETWORK_ENV
    }
    env["HOME"] = str(home)
    env["VISIVO_POSTHOG_HOST"] = DEAD_RECEIVER
    env[LINGER_KNOB] = SHORT_LINGER
    env.update(extra)
    return env


def host_code(
    command: str = "run",
    args: list[str] | None = None,
    *,
    version: str = "1.4.0",
    raise_error: str | None = None,
    metrics: dict | None = None,
    api_key: str | None = TEST_API_KEY,
    host: str | None = None,
) -> str:
    """Python source of a minimal host that records one command and exits at once.

    Like Visivo, it passes its PostHog project key (and, if given, host) in code.
    """
    return textwrap.dedent(
        f"""
        from visivo_telemetry import Telemetry
        t = Telemetry(version={version!r}, project_dir=".", api_key={api_key!r}, host={host!r})
        with t.command({command!r}, {args or []!r}) as cmd:
            cmd.metrics.update({metrics or {}!r})
            if {raise_error!r}:
                raise {raise_error or "RuntimeError"}("boom")
        """
    )


def run_host(
    code: str,
    env: dict[str, str],
    cwd: Path | str | None = None,
    timeout: float = 20.0,
    preexec: Callable[[], None] | None = None,
) -> tuple[subprocess.CompletedProcess, float]:
    """Run a host as a real process (`preexec` runs in the child before exec).

    Returns the result and its wall time in seconds.
    """
    started = time.perf_counter()
    result = subprocess.run(
        [PYTHON, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )
    return result, time.perf_counter() - started


def spool_path(home: Path) -> Path:
    return home / ".visivo" / "telemetry.db"


def spool_rows(home: Path) -> list[dict]:
    """Rows of the spool, read with plain sqlite3 (as a person with `sqlite3` would): the
    `events` table, then the `request_windows` table where API requests are counted."""
    path = spool_path(home)
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        rows = [
            {**dict(r), "table": table}
            for table in ("events", "request_windows")
            if table in tables
            for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")
        ]
    finally:
        conn.close()
    for row in rows:
        row["properties"] = json.loads(row["properties"])
    return rows


def spool_state(home: Path) -> dict[str, str | None]:
    path = spool_path(home)
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM state"))
    finally:
        conn.close()


def sender_pids(home: Path) -> list[int]:
    """Live (non-zombie) sender processes whose HOME is `home`, found through /proc."""
    found = []
    wanted = f"HOME={home}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        args = cmdline.split(b"\0")
        is_sender = any(b"visivo_telemetry._sender" in a for a in args)
        if not is_sender or wanted not in environ.split(b"\0"):
            continue
        if "State:\tZ" in status:
            continue
        found.append(int(entry))
    return found


def wait_for_senders_to_exit(home: Path, timeout: float = 40.0) -> list[int]:
    """Wait until no sender runs for `home`; the pids still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        pids = sender_pids(home)
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def vt(
    *args: str, env: dict[str, str], cwd=None, timeout: float = 60.0
) -> subprocess.CompletedProcess:
    """`visivo-telemetry ARGS...` as a user would run it."""
    return subprocess.run(
        [PYTHON, "-m", "visivo_telemetry.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flush(env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """`visivo-telemetry flush` as a user would run it."""
    return vt("flush", env=env, timeout=timeout)


def status_json(env: dict[str, str], cwd=None) -> dict:
    """`visivo-telemetry status --json`, parsed."""
    result = vt("status", "--json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def read_terminal(fd: int) -> str:
    """Everything written to a pty until its other end closes; closes `fd`."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode()


def run_stderr_on(argv: list[str], env: dict[str, str], cwd, tty: bool) -> tuple[int, str, str]:
    """Run a process with stderr on a pseudo-terminal (as at a shell) or on a pipe (as in a
    script): its exit code, stdout and stderr."""
    if not tty:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    terminal = read_terminal(master)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out.decode(), terminal.replace("\r\n", "\n")


def down_receiver(db_path: Path, mode: str = "ok") -> Collector:
    """A receiver that is down for now, on a port of its own: record events with its `url`
    (each event carries where it goes), then `with receiver:` brings it up on that port."""
    receiver = Collector(db_path, mode=mode).start()
    receiver.stop()
    return receiver


def json_strings(value: object) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *json_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in json_strings(v)]
    return []
