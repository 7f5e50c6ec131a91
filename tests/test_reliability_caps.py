"""Bounded: the spool's rows, age, event size and WAL, and the sender's lifetime."""

from __future__ import annotations

import os
import sqlite3
import time

from helpers import (
    Collector,
    clean_env,
    flush,
    host_code,
    run_host,
    spool_path,
    spool_state,
    wait_for_senders_to_exit,
)
from reliability_support import seed_spool, spool_count, start_sender, trickling_receiver

from visivo_telemetry import _schema as schema
from visivo_telemetry._sender import drain, run

WAL_LIMIT_BYTES = 64 * 1024


def uuids_in_spool(home) -> list[str]:
    conn = sqlite3.connect(spool_path(home))
    try:
        return [u for (u,) in conn.execute("SELECT uuid FROM events ORDER BY id")]
    finally:
        conn.close()


def test_a_spool_over_the_row_cap_drops_the_oldest_and_says_so(home):
    seeded = seed_spool(home, drain.MAX_ROWS + 40)
    start_sender(clean_env(home)).wait(timeout=60)
    assert uuids_in_spool(home) == seeded[40:]
    assert spool_state(home)["dropped_rows"] == "40"


def test_events_older_than_the_age_cap_are_dropped_first_and_counted(home):
    old = seed_spool(home, 7, age_s=(drain.MAX_AGE_DAYS + 1) * 86_400)
    recent = seed_spool(home, 5, age_s=(drain.MAX_AGE_DAYS - 1) * 86_400)
    start_sender(clean_env(home)).wait(timeout=60)
    assert uuids_in_spool(home) == recent
    assert not set(old) & set(uuids_in_spool(home))
    assert spool_state(home)["dropped_age"] == "7"


def test_an_oversized_row_in_the_spool_is_dropped_not_sent(home, tmp_path):
    seed_spool(home, 3)
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute(
            "UPDATE events SET properties = json_set(properties, '$.command', ?) WHERE id = 2",
            ("x" * (schema.MAX_PROPERTIES_BYTES + 1),),
        )
    conn.close()
    with Collector(tmp_path / "r.db") as receiver:
        flush(clean_env(home, VISIVO_POSTHOG_HOST=receiver.url))
        assert len(receiver.events()) == 2
    assert spool_state(home)["dropped_invalid"] == "1"


def test_the_wal_is_checkpointed_small_after_draining(home, tmp_path):
    seed_spool(home, 3000)
    keeper = sqlite3.connect(spool_path(home))
    keeper.execute("SELECT COUNT(*) FROM events").fetchone()
    try:
        with Collector(tmp_path / "r.db") as receiver:
            result = flush(clean_env(home, VISIVO_POSTHOG_HOST=receiver.url))
            assert "sent 3000 events" in result.stdout
        wal = spool_path(home).with_name("telemetry.db-wal")
        size = wal.stat().st_size if wal.exists() else 0
        assert size <= WAL_LIMIT_BYTES, f"the WAL is {size} bytes after draining"
    finally:
        keeper.close()


def test_a_black_holed_receiver_cannot_keep_the_sender_alive(home, project, tmp_path):
    seed_spool(home, 500)
    with Collector(tmp_path / "r.db", mode="blackhole") as receiver:
        env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
        started = time.monotonic()
        result, seconds = run_host(host_code(), env, cwd=project)
        assert result.returncode == 0 and seconds < 1.0
        assert wait_for_senders_to_exit(home, timeout=15) == []
        assert time.monotonic() - started < 15, "the sender did not give up at the first timeout"
        assert len(receiver.requests()) == 1
    assert spool_count(home) == 501
    assert spool_state(home)["last_error"] == "timeout"


def test_a_receiver_that_never_finishes_answering_meets_the_hard_lifetime_cap(home):
    """Every read gets a byte within the 1 s timeout, forever: only the wall-clock cap helps."""
    seed_spool(home, 5)
    with trickling_receiver() as url:
        started = time.monotonic()
        sender = start_sender(clean_env(home, VISIVO_POSTHOG_HOST=url))
        sender.wait(timeout=run.LIFETIME_S + 15)
        lived = time.monotonic() - started
    assert run.LIFETIME_S - 1 <= lived <= run.LIFETIME_S + 10, f"lived {lived:.1f}s"
    assert spool_count(home) == 5
    assert os.WIFSIGNALED(sender.returncode << 8) or sender.returncode < 0
