"""The code paths that differ on Windows and macOS, run here with Linux's facilities removed.

End to end, real processes: `platform_support.hidden_site` removes from the host *and* from the
sender it starts what Windows lacks (posix_spawn, setpriority, SIGALRM, fcntl, fork…), or only
posix_spawn, or only posix_spawn's `setsid` (old macOS, old glibc). What only runs on Windows
itself (`creationflags`, `sys.getwindowsversion`, `PROCESSOR_ARCHITECTURE`, msvcrt) is checked
through the functions that build those inputs, and msvcrt through a stand-in on flock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import (
    PYTHON,
    clean_env,
    flush,
    host_code,
    run_host,
    sender_pids,
    spool_rows,
    spool_state,
    wait_for_senders_to_exit,
)
from platform_support import WINDOWS_LIKE, hidden_site, proc_stat, processes_seen
from reliability_support import seed_spool, spool_count, start_sender, trickling_receiver

from visivo_telemetry import _events as events
from visivo_telemetry import _schema as schema
from visivo_telemetry import _spawn as spawn
from visivo_telemetry._sender import run

MODES = {
    "windows_like": WINDOWS_LIKE,
    "no_posix_spawn": ("posix_spawn",),
    "posix_spawn_without_setsid": ("posix_spawn_setsid",),
}
LIFETIME_ENV = "VISIVO_TELEMETRY_SENDER_LIFETIME_S"
SHORT_CAP_S = 3.0


@pytest.fixture(params=list(MODES))
def mode(request) -> str:
    return request.param


@pytest.fixture
def site(tmp_path: Path, mode: str) -> tuple[Path, dict[str, str]]:
    """This mode's `sitecustomize.py`: its folder and the environment that puts it in force."""
    folder = tmp_path / "site"
    return folder, hidden_site(folder, *MODES[mode])


def assert_ran_in_a_sender(folder: Path, mode: str) -> None:
    """The removals were in force in at least one real sender process, not only in hosts."""
    senders = [names for kind, names in processes_seen(folder) if kind == "sender"]
    assert senders, f"no sender ran with the {mode} sitecustomize: {processes_seen(folder)}"
    wanted = {"posix_spawn", "getpriority", "SIGALRM", "fcntl"} if mode == "windows_like" else set()
    assert all(wanted <= names for names in senders), senders


# ------------------------------------------------------------------------ end to end, per mode


def test_a_host_that_exits_at_once_still_delivers_its_event_once(
    env, home, project, collector, site, mode
):
    folder, extra = site
    result, _ = run_host(host_code("run", ["--threads", "4"]), {**env, **extra}, cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    received = collector.wait_for_events(1, timeout=30)
    assert [e["properties"]["command"] for e in received] == ["run"]
    assert wait_for_senders_to_exit(home) == []
    assert collector.stats()["events"] == 1 and collector.stats()["duplicates"] == 0
    assert spool_rows(home) == []
    assert_ran_in_a_sender(folder, mode)


def test_back_to_back_hosts_deliver_every_event_once(env, home, project, collector, site, mode):
    folder, extra = site
    for i in range(15):
        result, _ = run_host(host_code("run", [f"--n{i}", "1"]), {**env, **extra}, cwd=project)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), i

    received = collector.wait_for_events(15, timeout=60)
    assert wait_for_senders_to_exit(home) == []
    flags = sorted(e["properties"]["command_args"][0] for e in received)
    assert flags == sorted(f"--n{i}" for i in range(15))
    assert collector.stats()["duplicates"] == 0
    assert spool_rows(home) == []
    assert_ran_in_a_sender(folder, mode)


def test_parallel_hosts_deliver_every_event_once(env, home, project, collector, site, mode):
    _, extra = site

    def one(i: int) -> tuple[int, str, str]:
        result, _ = run_host(host_code("run", [f"--n{i}", "1"]), {**env, **extra}, cwd=project)
        return result.returncode, result.stdout, result.stderr

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(one, range(20)))

    assert outcomes == [(0, "", "")] * 20
    collector.wait_for_events(20, timeout=60)
    assert wait_for_senders_to_exit(home) == []
    if spool_rows(home):  # a batch that met its 1 s timeout under load waits for the next run
        flush({**env, **extra})
    received = collector.events()
    left = [(r["attempts"], r["leased_until"]) for r in spool_rows(home)]
    statuses = [r["status"] for r in collector.requests()]
    # A string, which pytest prints whole: the state's drop counters and last error, and every
    # answer the receiver gave, tell a never-written event from a dropped or rejected one.
    why = f"left={left} state={dict(sorted(spool_state(home).items()))} statuses={statuses}"
    assert len({e["uuid"] for e in received}) == 20, why
    assert collector.stats()["duplicates"] == 0
    assert spool_rows(home) == []


