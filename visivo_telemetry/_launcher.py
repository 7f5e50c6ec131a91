"""`Launcher`: when this process starts a sender (`_spawn` says how).

A command starts one as it ends, at most once per process, and only when rows wait, the
persisted backoff allows it, no sender started moments ago is about to take the lock, and no
sender holds it. A server (long-running) starts one whenever a batch's worth of events waited
or an interval passed, whichever comes first, and once more as it shuts down. After a fork the
child has started nothing yet, and its parent's children are not its own. A process that showed
the first-run notice starts none at all (`hold`): its events wait for a later command.
"""

from __future__ import annotations

import os
import time

from . import _tuning as tuning
from ._files import home_environment
from ._spawn import reap, ring_sender, sender_alive, spawn_sender

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._sinks import SpoolSink


class Launcher:
    """Starts senders for one spool, on the schedule of a command or of a server."""

    def __init__(self, sink: SpoolSink, long_running: bool) -> None:
        self._sink = sink
        self.long_running = long_running
        self._pid = os.getpid()
        self._spawned = False
        self._children: list[int] = []
        self._since_spawn = 0
        self._last_spawn = 0.0
        self._held = False

    def hold(self) -> None:
        """Start no sender from this process, ever (it showed the first-run notice)."""
        self._held = True

    def command_ended(self) -> None:
        """End of a CLI command: start a sender if events wait, once per process."""
        self._adopt_fork()
        if not self._spawned:
            self._start(respect_backoff=True)

    def recorded(self, count: int) -> None:
        """A server recorded `count` events: start a sender when one is due."""
        if self.long_running:
            self._since_spawn += count
            self.when_due()

    def when_due(self, force: bool = False) -> None:
        """A server: start a sender when a batch is ready or the interval passed (or `force`,
        at shutdown). The backoff is the sender's to respect: it exits at once if it must."""
        due = self._since_spawn >= tuning.SERVER_BATCH_READY or (
            self._since_spawn
            and time.monotonic() - self._last_spawn >= tuning.SERVER_SPAWN_INTERVAL_S
        )
        if force or due:
            self._adopt_fork()
            self._children = reap(self._children)
            self._spawned = False
            self._start(respect_backoff=False)

    def _start(self, respect_backoff: bool) -> None:
        if self._held:
            return
        wanted = self._sink.sender_wanted(respect_backoff)
        if not wanted:
            self._spawned = wanted is None
            return
        # Probe after our rows are committed: a sender that is about to exit re-checks the
        # spool after releasing the lock, so one of us always sees the other's work.
        if sender_alive(self._sink.paths.lock):
            ring_sender(self._sink.paths.lock)
            return
        self._sink.stamp_spawn(time.time())
        pid = spawn_sender(home_environment(self._sink.paths))
        if pid is None:
            self._sink.stamp_spawn(None)
        else:
            self._children.append(pid)
        self._spawned = True
        self._last_spawn = time.monotonic()
        self._since_spawn = 0

    def _adopt_fork(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._spawned = False
            self._children = []
