"""README: the spool is plain SQLite "(directory 0700, file 0600)" — and
the spool is never written through a symlink someone else planted.

Hosts run with umask 0, so the modes come from the code and not from a kind umask.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest
from helpers import clean_env, flush, host_code, run_host, spool_path, wait_for_senders_to_exit
from privacy_support import files_under, mode, spool_commands

from visivo_telemetry import Telemetry
from visivo_telemetry import _spool as spool

OPEN_UMASK = "import os; os.umask(0)\n"


def test_the_spool_directory_and_files_are_private(env, home, project, collector):
    result, _ = run_host(OPEN_UMASK + host_code(), env, cwd=project)
    collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []

    assert result.returncode == 0
    assert mode(home / ".visivo") == 0o700
    created = [home / name for name in files_under(home) if name != ".visivo"]
    assert home / ".visivo" / "telemetry.db" in created
    assert {path.name: mode(path) for path in created} == {path.name: 0o600 for path in created}


def test_the_write_ahead_log_and_shared_memory_files_are_private(home, project):
    previous = os.umask(0)
    try:
        telemetry = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=project)
        with telemetry.command("run", ["--threads", "4"]):
            pass
        db = spool_path(home)
        side_files = [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm")]
        try:
            assert all(path.exists() for path in side_files), files_under(home)
            assert [mode(path) for path in (db, *side_files)] == [0o600] * 3
        finally:
            telemetry.close()
    finally:
        os.umask(previous)
    assert mode(home / ".visivo") == 0o700


def _fingerprint(path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns


@pytest.fixture
def planted(home, tmp_path):
    """`~/.visivo/telemetry.db` is a symlink to a valid spool somewhere else."""
    target = tmp_path / "elsewhere" / "victim.db"
    target.parent.mkdir()
    spool.connect(str(target)).close()
    (home / ".visivo").mkdir(mode=0o700)
    spool_path(home).symlink_to(target)
    return target


def test_a_symlinked_spool_is_never_written_through(home, project, planted):
    before = _fingerprint(planted)

    result, _ = run_host(host_code("run", ["--threads", "4"]), clean_env(home), cwd=project)
    assert wait_for_senders_to_exit(home) == []

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert _fingerprint(planted) == before
    assert sorted(os.listdir(planted.parent)) == ["victim.db"]
    assert spool_path(home).is_symlink()
    conn = sqlite3.connect(planted)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    conn.close()


def test_flush_never_writes_through_a_symlinked_spool(home, project, planted):
    before = _fingerprint(planted)

    flush(clean_env(home))

    assert _fingerprint(planted) == before
    assert sorted(os.listdir(planted.parent)) == ["victim.db"]


def test_a_dangling_symlink_is_not_followed_to_create_its_target(home, project, tmp_path):
    target = tmp_path / "elsewhere" / "created-by-nobody.db"
    target.parent.mkdir()
    (home / ".visivo").mkdir(mode=0o700)
    spool_path(home).symlink_to(target)

    result, _ = run_host(host_code(), clean_env(home), cwd=project)
    assert wait_for_senders_to_exit(home) == []

    assert (result.returncode, result.stderr) == (0, "")
    assert os.listdir(target.parent) == []


def test_an_in_process_host_refuses_the_symlink_too(home, project, planted):
    before = _fingerprint(planted)

    spool_commands(project, [("run", [])])

    assert _fingerprint(planted) == before
