"""What every part of the benchmark shares: child environments, temp homes, sender reaping."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
PYTHON = sys.executable
HOST = SCRIPTS / "bench_host.py"
WORKER = SCRIPTS / "bench_worker.py"

RUNNER_ENV = (
    "PYTHONDONTWRITEBYTECODE",
    "VISIVO_TELEMETRY_DISABLED",
    "DO_NOT_TRACK",
    "VISIVO_POSTHOG_HOST",
    "VISIVO_POSTHOG_API_KEY",
    "VISIVO_TELEMETRY_DEBUG",
    "CI",
    "VISIVO_TELEMETRY_SENDER_LINGER_S",
    "VISIVO_TELEMETRY_SENDER_LIFETIME_S",
)
"""Dropped from children: users have bytecode caches, and the runner's opt-outs must not leak."""


def load_collector() -> type:
    """The receiver's helper class from `scripts/collector.py`."""
    spec = importlib.util.spec_from_file_location("collector", SCRIPTS / "collector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Collector


def child_env(home: Path, receiver: str, api_key: str = "bench") -> dict[str, str]:
    """A child's environment: its own HOME, our receiver, bytecode caches allowed."""
    env = {k: v for k, v in os.environ.items() if k not in RUNNER_ENV}
    env.update(HOME=str(home), VISIVO_POSTHOG_HOST=receiver, VISIVO_POSTHOG_API_KEY=api_key)
    return env


def refusing_url() -> str:
    """A loopback URL where nothing listens, so every connection is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def new_home(base: Path, name: str) -> Path:
    """A fresh, empty HOME for one variant and condition."""
    path = base / "homes" / name
    path.mkdir(parents=True)
    return path


def sender_pids(homes: Iterable[Path]) -> list[int]:
    """Live sender processes whose HOME is one of ours, found through /proc."""
    wanted = {f"HOME={h}".encode() for h in homes}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = set(Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"))
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if b"sender" in cmdline and wanted & environ and "State:\tZ" not in status:
            found.append(int(entry))
    return found


def wait_for_senders(
    homes: Iterable[Path], timeout: float = 35.0, let_go: bool = True
) -> list[int]:
    """Wait until no sender of ours runs; the pids still alive at the deadline.

    A sender lingers for the next command after delivering: with `let_go`, once a home's spool
    is empty it is asked to let go (as `flush` asks), so that the next round starts afresh
    rather than waiting out the linger. The machine's bill waits for their own end instead.
    """
    homes = list(homes)
    asked: set[Path] = set()
    deadline = time.monotonic() + timeout
    while (pids := sender_pids(homes)) and time.monotonic() < deadline:
        for home in set(homes) - asked if let_go else ():
            if spooled(home) == 0:
                _ask_to_let_go(home)
                asked.add(home)
        time.sleep(0.02)
    return pids


def _ask_to_let_go(home: Path) -> None:
    from visivo_telemetry._sender.run import ask_to_let_go

    folder = home / ".visivo"
    ask_to_let_go(str(folder / "telemetry.db"), str(folder / "telemetry.lock"))


def kill_senders(homes: Iterable[Path]) -> None:
    """Stop any sender of ours still alive, by pid (they stop by themselves within 30 s)."""
    for pid in sender_pids(homes):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def spooled(home: Path) -> int:
    """Events still waiting in a home's spool."""
    path = home / ".visivo" / "telemetry.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=5.0)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("events", "request_windows")
            if table in tables
        )
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def arrived(receiver_db: Path, api_key: str) -> int:
    """Distinct events the receiver stored under one api key (each variant has its own)."""
    if not receiver_db.exists():
        return 0
    conn = sqlite3.connect(receiver_db, timeout=5.0)
    try:
        sql = "SELECT COUNT(*) FROM events WHERE api_key = ?"
        return conn.execute(sql, (api_key,)).fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def quantile(values: list[float], q: float) -> float | None:
    """A simple nearest-rank quantile (0 < q < 1)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Row(NamedTuple):
    """One line of the results table."""

    benchmark: str
    variant: str
    result: str
    delta: str = "—"
    events: str = "—"
    target: str = "—"
    chart: tuple[str, str, float] | None = None
    """(panel, bar, value) when the row is part of the headline chart (`bench_chart`)."""


def verdict(ok: bool, text: str) -> str:
    """A target cell: what was asked, and whether it was met."""
    return f"{'✅' if ok else '❌'} {text}"


def ms(seconds: float | None) -> str:
    """Seconds as a readable millisecond figure."""
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"
