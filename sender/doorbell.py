"""`Doorbell`: the FIFO a lingering sender sleeps on, which hosts ring (`_spawn.ring_sender`).

A lingering sender would otherwise wake every fraction of a second to look for new events:
each wake costs CPU, and a laptop's battery. Blocked in `select` on the FIFO it costs nothing
until a host that found the lock held writes a byte, and it drains that host's event at once.

Only the lock holder listens. The FIFO is made 0600 beside the lock; a path there that is not
a FIFO of the user's own (a file, a link, another user's) is never used: the sender then looks
by itself, as on Windows, which has no FIFOs.
"""

from __future__ import annotations

import os
import select
import stat

from visivo_telemetry._files import user_id
from visivo_telemetry._spawn import doorbell_path


class Doorbell:
    """The reading end of the FIFO, open while this sender lingers."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._at_end = False

    @classmethod
    def open(cls, lock_path: str) -> Doorbell | None:
        """Listen on the FIFO beside `lock_path` (made if absent); None where there can be none."""
        if not hasattr(os, "mkfifo"):
            return None
        path = doorbell_path(lock_path)
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            pass
        except OSError:
            return None
        fd = _open_reader(path)
        return None if fd is None else cls(path, fd)

    @property
    def listening(self) -> bool:
        return self._fd is not None

    def wait(self, timeout_s: float) -> bool:
        """Sleep until a host rings or `timeout_s` pass; whether it rang (or may have)."""
        if self._fd is None:
            return False
        try:
            readable, _, _ = select.select([self._fd], [], [], max(0.0, timeout_s))
            data = os.read(self._fd, 4096) if readable else None
        except (OSError, ValueError):
            data = b""
        if data is None or data:
            self._at_end = False
            return data is not None
        # End of file: every writer closed, and the FIFO stays readable until one opens it
        # again, so the reader is opened afresh. Where a fresh reader is at its end at once
        # too, the doorbell is given up and the sender looks by itself.
        os.close(self._fd)
        self._fd = None if self._at_end else _open_reader(self.path)
        self._at_end = True
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open_reader(path: str) -> int | None:
    """The FIFO at `path` opened for reading without blocking, if it is a FIFO of our own."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        info = None
    uid = user_id()
    if info is None or not stat.S_ISFIFO(info.st_mode) or (uid is not None and info.st_uid != uid):
        os.close(fd)
        return None
    return fd
