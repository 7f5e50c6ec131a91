"""A lock file that is a link or a folder is never opened (opening a lock truncates it), and
never stops an opt-out: `purge` and `disable` delete the spool and exit 0 around it."""

from __future__ import annotations

import pytest
from helpers import spool_path, vt
from reliability_support import seed_spool, spool_count

VICTIM = "a file of the user's that the lock must never truncate\n"


@pytest.fixture(params=["directory", "symlink"])
def planted_lock(request, home, tmp_path):
    """`~/.visivo/telemetry.lock` planted as a folder, or as a link to a file of the user's."""
    seed_spool(home, 3)
    lock = home / ".visivo" / "telemetry.lock"
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    if request.param == "directory":
        lock.mkdir()
    else:
        lock.symlink_to(victim)
    return lock, victim


@pytest.mark.parametrize("command", ["purge", "disable"])
def test_an_opt_out_deletes_the_spool_whatever_the_lock_is(env, home, planted_lock, command):
    lock, victim = planted_lock
    result = vt(command, env=env)

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "deleted 3 pending event" in result.stdout
    assert not spool_path(home).exists()
    assert victim.read_text() == VICTIM
    assert lock.is_symlink() or lock.is_dir(), "the planted lock is left as it was"


def test_flush_never_opens_such_a_lock_and_keeps_the_events(env, home, planted_lock, collector):
    lock, victim = planted_lock
    result = vt("flush", env=env)

    assert result.returncode == 1
    assert result.stderr.strip().endswith("remove it and the events will go")
    assert len(result.stderr.strip().splitlines()) == 1, "one line, never a traceback"
    assert spool_count(home) == 3 and collector.events() == []
    assert victim.read_text() == VICTIM
