"""A process killed at any instant loses nothing: rows leave the spool only after a 2xx."""

from __future__ import annotations

import random
import signal
import sqlite3
import textwrap
import time

from helpers import flush, host_code, run_host, spool_path, spool_rows, wait_for_senders_to_exit
from reliability_support import received_uuids, seed_spool, spool_count, start_sender

KILL_RUNS = 50
EVENTS_PER_RUN = 120


def sender_lifetime(env: dict[str, str], home) -> tuple[float, list[str]]:
    """How long one unkilled sender takes to drain a run's events here (calibrates the kills)."""
    uuids = seed_spool(home, EVENTS_PER_RUN)
    started = time.monotonic()
    start_sender(env).wait(timeout=60)
    return time.monotonic() - started, uuids


def test_random_sigkills_of_the_sender_lose_nothing(env, home, collector):
    """50 senders, each SIGKILLed at a random instant of its life; then one flush."""
    rng = random.Random(5)
    collector.set_mode("slow:0.1")
    lifetime, recorded = sender_lifetime(env, home)
    mid_drain = 0
    for _ in range(KILL_RUNS):
        recorded += seed_spool(home, EVENTS_PER_RUN)
        before = len(received_uuids(collector))
        sender = start_sender(env)
        time.sleep(rng.uniform(0.0, lifetime))
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        mid_drain += len(received_uuids(collector)) > before and spool_count(home) > 0
    assert mid_drain >= 3, f"only {mid_drain} kills landed in the middle of a drain"

    collector.set_mode("ok")
    result = flush(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert received_uuids(collector) == set(recorded)
    assert collector.stats()["duplicates"] >= 1, "no kill landed between receipt and delete"
    assert spool_count(home) == 0
    check = sqlite3.connect(spool_path(home)).execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)


def test_a_flush_right_after_a_killed_sender_sends_everything_at_once(env, home, collector):
    """Leases left by a dead sender are void for the next lock holder: no waiting them out."""
    recorded = seed_spool(home, 150)
    collector.set_mode("blackhole")
    sender = start_sender(env)
    deadline = time.monotonic() + 10
    while not collector.requests() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collector.requests(), "the sender never posted"
    sender.send_signal(signal.SIGKILL)
    sender.wait()
    assert any(r["leased_until"] for r in spool_rows(home)), "the kill left no lease behind"

    collector.set_mode("ok")
    started = time.monotonic()
    result = flush(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sent 150 events" in result.stdout
    assert time.monotonic() - started < 10
    assert received_uuids(collector) == set(recorded)


def test_a_host_killed_right_after_its_command_keeps_the_event(home, project):
    """The event is committed before `command()` returns; a SIGKILL then cannot lose it."""
    code = host_code("run", ["--n1", "1"]) + textwrap.dedent(
        """
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    from helpers import clean_env

    result, _ = run_host(code, clean_env(home), cwd=project)
    assert result.returncode == -signal.SIGKILL
    assert wait_for_senders_to_exit(home) == []
    rows = spool_rows(home)
    assert [r["properties"]["command_args"] for r in rows] == [["--n1", "<value>"]]
