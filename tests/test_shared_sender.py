"""A sender lingers for the next command: commands seconds apart share it, and `flush`,
`purge` and `disable` never wait for its linger to end.

These tests run senders with the real `LINGER_S` (the knob set to ""), where the rest of the
suite lets its senders go half a second after their last event.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest
from filelock import FileLock
from helpers import (
    LINGER_KNOB,
    host_code,
    run_host,
    sender_pids,
    spool_path,
    spool_rows,
    spool_state,
    vt,
    wait_for_senders_to_exit,
)

from visivo_telemetry import _tuning
from visivo_telemetry._sender.doorbell import Doorbell
from visivo_telemetry._sender.run import acquire
from visivo_telemetry._spawn import ring_sender

PAUSE_S = 2 * _tuning.BRISK_S
"""Between two commands: longer than the brisk looks, so the second event is found by an idle
look, as a user at a terminal's would be."""


@pytest.fixture
def lingering(env, project):
    """Hosts whose senders linger as long as they do on a user's machine; at the end of the
    test, `flush` asks the one still lingering to let go (the `home` fixture waits for it)."""
    yield {**env, LINGER_KNOB: ""}
    vt("flush", env=env, cwd=project)


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def first_command(lingering, project, collector, home) -> tuple[list[int], str | None]:
    """Run one command and wait for its event; the sender then lingers (its pids, and the
    moment the host stamped as it started it)."""
    result, _ = run_host(host_code("run", ["--first"]), lingering, cwd=project)
    assert result.returncode == 0 and result.stderr == ""
    collector.wait_for_events(1, timeout=30)
    return sender_pids(home), spool_state(home)["sender_spawned_at"]


def timed_vt(command: str, env, project) -> tuple[subprocess.CompletedProcess, float]:
    """`visivo-telemetry COMMAND`, and how long it took (seconds)."""
    started = time.monotonic()
    result = vt(command, env=env, cwd=project)
    return result, time.monotonic() - started


def test_commands_seconds_apart_share_one_sender(lingering, home, project, collector):
    senders, spawned_at = first_command(lingering, project, collector, home)
    assert len(senders) == 1, "the sender let go as soon as its event was sent"

    for n in range(2):
        time.sleep(PAUSE_S)
        result, _ = run_host(host_code("run", [f"--later-{n}"]), lingering, cwd=project)
        assert result.returncode == 0 and result.stderr == ""

    received = collector.wait_for_events(3, timeout=30)
    assert sorted(e["properties"]["command_args"][0] for e in received) == [
        "--first",
        "--later-0",
        "--later-1",
    ]
    assert spool_state(home)["sender_spawned_at"] == spawned_at, "a later host started a sender"
    assert sender_pids(home) == senders, "the lingering sender did not deliver them"
    assert collector.stats()["duplicates"] == 0


def test_flush_does_not_wait_for_a_lingering_sender(lingering, home, project, collector):
    senders, _ = first_command(lingering, project, collector, home)
    assert len(senders) == 1

    result, took = timed_vt("flush", lingering, project)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent 0 events, 0 failed"
    # The linger would hold the lock for LINGER_S: the bound only catches a flush that waited.
    assert took < _tuning.LINGER_S / 2, f"flush waited {took:.1f} s for the lingering sender"
    assert wait_for_senders_to_exit(home, timeout=10) == []


def test_disable_does_not_wait_for_a_lingering_sender_and_deletes_the_spool(
    lingering, home, project, collector
):
    senders, _ = first_command(lingering, project, collector, home)
    assert len(senders) == 1

    result, took = timed_vt("disable", lingering, project)

    assert result.returncode == 0, result.stderr
    assert took < _tuning.LINGER_S / 2, f"disable waited {took:.1f} s for the lingering sender"
    assert not spool_path(home).exists()
    assert wait_for_senders_to_exit(home, timeout=10) == []
    assert len(collector.events()) == 1


