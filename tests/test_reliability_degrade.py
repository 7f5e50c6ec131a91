"""Degrade, never break: in each hostile environment a host behaves exactly as without telemetry.

Each case builds the same environment twice, runs the same host in it with telemetry on and with
`VISIVO_TELEMETRY_DISABLED=1`, and compares exit code, stdout and stderr byte for byte.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import Collector, clean_env, spool_rows
from reliability_support import (
    as_ordinary_user,
    assert_no_sender_outlives,
    hold_exclusive_lock,
    run_python,
    seed_spool,
    start_sender,
)

HOST = textwrap.dedent(
    """
    import sys
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=".")
    with t.command("run", ["--threads", "4"]):
        print("compiled 3 charts")
        print("warning: 1 chart is slow", file=sys.stderr)
        sys.exit(3)
    """
)
HOST_SECONDS = 5.0
"""Generous: a locked spool may cost the host its 1 s busy timeout, never more than a few."""

NO_JSON1 = textwrap.dedent(
    """
    import sqlite3

    _connect = sqlite3.connect


    def _deny_json(action, name1, name2, database, trigger):
        if action == sqlite3.SQLITE_FUNCTION and (name2 or "").lower().startswith("json"):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


    def connect(*args, **kwargs):
        conn = _connect(*args, **kwargs)
        conn.set_authorizer(_deny_json)
        return conn


    sqlite3.connect = connect
    """
)


@dataclass
class Setting:
    """One hostile environment: where HOME is, and what the host process runs under."""

    home: Path
    project: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    preexec: Callable[[], None] | None = None
    prefix: str = ""


def _base(root: Path) -> Setting:
    home = root / "home"
    project = root / "project"
    home.mkdir(parents=True)
    project.mkdir()
    return Setting(home, project)


def corrupt_spool(root: Path) -> Setting:
    setting = _base(root)
    (setting.home / ".visivo").mkdir(mode=0o700)
    (setting.home / ".visivo" / "telemetry.db").write_bytes(b"this is not sqlite\0" * 500)
    return setting


def missing_home(root: Path) -> Setting:
    setting = _base(root)
    setting.home = root / "no-such-home"
    return setting


def home_is_a_file(root: Path) -> Setting:
    setting = _base(root)
    setting.home = root / "home-file"
    setting.home.write_text("not a directory\n")
    return setting


def read_only_home(root: Path) -> Setting:
    setting = _base(root)
    setting.home.chmod(0o555)
    setting.preexec = as_ordinary_user
    return setting


def read_only_spool(root: Path) -> Setting:
    setting = _base(root)
    seed_spool(setting.home, 3)
    for path in (setting.home / ".visivo").iterdir():
        path.chmod(0o400)
    (setting.home / ".visivo").chmod(0o500)
    setting.preexec = as_ordinary_user
    return setting


def unreadable_config(root: Path) -> Setting:
    setting = _base(root)
    config = setting.home / ".visivo" / "config.yml"
    config.parent.mkdir(mode=0o700)
    config.write_text("telemetry_enabled: true\n")
    config.chmod(0)
    setting.preexec = as_ordinary_user
    return setting


def malformed_config(root: Path) -> Setting:
    setting = _base(root)
    config = setting.home / ".visivo" / "config.yml"
    config.parent.mkdir(mode=0o700)
    config.write_bytes(b"telemetry_enabled: [true\n\xff\xfe: {")
    return setting


def file_size_limit(root: Path) -> Setting:
    """Writes beyond RLIMIT_FSIZE fail (EFBIG): the spool cannot grow at all."""
    setting = _base(root)
    seed_spool(setting.home, 3)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    setting.preexec = limit
    return setting


def no_posix_spawn(root: Path) -> Setting:
    setting = _base(root)
    setting.prefix = "import os\ndel os.posix_spawn\n"
    return setting


def no_json1(root: Path) -> Setting:
    """Any SQL calling a JSON1 function fails, in the host and in the sender it starts."""
    setting = _base(root)
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_JSON1)
    setting.extra_env = {"PYTHONPATH": str(site)}
    return setting


ENVIRONMENTS = [
    corrupt_spool,
    missing_home,
    home_is_a_file,
    read_only_home,
    read_only_spool,
    unreadable_config,
    malformed_config,
    file_size_limit,
    no_posix_spawn,
    no_json1,
]


def run_in(setting: Setting, receiver: Collector, **extra: str) -> subprocess.CompletedProcess:
    env = clean_env(setting.home, VISIVO_POSTHOG_HOST=receiver.url, **setting.extra_env, **extra)
    result, seconds = run_python(
        setting.prefix + HOST, env, cwd=setting.project, preexec=setting.preexec
    )
    assert seconds < HOST_SECONDS, f"host took {seconds:.2f}s"
    return result


def outputs(result: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("make", ENVIRONMENTS, ids=lambda f: f.__name__)
def test_a_hostile_environment_leaves_the_host_exactly_as_without_telemetry(
    tmp_path, collector, make
):
    with_telemetry = make(tmp_path / "on")
    without = make(tmp_path / "off")
    try:
        on = run_in(with_telemetry, collector)
        off = run_in(without, collector, VISIVO_TELEMETRY_DISABLED="1")
        assert_no_sender_outlives(with_telemetry.home)
    finally:
        for setting in (with_telemetry, without):
            restore_permissions(setting.home)
    assert outputs(on) == outputs(off)
    assert off.returncode == 3 and off.stdout == "compiled 3 charts\n"


def restore_permissions(home: Path) -> None:
    """Let pytest clean up what a case made read-only."""
    if home.is_dir():
        for path in [home, *home.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)


def test_a_corrupt_spool_is_moved_aside_and_a_fresh_one_records(tmp_path, collector):
    setting = corrupt_spool(tmp_path)
    original = (setting.home / ".visivo" / "telemetry.db").read_bytes()
    run_in(setting, collector)
    assert_no_sender_outlives(setting.home)
    aside = list((setting.home / ".visivo").glob("telemetry.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == original
    assert collector.wait_for_events(1), "the fresh spool did not record and deliver"


def test_a_missing_home_is_not_created(tmp_path, collector):
    setting = missing_home(tmp_path)
    run_in(setting, collector)
    assert not setting.home.exists()


def test_a_locked_spool_costs_the_host_at_most_its_busy_timeout(tmp_path, collector):
    setting = _base(tmp_path)
    seed_spool(setting.home, 2)
    holder = hold_exclusive_lock(setting.home / ".visivo" / "telemetry.db", seconds=6)
    try:
        on = run_in(setting, collector)
        off = run_in(setting, collector, VISIVO_TELEMETRY_DISABLED="1")
    finally:
        holder.kill()
        holder.wait()
    assert outputs(on) == outputs(off)
    assert_no_sender_outlives(setting.home)


def test_without_posix_spawn_and_without_json1_events_still_arrive(tmp_path, collector):
    for name, make in (("a", no_posix_spawn), ("b", no_json1)):
        setting = make(tmp_path / name)
        run_in(setting, collector)
        assert_no_sender_outlives(setting.home)
    assert len(collector.wait_for_events(2)) == 2


@contextmanager
def tiny_filesystem(path: Path) -> Iterator[None]:
    """A 256 KiB tmpfs at `path` (root only): real ENOSPC, as on a full disk."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(path)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "mounting a tmpfs needs root with CAP_SYS_ADMIN (the unprivileged variant, "
            "test_a_file_size_limit_hit_mid_write_leaves_the_host_exactly_as_without_telemetry, "
            f"still runs): {mounted.stderr.decode().strip()}"
        )
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Write until the filesystem says ENOSPC."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_disk_leaves_the_host_exactly_as_without_telemetry(tmp_path, collector):
    runs = []
    for name, extra in (("on", {}), ("off", {"VISIVO_TELEMETRY_DISABLED": "1"})):
        setting = _base(tmp_path / name)
        with tiny_filesystem(setting.home):
            (setting.home / ".visivo").mkdir(mode=0o700)
            seed_spool(setting.home, 2)
            fill(setting.home)
            runs.append(outputs(run_in(setting, collector, **extra)))
            assert_no_sender_outlives(setting.home)
            (setting.home / "filler").unlink()
            if name == "on":
                assert len(spool_rows(setting.home)) == 2, "the full disk was not full"
    assert runs[0] == runs[1]


