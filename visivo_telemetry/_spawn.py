"""Start the detached sender cheaply, and only when no sender is already draining.

Three ways to start it, chosen by what the platform offers (each is tested on Linux with the
others' facilities removed, see `tests/test_platform_fallbacks.py`):

- POSIX with `os.posix_spawn` and its `setsid` (Linux, macOS ≥ 10.15): no import, no fork of a
  large parent. The child gets a new session and /dev/null for stdio, so it never holds the
  user's terminal and survives the host's exit; the host never waits for it.
- POSIX without `os.posix_spawn`, or whose `posix_spawn` cannot `setsid` (it raises
  `NotImplementedError` before starting anything: macOS before 10.15, glibc before 2.26):
  `subprocess.Popen(start_new_session=True)`, same stdio, same detachment.
- Windows (no `posix_spawn`): `subprocess.Popen` with `creationflags` from `popen_options`.

`subprocess` is imported only on the last two paths, never on Linux or macOS with posix_spawn.

Frozen apps (PyInstaller): `sys.executable` is the app, not a Python interpreter, so there is
no `python -c`. The host starts `[sys.executable]` (no argument the app could parse) the same
three ways, with `SENDER_ENV` set, and the app's entry point calls `run_sender_if_requested()`
first thing: in that process it runs the sender and exits before any of the app runs. Two
rules keep a wrongly wired build from looping or losing a user's command:

- A frozen process whose entry point never called the hook never starts a sender (the child
  would run the app itself with no arguments: print help, record `help`, start another). Its
  events wait in the spool for a process that can send.
- A process that finds the marker in its environment removes it (so nothing it starts inherits
  it) and never starts a sender itself; it becomes the sender only when it was started the way
  the host starts one: frozen, argv exactly `[executable]`, the marker a host's pid. A marker
  leaked into a user's command (`visivo run ...`) is dropped and the command runs as usual.

The sender outlives its host, so it is started as an independent instance of the app
(`INDEPENDENT_INSTANCE`), never as a worker sharing the host's unpacked files.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LAUNCH = (
    "import sys; sys.path[0] = {root!r}; from visivo_telemetry._sender.run import main; main()"
)

# Win32 process-creation flags (winbase.h). `subprocess` defines them only on Windows; the
# values are fixed by the Windows API, so `popen_options("win32")` can be checked anywhere.
DETACHED_PROCESS = 0x00000008
"""No console at all: closing the user's terminal, or Ctrl+C in it, never reaches the sender."""
CREATE_NEW_PROCESS_GROUP = 0x00000200
"""Its own process group: console control events sent to the host's group skip the sender."""
CREATE_NO_WINDOW = 0x08000000
"""Never flash a console window. Redundant next to DETACHED_PROCESS (Windows then ignores it),
kept so that dropping DETACHED_PROCESS one day cannot open a window."""
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000
"""Windows has no niceness (`os.setpriority`): this priority class is what `nice 10` is on POSIX,
set at creation so even the sender's imports yield to the user's next command."""
CREATE_BREAKAWAY_FROM_JOB = 0x01000000
"""Leave the host's job object, if any: a job closed with KILL_ON_JOB_CLOSE (an SSH session,
some CI runners and IDE terminals) would otherwise kill the sender with the host. A job that
forbids breakaway makes CreateProcess fail; `spawn_sender` then starts it without this flag."""