def test_the_popen_that_starts_the_sender_never_warns_on_the_hosts_stderr(
    env, home, project, collector, site, mode
):
    """An abandoned running `Popen` warns (`ResourceWarning: subprocess N is still running`)
    wherever ResourceWarnings are shown: `-X dev`, `-W default`, test runners. Only those
    `subprocess` emits are enabled here: under `-X dev` Python 3.13 also reports the host's
    spool connection left open at exit, which is not this path's doing."""
    _, extra = site
    shown = {**env, **extra, "PYTHONWARNINGS": "always::ResourceWarning:subprocess"}
    result, _ = run_host(host_code("run"), shown, cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert len(collector.wait_for_events(1, timeout=30)) == 1
    assert wait_for_senders_to_exit(home) == []


def test_the_sender_a_fallback_starts_is_detached_and_never_reniced_without_setpriority(
    home, project, tmp_path, site, mode
):
    """While it lives (a receiver that never finishes answering): its own session, and the
    niceness that the platform allows (10 with setpriority, unchanged without)."""
    _, extra = site
    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    with trickling_receiver() as url:
        env = clean_env(home, VISIVO_POSTHOG_HOST=url, **extra, **{LIFETIME_ENV: "5"})
        result, _ = run_host(host_code("run"), env, cwd=project)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        pids = _wait_for_a_sender(home)
        time.sleep(1.0)  # well past its own _lower_priority, well before its cap
        stat = proc_stat(pids[0])
        assert wait_for_senders_to_exit(home, timeout=40) == []

    assert stat["session"] == pids[0], "the sender is not the leader of a new session"
    if mode == "windows_like":
        assert stat["nice"] == own_nice, "niceness changed although setpriority was removed"
    elif own_nice < spawn.SENDER_NICENESS:
        assert stat["nice"] == spawn.SENDER_NICENESS
    assert spool_count(home) == 1, "the event must wait in the spool for a later sender"


def _wait_for_a_sender(home: Path, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = sender_pids(home)
        if pids:
            return pids
        time.sleep(0.02)
    raise AssertionError("no sender started")


# ------------------------------------------------------------- the lifetime cap without SIGALRM


def _sender_against_a_trickle(home: Path, extra: dict[str, str]) -> tuple[int, float, dict]:
    """A sender whose request never completes: its exit code, how long it lived, its stat."""
    seed_spool(home, 5)
    with trickling_receiver() as url:
        env = clean_env(home, VISIVO_POSTHOG_HOST=url, **extra, **{LIFETIME_ENV: str(SHORT_CAP_S)})
        started = time.monotonic()
        sender = start_sender(env)
        try:
            time.sleep(1.0)
            stat = proc_stat(sender.pid)
            sender.wait(timeout=SHORT_CAP_S * 8)
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
        return sender.returncode, time.monotonic() - started, stat


def test_without_sigalrm_a_watchdog_thread_still_ends_a_stuck_sender(home, tmp_path):
    extra = hidden_site(tmp_path / "site", *WINDOWS_LIKE)

    code, lived, stat = _sender_against_a_trickle(home, extra)

    assert code == 0, f"exit code {code}: the sender did not end by the watchdog"
    assert lived >= SHORT_CAP_S * 0.9, f"ended after {lived:.1f}s, before its cap"
    assert spool_count(home) == 5, "rows are kept when the cap ends a send"
    assert stat["nice"] == os.getpriority(os.PRIO_PROCESS, 0), "setpriority was not removed"
    assert [kind for kind, _ in processes_seen(tmp_path / "site")] == ["sender"]


def test_with_sigalrm_the_shortened_cap_ends_a_stuck_sender_by_the_alarm(home):
    code, lived, _ = _sender_against_a_trickle(home, {})

    assert code == -signal.SIGALRM, f"exit code {code}"
    assert lived >= SHORT_CAP_S * 0.9, f"ended after {lived:.1f}s, before its cap"
    assert spool_count(home) == 5


@pytest.mark.parametrize(
    ("raw", "cap"),
    [
        ("3", 3.0),
        ("2.5", 2.5),
        ("0", 1.0),
        ("-4", 1.0),
        ("100", 30.0),
        ("inf", 30.0),
        ("nan", 30.0),
        ("soon", 30.0),
        ("", 30.0),
        (None, 30.0),
    ],
)
def test_the_lifetime_knob_can_only_shorten_the_cap(monkeypatch, raw, cap):
    if raw is None:
        monkeypatch.delenv(LIFETIME_ENV, raising=False)
    else:
        monkeypatch.setenv(LIFETIME_ENV, raw)
    assert run._lifetime_s() == cap
    assert run.LIFETIME_S == 30


# ---------------------------------------------------------------------- the Windows lock probe


PROBE = textwrap.dedent(
    """
    import sys
    try:
        import fcntl
    except ImportError:
        pass
    else:
        raise SystemExit("fcntl was not removed")
    from visivo_telemetry._spawn import sender_alive
    print(sender_alive(sys.argv[1]))
    """
)
HOLDER = textwrap.dedent(
    """
    import sys
    from filelock import FileLock
    with FileLock(sys.argv[1], timeout=0):
        print("held", flush=True)
        sys.stdin.read()
    """
)


def _probe(lock: Path, extra: dict[str, str]) -> str:
    done = subprocess.run(
        [PYTHON, "-c", PROBE, str(lock)],
        env={**os.environ, **extra},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.strip()


def test_the_msvcrt_probe_sees_a_lock_held_by_filelock_and_never_creates_the_file(tmp_path):
    """Windows' branch of `sender_alive`, with an msvcrt whose `locking` is the real flock."""
    extra = hidden_site(tmp_path / "site", "msvcrt_on_flock", "fcntl")
    lock = tmp_path / "telemetry.lock"

    assert _probe(lock, extra) == "False"
    assert not lock.exists(), "the probe created the lock file"

    holder = subprocess.Popen(
        [PYTHON, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _probe(lock, extra) == "True"
        assert _probe(lock, extra) == "True", "the probe must not keep or steal the lock"
    finally:
        holder.communicate("", timeout=30)
    assert _probe(lock, extra) == "False"


def test_without_fcntl_or_msvcrt_the_probe_answers_no(tmp_path):
    """The safe answer: the new sender finds the lock taken and exits at once."""
    extra = hidden_site(tmp_path / "site", "fcntl")
    lock = tmp_path / "telemetry.lock"
    holder = subprocess.Popen(
        [PYTHON, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _probe(lock, extra) == "False"
    finally:
        holder.communicate("", timeout=30)


# ------------------------------------------------------------------ what is built for Windows


def test_windows_popen_options_detach_hide_the_window_and_lower_the_priority():
    options = spawn.popen_options("win32")
    flags = options["creationflags"]

    assert options["close_fds"] is True
    assert "start_new_session" not in options, "ignored on Windows: say what is meant"
    assert flags & 0x00000008, "DETACHED_PROCESS"
    assert flags & 0x00000200, "CREATE_NEW_PROCESS_GROUP"
    assert flags & 0x08000000, "CREATE_NO_WINDOW"
    assert flags & 0x00004000, "BELOW_NORMAL_PRIORITY_CLASS"
    assert flags & 0x01000000, "CREATE_BREAKAWAY_FROM_JOB"
    assert flags == 0x08000000 | 0x01000000 | 0x00004000 | 0x00000200 | 0x00000008
    without = spawn.popen_options("win32", breakaway=False)["creationflags"]
    assert without == flags & ~0x01000000
    for name in (
        "DETACHED_PROCESS",
        "CREATE_NEW_PROCESS_GROUP",
        "CREATE_NO_WINDOW",
        "BELOW_NORMAL_PRIORITY_CLASS",
        "CREATE_BREAKAWAY_FROM_JOB",
    ):
        if hasattr(subprocess, name):  # on Windows: the same numbers as the stdlib's
            assert getattr(spawn, name) == getattr(subprocess, name), name


@pytest.mark.parametrize("platform", ["linux", "darwin", "freebsd14", "cygwin"])
def test_posix_popen_options_start_a_new_session_and_never_pass_creationflags(platform):
    assert spawn.popen_options(platform) == {"close_fds": True, "start_new_session": True}


def _windows(major: int, minor: int, build: int) -> SimpleNamespace:
    return SimpleNamespace(major=major, minor=minor, build=build)


@pytest.mark.parametrize(
    ("environ", "architecture"),
    [
        ({"PROCESSOR_ARCHITECTURE": "AMD64"}, "x86_64"),
        ({"PROCESSOR_ARCHITECTURE": "EM64T"}, "x86_64"),
        ({"PROCESSOR_ARCHITECTURE": "ARM64"}, "arm64"),
        ({"PROCESSOR_ARCHITECTURE": "x86"}, "x86"),
        ({"PROCESSOR_ARCHITECTURE": "x86", "PROCESSOR_ARCHITEW6432": "AMD64"}, "x86_64"),
        ({"PROCESSOR_ARCHITECTURE": "x86", "PROCESSOR_ARCHITEW6432": "ARM64"}, "arm64"),
        ({"PROCESSOR_ARCHITECTURE": "ARM"}, "arm"),
        ({"PROCESSOR_ARCHITECTURE": "IA64"}, "ia64"),
        ({"PROCESSOR_ARCHITECTURE": "ALPHA"}, "other"),
        ({"PROCESSOR_ARCHITECTURE": "ada-laptop.corp.example"}, "other"),
        ({"PROCESSOR_ARCHITECTURE": ""}, "other"),
        ({}, "other"),
    ],
)
def test_windows_platform_metadata(environ, architecture):
    found = events._platform("win32", environ=environ, windows_version=_windows(10, 0, 22631))

    assert found == ("windows", "10.0.22631", architecture)
    _assert_valid(found)


@pytest.mark.parametrize(
    ("system", "release", "machine", "expected"),
    [
        ("darwin", "23.4.0", "arm64", ("darwin", "23.4.0", "arm64")),
        ("darwin", "21.6.0", "x86_64", ("darwin", "21.6.0", "x86_64")),
        ("darwin", "24.0.0", "arm64e", ("darwin", "24.0.0", "arm64")),
        ("linux", "6.1.0-18-amd64", "x86_64", ("linux", "6.1.0", "x86_64")),
        (
            "linux",
            "5.15.153.1-microsoft-standard-WSL2",
            "x86_64",
            ("linux", "5.15.153.1", "x86_64"),
        ),
        ("linux", "6.1.21-v8+", "aarch64", ("linux", "6.1.21", "arm64")),
        ("linux", "6.6.0+ada-laptop", "armv7l", ("linux", "6.6.0", "arm")),
        ("linux", "4.19.0", "i686", ("linux", "4.19.0", "x86")),
        ("linux", "ada-laptop", "mystery-cpu", ("linux", "unknown", "other")),
        ("freebsd14", "14.0-RELEASE-p6", "amd64", ("other", "14.0", "x86_64")),
    ],
)
def test_posix_platform_metadata(system, release, machine, expected):
    uname = SimpleNamespace(sysname="x", nodename="ada-laptop", release=release, machine=machine)

    found = events._platform(system, uname=uname)

    assert found == expected
    _assert_valid(found)


def test_every_architecture_maps_to_itself_and_passes_the_allowlist():
    for value in set(events._ARCHITECTURES.values()) | {"other"}:
        assert events._ARCHITECTURES.get(value, value) == value
        assert schema.check_property("architecture", value), value


def test_this_machine_reports_known_values():
    name, release, architecture = events._platform()
    assert name == {"linux": "linux", "darwin": "darwin", "win32": "windows"}.get(
        sys.platform, "other"
    )
    assert release[0].isdigit() and architecture in set(events._ARCHITECTURES.values())


def _assert_valid(found: tuple[str, str, str]) -> None:
    for key, value in zip(("platform", "platform_version", "architecture"), found, strict=True):
        assert schema.check_property(key, value), (key, value)
