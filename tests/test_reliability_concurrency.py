"""Many writers and a draining sender share one spool: nothing lost, nothing locked, no race."""

from __future__ import annotations

import subprocess
import textwrap
import time

from filelock import FileLock
from helpers import (
    PYTHON,
    flush,
    host_code,
    run_host,
    sender_pids,
    spool_rows,
    wait_for_senders_to_exit,
)
from reliability_support import spool_count, start_sender

from visivo_telemetry._files import paths
from visivo_telemetry._sender import run

WRITERS = 8
AT_LEAST = 500  # the issue: 8 writers x 500 events, concurrently with a draining sender
AT_MOST = 1200  # 8 x 1200 stays under the spool's 10,000-row cap: nothing may be dropped here

# Writers pace themselves (1 ms between events) so they do not own both cores: the sender runs
# at nice 10 by design, and eight tight loops would starve it until they finish, which would
# test the scheduler rather than the spool. Full-speed writers are measured by scripts/bench.py.
# Each writer records at least AT_LEAST events and then stops as soon as the test has seen a
# delivery (the stop file), or at AT_MOST; it prints how many it recorded.
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".")
    w, stop = sys.argv[1], sys.argv[2]
    i = 0
    while i < {at_most} and (i < {at_least} or not os.path.exists(stop)):
        with t.command("run", ["--w" + w, "--i" + str(i)]):
            pass
        i += 1
        time.sleep(0.001)
    print(i)
    """
).format(at_least=AT_LEAST, at_most=AT_MOST)


def test_eight_writers_and_a_draining_sender_lose_nothing_and_never_see_a_lock(
    env, home, project, collector, tmp_path
):
    stop = tmp_path / "stop-writing"
    writers = [
        subprocess.Popen(
            [PYTHON, "-c", WRITER, str(w), str(stop)],
            env=env,
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    sender = start_sender(env)
    delivered_while_writing = 0
    while any(w.poll() is None for w in writers):
        if sender.poll() is not None:
            sender = start_sender(env)
        if not delivered_while_writing:
            delivered_while_writing = collector.stats()["events"]
            if delivered_while_writing:
                stop.touch()
        time.sleep(0.05)
    sender.wait(timeout=60)
    outputs = [w.communicate() for w in writers]

    assert [w.returncode for w in writers] == [0] * WRITERS
    assert [err for _, err in outputs] == [""] * WRITERS, "telemetry printed something"
    counts = [int(out) for out, _ in outputs]
    assert delivered_while_writing > 0, f"no sender drained while {sum(counts)} events were written"
    total = sum(counts)
    assert wait_for_senders_to_exit(home) == []
    # A batch that met a 1 s timeout on a loaded machine waits out its backoff in the spool;
    # "nothing lost" means a flush now delivers every event that is not there yet.
    assert flush(env).returncode == 0
    received = collector.wait_for_events(total, timeout=60)
    pairs = {tuple(e["properties"]["command_args"]) for e in received}
    assert len(received) == total and len(pairs) == total
    assert spool_count(home) == 0


def test_an_event_recorded_during_the_hand_off_is_never_stranded(env, home, project, collector):
    """The hand-off: a sender drained, is about to release its lock; a host records now.

    The host commits its row, sees the lock held and starts no sender. The sender must find
    the row after releasing the lock. Deterministic: the host runs inside the sender's last
    moment under the lock (an instrumented `Drain.run` that has just found the spool empty).
    """
    run_host(host_code("run", ["--first", "1"]), env, cwd=project)
    assert len(collector.wait_for_events(1)) == 1
    assert wait_for_senders_to_exit(home) == []
    original = run.Drain.run
    late: list[subprocess.CompletedProcess] = []

    def run_then_a_host_records(self: run.Drain) -> run.Outcome:
        outcome = original(self)
        if not late:
            result, _ = run_host(host_code("run", ["--late", "1"]), env, cwd=project)
            late.append(result)
            assert sender_pids(home) == [], "the host started a sender while the lock was held"
            assert len(spool_rows(home)) == 1
        return outcome

    run.Drain.run = run_then_a_host_records
    try:
        outcome = run.deliver(respect_backoff=False)
    finally:
        run.Drain.run = original
    assert late and late[0].returncode == 0
    assert outcome.stopped_because != "busy" and outcome.sent == 1
    assert spool_rows(home) == []
    flags = sorted(e["properties"]["command_args"][0] for e in collector.events())
    assert flags == ["--first", "--late"]


def test_a_host_sees_a_held_lock_as_a_live_sender(env, home, project, collector):
    """The other side of the hand-off: while the lock is held, a host spawns nothing."""
    where = paths()
    assert where is not None
    where_dir = home / ".visivo"
    where_dir.mkdir(mode=0o700, exist_ok=True)
    with FileLock(where.lock):
        run_host(host_code("run", ["--held", "1"]), env, cwd=project)
        time.sleep(0.3)
        assert sender_pids(home) == []
        assert collector.requests() == []
    assert len(spool_rows(home)) == 1
    assert run.deliver(respect_backoff=False).stopped_because != "busy"
    assert [e["properties"]["command_args"][0] for e in collector.events()] == ["--held"]