def _library_root() -> str:
    """The folder holding the `visivo_telemetry` package this host imported."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sender_argv() -> list[str]:
    """The sender's command line: this interpreter, importing this very copy of the library.

    `python -c` puts the working directory first on `sys.path`; we put the host's own library
    folder there instead, on every Python: a project folder holding a `sender/` or `httpx.py`
    never runs inside our sender, and the import name is ours alone (`visivo_telemetry._sender`),
    so no `sender/` on `PYTHONPATH` or from PyPI can stand in for it.

    A frozen app has no interpreter to give `-c` to: its own binary, with no argument at all,
    is the sender (`run_sender_if_requested` recognises it by the marker).
    """
    if is_frozen():
        return [sys.executable]
    return [sys.executable, "-c", _LAUNCH.format(root=_library_root())]


def doorbell_path(lock_path: str) -> str:
    """The FIFO beside the lock that a lingering sender listens on (`telemetry.wake`)."""
    return os.path.splitext(lock_path)[0] + ".wake"


def ring_sender(lock_path: str) -> None:
    """Tell the sender that holds the lock, lingering for more events, that ours wait: one
    byte into its FIFO, never blocking, so it drains them at once instead of at its next look.

    Nothing happens when no sender listens (no FIFO, or no reader: it is still draining and
    looks once more before it lingers), on Windows (no FIFOs: the sender looks by itself), or
    when the path is not a FIFO (a link is never followed, a file never written).
    """
    if not hasattr(os, "mkfifo"):
        return
    flags = os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(doorbell_path(lock_path), flags)
    except OSError:
        return
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, b"\0")
    except OSError:
        pass  # full: it has been rung already
    finally:
        os.close(fd)


def sender_alive(lock_path: str) -> bool:
    """Whether a sender holds the lock, probed without importing filelock.

    A "yes" must be certain (the host then starts no sender and relies on the holder's last
    look at the spool); a "no" is always safe (the new sender finds the lock taken and exits).

    - With `fcntl` (Linux, macOS): take and drop the same `flock` that filelock's
      `UnixFileLock` takes.
    - With `msvcrt` instead (Windows): filelock's `WindowsFileLock` locks byte 0, length 1, of
      the lock file (`LockFileEx` in filelock 4, `msvcrt.locking` in 3.x); `msvcrt.locking`
      of that byte conflicts with either, see `_held_on_windows`.
    - With neither: "no".
    """
    try:
        import fcntl
    except ImportError:
        return _held_on_windows(lock_path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _held_on_windows(lock_path: str) -> bool:
    """The `msvcrt` probe: lock byte 0 without waiting, and let go at once.

    The file is opened without `O_CREAT`: filelock creates it before locking (and deletes it
    after, unless someone has it open), so no file means no holder, and the probe never leaves
    a file behind. `os.open` shares read and write, as filelock's own open does, so neither
    open can fail because of the other. Only `EACCES` (the documented answer of
    `_locking(LK_NBLCK)` for a region another handle holds) means "held"; any other failure
    means "no", the safe answer.
    """
    try:
        import msvcrt
    except ImportError:
        return False
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as error:
            import errno

            return error.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EACCES))
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
        return False
    finally:
        os.close(fd)


def spawn_sender(extra_env: dict[str, str] | None = None) -> int | None:
    """Start the sender detached; its pid, or None if it could not be started. Never raises.

    A frozen app whose entry point does not call `run_sender_if_requested` (or that was itself
    started with the marker) starts none: its events wait in the spool.
    """
    env = dict(os.environ)
    env.pop(SENDER_ENV, None)
    if extra_env:
        env.update(extra_env)
    if is_frozen():
        env = sender_environment(env)
        if env is None:
            return None
    argv = sender_argv()
    try:
        if hasattr(os, "posix_spawn"):
            try:
                pid = _posix_spawn(argv, env)
            except NotImplementedError:
                pass  # no `setsid` here; nothing was started: fall back to subprocess
            else:
                yield_cpu(pid)
                return pid
        return _spawn_with_subprocess(argv, env)
    except Exception:
        return None


def _posix_spawn(argv: list[str], env: dict[str, str]) -> int:
    devnull = os.devnull
    return os.posix_spawn(
        argv[0],
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, devnull, os.O_WRONLY, 0),
        ],
        setsid=True,
    )


SENDER_NICENESS = 10
"""Low enough to yield the CPU to the user's next command, high enough never to starve: an
idle-class sender on a busy machine could hold a SQLite lock that hosts wait on."""


def yield_cpu(pid: int) -> None:
    """Lower the new sender's priority at once, so even its imports yield to the user.

    On Linux the new session is also a new scheduling autogroup, which would compete with the
    user's terminal as an equal whatever its tasks' niceness, so the autogroup is lowered too.
    Where there is no `os.setpriority` (Windows) this does nothing: there the priority class
    is set when the process is created (`BELOW_NORMAL_PRIORITY_CLASS`).
    """
    setpriority = getattr(os, "setpriority", None)
    if setpriority is not None:
        try:
            setpriority(os.PRIO_PROCESS, pid, SENDER_NICENESS)
        except OSError:
            pass
    try:
        fd = os.open(f"/proc/{pid}/autogroup", os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, str(SENDER_NICENESS).encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def popen_options(platform: str = sys.platform, *, breakaway: bool = True) -> dict[str, Any]:
    """`subprocess.Popen` keyword arguments that start the sender detached on `platform`.

    Besides stdio (added by the caller): `close_fds` everywhere (no handle of the host's is
    inherited); on Windows the creation flags above, `breakaway` adding
    `CREATE_BREAKAWAY_FROM_JOB`; elsewhere a new session. (`creationflags` is refused off
    Windows and `start_new_session` ignored on it, so each platform gets only its own.)
    """
    if platform == "win32":
        flags = (
            DETACHED_PROCESS
            | CREATE_NEW_PROCESS_GROUP
            | CREATE_NO_WINDOW
            | BELOW_NORMAL_PRIORITY_CLASS
        )
        if breakaway:
            flags |= CREATE_BREAKAWAY_FROM_JOB
        return {"close_fds": True, "creationflags": flags}
    return {"close_fds": True, "start_new_session": True}


def _spawn_with_subprocess(argv: list[str], env: dict[str, str]) -> int:
    """The sender started by `subprocess`: Windows, or a POSIX without a usable posix_spawn."""
    import subprocess

    stdio = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    if sys.platform == "win32":
        try:
            process = subprocess.Popen(argv, env=env, **stdio, **popen_options("win32"))
        except OSError:  # the host's job object forbids breakaway
            process = subprocess.Popen(
                argv, env=env, **stdio, **popen_options("win32", breakaway=False)
            )
    else:
        process = subprocess.Popen(argv, env=env, **stdio, **popen_options(sys.platform))
        yield_cpu(process.pid)
    _disown(process)
    return process.pid


def _disown(process: Any) -> None:
    """Never wait for the sender, and never be warned for it.

    `Popen.__del__` of a child still running emits `ResourceWarning: subprocess N is still
    running`, which `-X dev`, `-W default` or a test runner prints on the host's stderr. Marked
    finished, the object lets go quietly; on POSIX `reap()` collects the child by its pid, as it
    does a posix_spawn child, and on Windows there is no zombie to collect.
    """
    process.returncode = 0


def reap(pids: list[int]) -> list[int]:
    """Collect finished children (a long-running host would otherwise keep zombies).

    Windows has no zombies and no `os.WNOHANG`: there the list simply empties.
    """
    alive = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError, AttributeError):
            continue
        if done == 0:
            alive.append(pid)
    return alive


# Frozen apps: the host's half is in `spawn_sender`, the sender's half is the hook below.

SENDER_ENV = "VISIVO_TELEMETRY_SENDER"
"""Set by the host in the sender's environment only: the pid of the host that started it."""

