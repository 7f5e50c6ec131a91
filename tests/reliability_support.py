"""Machinery for the reliability suite: seeding a real spool, starting real senders, faults."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import PYTHON, TEST_API_KEY, Collector, run_host, spool_path, wait_for_senders_to_exit

from visivo_telemetry import _events as events
from visivo_telemetry import _spool as spool
from visivo_telemetry._spawn import sender_argv


def seed_spool(home: Path, count: int, *, command: str = "seed", age_s: float = 0.0) -> list[str]:
    """Append `count` real, valid events straight into HOME's spool; their uuids, in order."""
    db = str(spool_path(home))
    conn = spool.connect(db)
    uuids = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        spool.remember_destination(conn, TEST_API_KEY, None)
        for i in range(count):
            props = events.cli_command_properties(command, [f"--n{i}"], 1.0, None, {})
            event = events.build("cli_command", "1.4.0", props)
            assert event is not None
            created = events.iso_utc(time.time() - age_s)
            spool.append(  # no destination of its own: the spool's and the sender's settings
                conn,
                events.Event(event.uuid, event.event, created, event.properties_json),
                (None, None),
            )
            uuids.append(event.uuid)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return uuids


def start_sender(env: dict[str, str]) -> subprocess.Popen:
    """A detached sender exactly as a host starts it (same argv), but a child we can kill."""
    return subprocess.Popen(
        sender_argv(),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def received_uuids(collector: Collector) -> set[str]:
    """Every distinct uuid the receiver stored."""
    return {row["uuid"] for row in collector.events()}


def spool_count(home: Path) -> int:
    """Rows waiting in HOME's spool (0 when there is none)."""
    path = spool_path(home)
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=5)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("events", "request_windows")
            if table in tables
        )
    finally:
        conn.close()


def assert_no_sender_outlives(home: Path, timeout: float = 40.0) -> None:
    """For HOMEs other than the fixture's: wait for their senders, fail if one remains."""
    leftover = wait_for_senders_to_exit(home, timeout)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, f"sender processes outlived the test: {leftover}"


def run_python(
    code: str,
    env: dict[str, str],
    cwd: Path | str | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float = 30.0,
) -> tuple[subprocess.CompletedProcess, float]:
    """`helpers.run_host` with the longer timeout these environments may need."""
    return run_host(code, env, cwd=cwd, timeout=timeout, preexec=preexec)


CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
PR_CAPBSET_DROP = 24


def as_ordinary_user() -> None:
    """In a child of root: drop the capabilities that bypass file permissions (kept uid)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@contextmanager
def trickling_receiver() -> Iterator[str]:
    """A loopback server that answers one byte every half second, forever: no timeout fires."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if stop.wait(0.5):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()


def hold_exclusive_lock(db: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the spool's write lock (and every reader out) for `seconds`."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "c.execute('CREATE TABLE IF NOT EXISTS held (x)')\n"
        "print('held', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc
