"""Commands run back to back share one sender, and none of their events is stranded by it."""

from __future__ import annotations

import sqlite3
import time

from helpers import (
    host_code,
    run_host,
    sender_pids,
    spool_path,
    spool_rows,
    wait_for_senders_to_exit,
)


def stamp(home, key: str, value: float) -> None:
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, str(value)))
    conn.close()


def senders_seen_within(home, seconds: float) -> set[int]:
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.update(sender_pids(home))
        time.sleep(0.01)
    return seen


def test_a_host_leaves_its_event_to_a_sender_that_is_still_starting(env, home, project, collector):
    run_host(host_code("run", ["--first"]), env, cwd=project)
    collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []

    stamp(home, "sender_spawned_at", time.time())
    result, _ = run_host(host_code("run", ["--second"]), env, cwd=project)

    assert result.returncode == 0 and result.stderr == ""
    assert senders_seen_within(home, 0.5) == set(), "a second sender was started"
    assert [r["properties"]["command_args"] for r in spool_rows(home)] == [["--second"]]


def test_a_sender_that_never_arrives_is_replaced_after_the_grace_period(
    env, home, project, collector
):
    run_host(host_code("run", ["--first"]), env, cwd=project)
    collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []
    stamp(home, "sender_spawned_at", time.time() - 10)

    run_host(host_code("run", ["--second"]), env, cwd=project)

    received = collector.wait_for_events(2)
    assert wait_for_senders_to_exit(home) == []
    assert sorted(e["properties"]["command_args"][0] for e in received) == ["--first", "--second"]


def test_a_burst_of_commands_delivers_every_event_once(env, home, project, collector):
    for i in range(12):
        result, _ = run_host(host_code("run", [f"--n{i}"]), env, cwd=project)
        assert result.returncode == 0 and result.stderr == ""

    received = collector.wait_for_events(12, timeout=30)
    assert wait_for_senders_to_exit(home) == []
    assert sorted(e["properties"]["command_args"][0] for e in received) == sorted(
        f"--n{i}" for i in range(12)
    )
    assert collector.stats()["duplicates"] == 0
    assert spool_rows(home) == []