INDEPENDENT_INSTANCE = {"PYINSTALLER_RESET_ENVIRONMENT": "1"}
"""PyInstaller 6.9+ lets a process started from `sys.executable` reuse its parent's unpacked
files, which a onefile app deletes as it exits; the sender outlives its host, so it must unpack
its own (PyInstaller's documented switch; older versions do so anyway, other freezers ignore it)."""

_hook_called = False
_marker_seen = False


def run_sender_if_requested() -> None:
    """Call first thing in a frozen app's entry point: runs the sender and exits when this
    process was started as one; otherwise returns at once (an environment lookup)."""
    global _hook_called, _marker_seen
    _hook_called = True
    if SENDER_ENV not in os.environ:
        return
    marker = os.environ.pop(SENDER_ENV)
    _marker_seen = True
    if is_frozen() and len(sys.argv) == 1 and marker.isascii() and marker.isdigit():
        _run_sender_and_exit()


def is_frozen() -> bool:
    """Whether this process is a frozen app (PyInstaller, cx_Freeze, py2exe set `sys.frozen`)."""
    return bool(getattr(sys, "frozen", False))


def sender_environment(env: dict[str, str]) -> dict[str, str] | None:
    """`env` completed for a sender this frozen process starts from its own binary; None when
    it must not start one (its entry point never called the hook, or it was itself started
    with a marker)."""
    if not _hook_called or _marker_seen or not sys.executable:
        return None
    return {**env, **INDEPENDENT_INSTANCE, SENDER_ENV: str(os.getpid())}


def _run_sender_and_exit() -> None:
    """The sender's main in this process, then exit without returning to the app.

    `os._exit`, not `sys.exit`: no `except SystemExit` or `finally` of the app's can resume it.
    The sender's stdio is /dev/null and its main closes what it opened, so nothing is lost.
    """
    code = 1
    try:
        from ._sender.run import main

        main()
        code = 0
    finally:
        os._exit(code)
