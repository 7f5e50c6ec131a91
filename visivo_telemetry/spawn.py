"""Start the detached sender cheaply, and only when no sender is already draining.

`os.posix_spawn` rather than `subprocess`: it costs no import and no fork of a large parent.
The child gets a new session and /dev/null for stdio, so it never holds the user's terminal
and survives the host's exit; the host never waits for it.
"""

from __future__ import annotations

import os
import sys

_LAUNCH = (
    "import sys; sys.path[0] = {root!r}; from visivo_telemetry._sender.run import main; main()"
)


def _library_root() -> str:
    """The folder holding the `visivo_telemetry` package this host imported."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sender_argv() -> list[str]:
    """The sender's command line: this interpreter, importing this very copy of the library.

    `python -c` puts the working directory first on `sys.path`; we put the host's own library
    folder there instead, on every Python: a project folder holding a `sender/` or `httpx.py`
    never runs inside our sender, and the import name is ours alone (`visivo_telemetry._sender`),
    so no `sender/` on `PYTHONPATH` or from PyPI can stand in for it.
    """
    return [sys.executable, "-c", _LAUNCH.format(root=_library_root())]


def sender_alive(lock_path: str) -> bool:
    """Whether a sender holds the lock, probed without importing filelock.

    Taking and dropping the same `flock` that filelock uses tells us for certain whether
    anyone holds it right now. On platforms without `fcntl` we say "no" and let the new
    sender find out (it exits at once when the lock is taken).
    """
    try:
        import fcntl
    except ImportError:
        return False
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


def spawn_sender(extra_env: dict[str, str] | None = None) -> int | None:
    """Start the sender detached; its pid, or None if it could not be started. Never raises."""
    env = dict(os.environ)
    if extra_env:
        env.update(extra_env)
    argv = sender_argv()
    try:
        if hasattr(os, "posix_spawn"):
            devnull = os.devnull
            pid = os.posix_spawn(
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
            yield_cpu(pid)
            return pid
        return _spawn_with_subprocess(argv, env)
    except Exception:
        return None


SENDER_NICENESS = 10
"""Low enough to yield the CPU to the user's next command, high enough never to starve: an
idle-class sender on a busy machine could hold a SQLite lock that hosts wait on."""


def yield_cpu(pid: int) -> None:
    """Lower the new sender's priority at once, so even its imports yield to the user.

    On Linux the new session is also a new scheduling autogroup, which would compete with the
    user's terminal as an equal whatever its tasks' niceness, so the autogroup is lowered too.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, pid, SENDER_NICENESS)
    except (AttributeError, OSError):
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


def _spawn_with_subprocess(argv: list[str], env: dict[str, str]) -> int | None:
    import subprocess

    flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
        subprocess, "DETACHED_PROCESS", 0
    )
    process = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=not flags,
        creationflags=flags,
    )
    return process.pid


def reap(pids: list[int]) -> list[int]:
    """Collect finished children (a long-running host would otherwise keep zombies)."""
    alive = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError, AttributeError):
            continue
        if done == 0:
            alive.append(pid)
    return alive
