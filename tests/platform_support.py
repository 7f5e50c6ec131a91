"""Other platforms' missing facilities, removed from real Linux processes.

`hidden_site(folder, *removals)` writes a `sitecustomize.py` into `folder`; with `folder` on
`PYTHONPATH`, every Python process that inherits the environment (the host, and the sender the
host starts, which runs `python -c` without `-S`/`-I`) imports it at startup and loses what
`removals` name before any of our code runs. It also leaves a line in `folder/processes` per
process (`sender` or `other`, and what was missing), so a test can check it ran in the sender.

What Windows truly lacks and can be removed here without breaking the interpreter:
`os.posix_spawn*`, `os.getpriority`/`os.setpriority`/`os.nice`, `os.setsid` and friends,
`os.fork`/`os.register_at_fork`, `os.O_NOFOLLOW`, SIGALRM and every timer and signal-mask
function, and the `fcntl`, `pwd`, `grp`, `termios`, `resource` and `syslog` modules.

What cannot be removed: `sys.platform` stays `linux` and `os.name` `posix` (faking them makes
`subprocess` import `_winapi`), so `os.uname`, `_posixsubprocess` and `select` stay, and no
Windows-only code (`creationflags`, `sys.getwindowsversion`, `msvcrt`) runs for real. Those are
checked by unit tests of the functions that build their inputs, and `msvcrt` by a stand-in
(`msvcrt_on_flock`) whose `locking` is the real `flock` filelock takes here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

REMOVALS = {
    "posix_spawn": """
        for name in ("posix_spawn", "posix_spawnp", "POSIX_SPAWN_OPEN", "POSIX_SPAWN_CLOSE",
                     "POSIX_SPAWN_DUP2"):
            _drop(os, name)
    """,
    # What macOS before 10.15 and glibc before 2.26 do: CPython's posix_spawn exists but
    # refuses `setsid=True` with this NotImplementedError, before starting anything.
    "posix_spawn_setsid": """
        _real_posix_spawn = os.posix_spawn

        def posix_spawn(path, argv, env, *args, setsid=False, **kwargs):
            if setsid:
                raise NotImplementedError("posix_spawn: setsid unavailable on this platform")
            return _real_posix_spawn(path, argv, env, *args, **kwargs)

        os.posix_spawn = posix_spawn
        _missing.append("posix_spawn_setsid")
    """,
    "priority": """
        for name in ("getpriority", "setpriority", "nice", "PRIO_PROCESS", "PRIO_PGRP",
                     "PRIO_USER"):
            _drop(os, name)
    """,
    "sessions": """
        for name in ("setsid", "getsid", "setpgid", "setpgrp", "killpg"):
            _drop(os, name)
    """,
    "fork": """
        for name in ("fork", "forkpty", "register_at_fork"):
            _drop(os, name)
    """,
    "nofollow": """
        _drop(os, "O_NOFOLLOW")
    """,
    "sigalrm": """
        for name in ("alarm", "setitimer", "getitimer", "ITIMER_REAL", "ITIMER_VIRTUAL",
                     "ITIMER_PROF", "SIGALRM", "pthread_sigmask", "pthread_kill", "sigwait",
                     "sigpending", "sigtimedwait", "sigwaitinfo", "siginterrupt", "SIG_BLOCK",
                     "SIG_UNBLOCK", "SIG_SETMASK"):
            _drop(signal, name)
    """,
    # A stand-in for Windows' msvcrt.locking, on the flock that filelock takes on Linux (so
    # it must be set up before `fcntl` is removed). Same contract: LK_NBLCK on a held lock
    # raises OSError(EACCES); LK_UNLCK lets go.
    "msvcrt_on_flock": """
        import errno as _errno
        import fcntl as _fcntl
        import types as _types

        _msvcrt = _types.ModuleType("msvcrt")
        _msvcrt.LK_UNLCK, _msvcrt.LK_LOCK, _msvcrt.LK_NBLCK = 0, 1, 2
        _msvcrt.LK_RLCK, _msvcrt.LK_NBRLCK = 3, 4

        def _locking(fd, mode, nbytes):
            if mode in (_msvcrt.LK_NBLCK, _msvcrt.LK_NBRLCK):
                try:
                    _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                except BlockingIOError:
                    raise PermissionError(_errno.EACCES, "Permission denied") from None
            elif mode == _msvcrt.LK_UNLCK:
                _fcntl.flock(fd, _fcntl.LOCK_UN)
            else:
                raise ValueError(mode)

        _msvcrt.locking = _locking
        sys.modules["msvcrt"] = _msvcrt
        _missing.append("msvcrt_on_flock")
    """,
    "fcntl": """
        sys.modules["fcntl"] = None
        _missing.append("fcntl")
    """,
    "posix_modules": """
        for name in ("pwd", "grp", "termios", "resource", "syslog"):
            sys.modules[name] = None
        _missing.append("posix_modules")
    """,
}

WINDOWS_LIKE = (
    "posix_spawn",
    "priority",
    "sessions",
    "fork",
    "nofollow",
    "sigalrm",
    "fcntl",
    "posix_modules",
)
"""Everything Windows lacks that can be removed from a working Linux interpreter."""

_PROLOGUE = """
import os
import signal
import sys

_missing = []


def _drop(module, name):
    if hasattr(module, name):
        delattr(module, name)
        _missing.append(name)

"""

_EPILOGUE = """
try:
    with open("/proc/self/cmdline", "rb") as _cmdline:
        _kind = "sender" if b"visivo_telemetry._sender" in _cmdline.read() else "other"
    with open({log!r}, "a") as _log:
        _log.write(f"{{os.getpid()}} {{_kind}} {{' '.join(_missing)}}\\n")
except OSError:
    pass
"""


def hidden_site(folder: Path, *removals: str) -> dict[str, str]:
    """Write the `sitecustomize.py`; the environment entries that put it in force."""
    folder.mkdir(parents=True, exist_ok=True)
    order = [name for name in REMOVALS if name in removals]
    unknown = set(removals) - set(REMOVALS)
    assert not unknown, unknown
    body = "".join(textwrap.dedent(REMOVALS[name]) for name in order)
    log = folder / "processes"
    (folder / "sitecustomize.py").write_text(_PROLOGUE + body + _EPILOGUE.format(log=str(log)))
    return {"PYTHONPATH": str(folder)}


def processes_seen(folder: Path) -> list[tuple[str, set[str]]]:
    """(kind, names removed) of every process that ran the `sitecustomize.py` in `folder`."""
    log = folder / "processes"
    if not log.exists():
        return []
    seen = []
    for line in log.read_text().splitlines():
        _, kind, *names = line.split(" ")
        seen.append((kind, {n for n in names if n}))
    return seen


def proc_stat(pid: int) -> dict[str, int]:
    """A live process's session id and niceness, from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): session is field 6, nice field 19
    return {"session": int(fields[3]), "nice": int(fields[16])}
