"""Own it or refuse it, as OpenSSH treats `~/.ssh`: the spool folder and its files are the
user's and private, or telemetry records nothing there.

What the user owns is repaired (folder 0700, files 0600); what another user owns, or a link to
another user's folder, is refused: nothing recorded, no sender, nothing deleted through it,
and `visivo-telemetry status` says why and how to fix it. Another uid is made with
`os.chown`, so these tests run as root (as the project's test machines do).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest
from helpers import (
    Collector,
    clean_env,
    host_code,
    run_host,
    sender_pids,
    spool_path,
    status_json,
    vt,
)
from reliability_support import seed_spool, spool_count, start_sender

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a file to another user (os.chown) needs root; Windows has no uids",
)


def _nobody() -> int:
    import pwd

    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return 65534


NOBODY = _nobody() if hasattr(os, "geteuid") else -1


def _give_away(*paths: Path) -> None:
    for path in paths:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _digest(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by name, with a hash of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _assert_refused(env: dict[str, str], home: Path, why: str) -> None:
    """`status` (human and --json) says why and how to fix it; `flush` refuses in one line."""
    info = status_json(env)
    assert why in info["spool_refused"] and info["spool_fix"], info
    human = vt("status", env=env)
    assert human.returncode == 0 and why in human.stdout and "fix:" in human.stdout
    assert "nothing is recorded or sent" in human.stdout
    flushed = vt("flush", env=env)
    assert flushed.returncode == 1 and why in flushed.stderr
    assert len(flushed.stderr.strip().splitlines()) == 1, "one line, never a traceback"


@pytest.fixture
def other_users_folder(tmp_path: Path) -> Path:
    """A folder of another user's, open to all (as `/tmp/x` made by someone else may be)."""
    folder = tmp_path / "someone-else"
    folder.mkdir()
    folder.chmod(0o777)
    _give_away(folder)
    return folder


