"""Whatever the receiver does, hosts stay fast and silent, and every event arrives after recovery.

Real hosts, real detached senders, the real receiver in `scripts/collector.py` on 127.0.0.1.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import (
    Collector,
    clean_env,
    down_receiver,
    flush,
    host_code,
    run_host,
    spool_rows,
    spool_state,
    wait_for_senders_to_exit,
)
from reliability_support import spool_count

HOSTS = 4
HOST_SECONDS = 1.0
"""Generous: a host takes a few tens of milliseconds; a blocking network call would take more."""


def run_hosts(env: dict[str, str], project: Path, first: int = 0, count: int = HOSTS) -> None:
    """Real hosts, one after the other, each fast, silent and successful."""
    for i in range(first, first + count):
        result, seconds = run_host(host_code("run", [f"--n{i}", "1"]), env, cwd=project)
        assert result.returncode == 0
        assert result.stdout == "" and result.stderr == ""
        assert seconds < HOST_SECONDS, f"host took {seconds:.2f}s"


def recover(env: dict[str, str], home: Path, attempts: int = 6) -> None:
    """`flush` until the spool is empty, as a user would after the receiver is back."""
    for _ in range(attempts):
        if spool_count(home) == 0:
            return
        flush(env)
    assert spool_count(home) == 0, spool_state(home)


def assert_delivered_once_each(receiver: Collector, count: int = HOSTS) -> None:
    """Every event arrived; an event received twice is the same uuid, never a copy."""
    received = receiver.events()
    markers = sorted(e["properties"]["command_args"][0] for e in received)
    assert markers == sorted(f"--n{i}" for i in range(count))


@pytest.mark.parametrize(
    "mode",
    ["blackhole", "slow:1.5", "fail:3:503", "fail:2:500", "reset:3", "fail:1:429:1"],
)
def test_every_event_arrives_after_a_receiver_fault(home, project, tmp_path, mode):
    with Collector(tmp_path / "r.db", mode=mode) as receiver:
        env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
        run_hosts(env, project)
        assert wait_for_senders_to_exit(home) == []
        assert receiver.requests(), "the sender never tried"
        if mode in ("blackhole", "slow:1.5"):
            receiver.set_mode("ok")
        recover(env, home)
        assert_delivered_once_each(receiver)
        if mode == "slow:1.5":
            assert receiver.stats()["duplicates"] >= 1, "a timed-out batch is re-sent by uuid"


def test_events_wait_for_a_refusing_receiver_and_arrive_when_it_listens(home, project, tmp_path):
    down = Collector(tmp_path / "r.db").start()
    port = down.port
    down.stop()
    env = clean_env(home, VISIVO_POSTHOG_HOST=f"http://127.0.0.1:{port}")
    run_hosts(env, project)
    assert wait_for_senders_to_exit(home) == []
    assert spool_state(home)["last_error"] == "connection-refused"
    with Collector(tmp_path / "r.db", port=port) as back:
        recover(env, home)
        assert_delivered_once_each(back)


def test_retry_after_keeps_hosts_from_retrying_until_it_passes(home, project, tmp_path):
    with Collector(tmp_path / "r.db", mode="fail:1:429:30") as receiver:
        env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
        run_hosts(env, project, count=1)
        assert wait_for_senders_to_exit(home) == []
        wait = float(spool_state(home)["next_attempt_at"]) - time.time()
        assert 25 <= wait <= 30
        assert spool_state(home)["last_error"] == "http_429"
        run_hosts(env, project, first=1, count=2)
        assert wait_for_senders_to_exit(home) == []
        assert len(receiver.requests()) == 1, "a host started a sender inside Retry-After"
        recover(env, home)
        assert_delivered_once_each(receiver, 3)


def test_a_413_splits_batches_until_the_receiver_takes_them(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "r.db", mode="max-batch:2")
    env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
    run_hosts(env, project, count=9)
    assert wait_for_senders_to_exit(home) == []
    with receiver:
        result = flush(env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_delivered_once_each(receiver, 9)
        statuses = [r["status"] for r in receiver.requests()]
        assert statuses[0] == 413 and statuses.count(200) >= 5
    assert spool_rows(home) == []


def test_a_400_drops_only_the_rejected_event_and_says_so(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "r.db", mode="reject-command:forbidden")
    env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
    run_hosts(env, project)
    run_host(host_code("forbidden", ["--n99", "1"]), env, cwd=project)
    assert wait_for_senders_to_exit(home) == []
    with receiver:
        flush(env)
        assert_delivered_once_each(receiver)
    assert spool_rows(home) == []
    assert spool_state(home)["dropped_rejected"] == "1"


def test_a_receiver_rejecting_everything_never_empties_the_spool(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "r.db", mode="fail:1000:400")
    env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
    run_hosts(env, project)
    assert wait_for_senders_to_exit(home) == []
    with receiver:
        flush(env)
        assert receiver.requests()
    assert len(spool_rows(home)) == HOSTS
    assert spool_state(home)["last_error"] == "http_400"