def test_a_spool_damaged_inside_is_moved_aside_by_the_sender(home, collector):
    seed_spool(home, 300)
    db = home / ".visivo" / "telemetry.db"
    with open(db, "r+b") as handle:
        handle.seek(4096 * 3)
        handle.write(b"\xff" * 4096 * 4)
    start_sender(clean_env(home, VISIVO_POSTHOG_HOST=collector.url)).wait(timeout=60)
    assert list(db.parent.glob("telemetry.db.corrupt-*")), "the damaged spool was kept"


def fills_up_at(limit: int) -> Callable[[], None]:
    """In the child, before exec: files may not grow past `limit` bytes (RLIMIT_FSIZE, no
    privilege needed) and SIGXFSZ is ignored, so a write past it fails with EFBIG, as a write
    to a full disk fails with ENOSPC, instead of killing the process."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        as_ordinary_user()

    return apply


def test_a_file_size_limit_hit_mid_write_leaves_the_host_exactly_as_without_telemetry(
    tmp_path, collector
):
    """The full disk without root: the spool exists, and the write-ahead log can take its
    header and one page but not the host's whole transaction (it fails part-way, EFBIG)."""
    runs = []
    for name, extra in (("on", {}), ("off", {"VISIVO_TELEMETRY_DISABLED": "1"})):
        setting = _base(tmp_path / name)
        seed_spool(setting.home, 2)
        assert not (setting.home / ".visivo" / "telemetry.db-wal").exists()
        setting.preexec = fills_up_at(32 + 4096 + 24 + 100)
        runs.append(outputs(run_in(setting, collector, **extra)))
        assert_no_sender_outlives(setting.home)
        if name == "on":
            assert len(spool_rows(setting.home)) == 2, "the limit did not stop the write"
    assert runs[0] == runs[1]
    assert runs[1] == (3, "compiled 3 charts\n", "warning: 1 chart is slow\n")