def test_a_lingering_sender_ends_by_itself_and_sends_nothing_after_an_opt_out(
    lingering, home, project, collector
):
    senders, _ = first_command(lingering, project, collector, home)
    assert len(senders) == 1

    (home / ".visivo" / "config.yml").write_text("telemetry_enabled: false\n")
    result, _ = run_host(host_code("run", ["--after-opt-out"]), lingering, cwd=project)
    assert result.returncode == 0 and result.stderr == ""

    assert wait_for_senders_to_exit(home, timeout=_tuning.LIFETIME_S + 15) == []
    assert [e["properties"]["command_args"][0] for e in collector.events()] == ["--first"]
    assert spool_rows(home) == []


# ---------------------------------------------------------------------- the doorbell


def doorbell(home):
    return home / ".visivo" / "telemetry.wake"


def test_the_doorbell_is_a_private_fifo_of_the_users_own(lingering, home, project, collector):
    senders, _ = first_command(lingering, project, collector, home)
    assert len(senders) == 1

    info = doorbell(home).lstat()
    assert stat.S_ISFIFO(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()


def test_a_ring_wakes_a_listener_and_the_end_of_a_writer_leaves_it_listening(tmp_path):
    lock = tmp_path / "telemetry.lock"
    bell = Doorbell.open(str(lock))
    assert bell is not None
    try:
        assert bell.wait(0.05) is False  # nobody rang

        rang = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from visivo_telemetry._spawn import ring_sender; "
                "ring_sender(sys.argv[1])",
                str(lock),
            ],
            check=True,
        )
        assert rang.returncode == 0
        assert bell.wait(30) is True  # at once; after 30 s it would be a timeout

        # The ringing process has closed its end: the FIFO reads as ended, and the doorbell
        # opens afresh instead of waking in a tight loop.
        bell.wait(0.05)
        assert bell.wait(0.05) is False
        assert bell.listening
    finally:
        bell.close()


def test_ringing_without_a_listener_neither_blocks_nor_fails(tmp_path):
    lock = tmp_path / "telemetry.lock"
    ring_sender(str(lock))  # no FIFO at all
    os.mkfifo(tmp_path / "telemetry.wake", 0o600)
    ring_sender(str(lock))  # a FIFO nobody reads: opening it for writing would block
    assert stat.S_ISFIFO((tmp_path / "telemetry.wake").lstat().st_mode)


@pytest.mark.parametrize("planted", ["file", "link"])
def test_a_planted_doorbell_is_never_written_and_commands_still_share_the_sender(
    planted, lingering, home, project, collector, tmp_path
):
    (home / ".visivo").mkdir(mode=0o700)
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"the user's own file\n")
    if planted == "file":
        doorbell(home).write_bytes(b"the user's own file\n")
        target = doorbell(home)
    else:
        doorbell(home).symlink_to(target)

    senders, spawned_at = first_command(lingering, project, collector, home)
    assert len(senders) == 1
    assert Doorbell.open(str(home / ".visivo" / "telemetry.lock")) is None
    time.sleep(PAUSE_S)
    result, _ = run_host(host_code("run", ["--later"]), lingering, cwd=project)
    assert result.returncode == 0 and result.stderr == ""

    collector.wait_for_events(2, timeout=30)
    assert spool_state(home)["sender_spawned_at"] == spawned_at, "a later host started a sender"
    assert target.read_bytes() == b"the user's own file\n"
    assert doorbell(home).is_symlink() is (planted == "link")


def test_waiting_for_the_lock_asks_its_holder_again_every_second(tmp_path):
    """`flush` and `purge` ask again while they wait: a sender that took the lock just after
    their first ask (it was still starting) is asked too."""
    lock, asked = tmp_path / "telemetry.lock", tmp_path / "asked"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; from filelock import FileLock\n"
            "with FileLock(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    while not os.path.exists(sys.argv[2]): time.sleep(0.01)\n",
            str(lock),
            str(asked),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        nudges = []

        def nudge():
            nudges.append(time.monotonic())
            asked.touch()

        waiting = FileLock(str(lock))
        acquire(waiting, 60.0, nudge)
        waiting.release()
        assert len(nudges) == 1
    finally:
        holder.kill()
        holder.wait()
