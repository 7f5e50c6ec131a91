"""A sender lingers for the next command: commands seconds apart share it, and `flush`,
`purge` and `disable` never wait for its linger to end.

These tests run senders with the real `LINGER_S` (the knob set to ""), where the rest of the
suite lets its senders go half a second after their last event.
"""

from __future__ import annotations

import time

import pytest
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

PAUSE_S = 2 * _tuning.BRISK_S
"""Between two commands: longer than the brisk looks, so the second event is found by an idle
look, as a user at a terminal's would be."""


@pytest.fixture
def lingering(env):
    """Hosts whose senders linger as long as they do on a user's machine."""
    return {**env, LINGER_KNOB: ""}


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


def test_a_lingering_sender_ends_by_itself_within_its_lifetime(lingering, home, project, collector):
    senders, _ = first_command(lingering, project, collector, home)
    assert len(senders) == 1

    assert wait_for_senders_to_exit(home, timeout=_tuning.LIFETIME_S + 15) == []
    assert spool_rows(home) == []


def test_flush_does_not_wait_for_a_lingering_sender(lingering, home, project, collector):
    senders, _ = first_command(lingering, project, collector, home)
    assert len(senders) == 1

    started = time.monotonic()
    result = vt("flush", env=lingering, cwd=project)
    took = time.monotonic() - started

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

    started = time.monotonic()
    result = vt("disable", env=lingering, cwd=project)
    took = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert took < _tuning.LINGER_S / 2, f"disable waited {took:.1f} s for the lingering sender"
    assert not spool_path(home).exists()
    assert wait_for_senders_to_exit(home, timeout=10) == []
    assert len(collector.events()) == 1


def test_an_opt_out_while_a_sender_lingers_sends_nothing_more(
    lingering, home, project, collector
):
    senders, _ = first_command(lingering, project, collector, home)
    assert len(senders) == 1

    (home / ".visivo" / "config.yml").write_text("telemetry_enabled: false\n")
    result, _ = run_host(host_code("run", ["--after-opt-out"]), lingering, cwd=project)
    assert result.returncode == 0 and result.stderr == ""

    assert wait_for_senders_to_exit(home, timeout=_tuning.LIFETIME_S + 15) == []
    assert [e["properties"]["command_args"][0] for e in collector.events()] == ["--first"]