def test_a_spool_folder_another_user_owns_is_refused(env, home, project, collector):
    visivo = home / ".visivo"
    visivo.mkdir()
    visivo.chmod(0o777)
    _give_away(visivo)

    result, _ = run_host(host_code("run", ["--x"]), env, cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sender_pids(home) == [], "no sender started"
    assert list(visivo.iterdir()) == [], "nothing recorded there"
    assert _mode(visivo) == 0o777, "another user's folder is never changed"
    _assert_refused(env, home, "belongs to another user")
    assert list(visivo.iterdir()) == [] and collector.events() == []


def test_a_link_to_another_users_folder_is_refused_and_its_settings_never_count(
    home, project, collector, other_users_folder, tmp_path
):
    """Found: `~/.visivo` a link to a folder another user owns; the spool was made there and
    that user's `config.yml` `posthog_host` received the events."""
    with Collector(tmp_path / "theirs.db") as theirs:
        config = other_users_folder / "config.yml"
        config.write_text(f"posthog_host: {theirs.url}\n")
        _give_away(config)
        (home / ".visivo").symlink_to(other_users_folder)
        env = clean_env(home)
        del env["VISIVO_POSTHOG_HOST"]  # the application's host, unless the user's file says
        code = host_code("run", ["--x"], host=collector.url)

        for _ in range(2):
            result, _ = run_host(code, env, cwd=project)
            assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert sender_pids(home) == []
        assert sorted(p.name for p in other_users_folder.iterdir()) == ["config.yml"]
        _assert_refused(env, home, "a link to a folder of another user")
        assert sorted(p.name for p in other_users_folder.iterdir()) == ["config.yml"]
        assert theirs.requests() == [] and collector.events() == []


def test_an_opt_out_in_another_users_folder_still_opts_out(home, project, other_users_folder):
    """Refusing a folder never turns telemetry on: its opt-out is read whoever owns it."""
    config = other_users_folder / "config.yml"
    config.write_text("telemetry_enabled: false\n")
    _give_away(config)
    (home / ".visivo").symlink_to(other_users_folder)
    env = clean_env(home)

    info = status_json(env)

    assert (info["enabled"], info["decided_by"]) == (False, "global")


@pytest.mark.parametrize("command", ["purge", "disable", "opted-out host"])
def test_an_opt_out_never_deletes_or_writes_through_a_link_to_another_users_folder(
    env, home, project, other_users_folder, command
):
    seed_spool(home, 3)  # their spool, in their folder, reached through the link
    for path in (home / ".visivo").iterdir():
        path.rename(other_users_folder / path.name)
    (home / ".visivo").rmdir()
    _give_away(*other_users_folder.iterdir())
    (home / ".visivo").symlink_to(other_users_folder)
    before = _digest(other_users_folder)

    if command == "opted-out host":
        result, _ = run_host(host_code(), {**env, "VISIVO_TELEMETRY_DISABLED": "1"}, cwd=project)
        assert (result.returncode, result.stderr) == (0, "")
    else:
        result = vt(command, env=env)
        assert "Traceback" not in result.stderr
        assert result.returncode == 1 and "a link to a folder of another user" in result.stderr

    assert _digest(other_users_folder) == before
    assert spool_count(home) == 3


def test_a_sender_started_anyway_never_drains_another_users_folder(
    home, other_users_folder, tmp_path
):
    """A sender that some other process started (an older version's host, say) checks too."""
    with Collector(tmp_path / "theirs.db") as theirs:
        seed_spool(home, 3)
        for path in (home / ".visivo").iterdir():
            path.rename(other_users_folder / path.name)
        (home / ".visivo").rmdir()
        (other_users_folder / "config.yml").write_text(f"posthog_host: {theirs.url}\n")
        _give_away(*other_users_folder.iterdir())
        (home / ".visivo").symlink_to(other_users_folder)
        before = _digest(other_users_folder)
        env = clean_env(home)
        del env["VISIVO_POSTHOG_HOST"]

        assert start_sender(env).wait(timeout=60) == 0

        assert _digest(other_users_folder) == before
        assert theirs.requests() == []


def test_a_link_to_the_users_own_private_folder_is_used(env, home, project, collector, tmp_path):
    """`~/.visivo` linked into the user's dotfiles: theirs, so it holds the spool."""
    dotfiles = tmp_path / "dotfiles-visivo"
    dotfiles.mkdir(mode=0o700)
    (home / ".visivo").symlink_to(dotfiles)

    result, _ = run_host(host_code("run", ["--x"]), env, cwd=project)

    assert (result.returncode, result.stderr) == (0, "")
    [event] = collector.wait_for_events(1, timeout=30)
    assert event["properties"]["command_args"] == ["--x"]
    assert status_json(env)["spool_refused"] is None


def test_a_link_to_a_folder_others_can_write_is_refused(env, home, project, tmp_path):
    shared = tmp_path / "shared-visivo"
    shared.mkdir()
    shared.chmod(0o775)
    (home / ".visivo").symlink_to(shared)

    result, _ = run_host(host_code(), env, cwd=project)

    assert (result.returncode, result.stderr) == (0, "")
    assert list(shared.iterdir()) == [] and _mode(shared) == 0o775, "never repaired through a link"
    assert "which others can write" in status_json(env)["spool_refused"]


def test_what_the_user_owns_is_made_private_by_one_command(home, project):
    """Found: an existing `~/.visivo` of mode 0777 stayed 0777 although the README says 0700."""
    seed_spool(home, 1)
    visivo = home / ".visivo"
    env = clean_env(home)  # nothing listens: the events stay to be counted
    reader = sqlite3.connect(spool_path(home), isolation_level=None)  # keeps -wal and -shm
    reader.execute("INSERT INTO state (key, value) VALUES ('held', '1')")
    lock = visivo / "telemetry.lock"
    lock.touch()
    files = [spool_path(home), visivo / "telemetry.db-wal", visivo / "telemetry.db-shm", lock]
    try:
        assert all(f.exists() for f in files)
        visivo.chmod(0o777)
        for f in files:
            f.chmod(0o666)

        result, _ = run_host(host_code(), env, cwd=project)

        assert (result.returncode, result.stderr) == (0, "")
        assert _mode(visivo) == 0o700
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        reader.close()
    assert spool_count(home) == 2, "the command's event recorded beside the first"


@pytest.mark.parametrize("name", ["telemetry.db", "telemetry.db-wal", "telemetry.db-shm"])
def test_a_spool_file_another_user_owns_is_never_written_into(env, home, project, name):
    """Found: a `telemetry.db` of another uid with mode 0666 was written into."""
    seed_spool(home, 2)
    foreign = home / ".visivo" / name
    foreign.touch()
    foreign.chmod(0o666)
    _give_away(foreign)
    before = _digest(home / ".visivo")

    result, _ = run_host(host_code("run", ["--x"]), env, cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sender_pids(home) == []
    assert _digest(home / ".visivo") == before, "not written into, nothing added beside it"
    assert _mode(foreign) == 0o666 and os.lstat(foreign).st_uid == NOBODY
    _assert_refused(env, home, "belongs to another user")


def test_a_config_file_another_user_owns_never_says_where_events_go(
    home, project, collector, tmp_path
):
    """In the user's own folder, a `config.yml` of another uid (a `sudo` run wrote it, or
    someone swapped it) gives no `posthog_host`: events go where the application said."""
    with Collector(tmp_path / "theirs.db") as theirs:
        visivo = home / ".visivo"
        visivo.mkdir(mode=0o700)
        config = visivo / "config.yml"
        config.write_text(f"posthog_host: {theirs.url}\nposthog_api_key: phc_theirs\n")
        _give_away(config)
        env = clean_env(home)
        del env["VISIVO_POSTHOG_HOST"]

        result, _ = run_host(host_code("run", ["--x"], host=collector.url), env, cwd=project)

        assert (result.returncode, result.stderr) == (0, "")
        [event] = collector.wait_for_events(1, timeout=30)
        assert event["properties"]["command_args"] == ["--x"]
        info = json.loads(vt("status", "--json", env=env).stdout)
        assert info["destination"] == collector.url + "/batch/"
        assert theirs.requests() == []
