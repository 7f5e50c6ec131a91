"""`RequestCounter`: a server's requests, counted off the request thread, for any framework.

The request thread only reads a clock and puts a tuple on a queue. A writer thread turns it
into an endpoint (the integration's `endpoint_of`, which may also say "not recorded") and counts
it in memory under (method, endpoint, status, window); every `FLUSH_S` it hands the counts to
the `Telemetry`, which adds them to the spool in one transaction, so a crash loses at most the
last second. At interpreter exit, and on a SIGTERM that would otherwise kill the process
outright, the queue and the counts are written and the process's windows made sendable before
it ends. Where the sink is synchronous (a test's capture), each request is counted at once in
the caller's thread, so it is there when the response has returned.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

from . import _signals as signals
from . import _tuning as tuning

TYPE_CHECKING = False
if TYPE_CHECKING:
    import queue
    from collections.abc import Callable
    from typing import Any

    from ._pipeline import Pipeline

    Counts = dict[tuple[str, str, int, float], list[float]]

QUEUE_LIMIT = 10_000
"""Requests waiting for the writer; beyond this (spool stuck) new ones are dropped, not held."""
DRAIN_TIMEOUT_S = 5.0
"""At shutdown, wait at most this long for the writer to spool what is queued."""
_STOP = None


class RequestCounter:
    """Counts one server's requests as `api_request` events; made by `Telemetry.request_counter`."""

    def __init__(
        self,
        pipeline: Callable[[], Pipeline],
        endpoint_of: Callable[[Any], str | None],
        window_s: float,
    ) -> None:
        """`pipeline()` is where counts go now (it follows a test's capture); `endpoint_of` runs
        in the writer thread and turns what `submit` was given into an endpoint, or None for a
        request that is not recorded."""
        self._pipeline = pipeline
        self._endpoint_of = endpoint_of
        self.window_s = window_s
        self._queue: queue.Queue[tuple[Any, ...] | None] | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        if pipeline().enabled:
            atexit.register(self.drain)
            signals.register(self._on_sigterm, signals.TERMINATE)

    def submit(self, method: str, status: int, duration_ms: float, where: object) -> None:
        """Called in the request thread: hand one finished request over, never block."""
        try:
            pipeline = self._pipeline()
            if not pipeline.enabled:
                return
            if pipeline.sink.synchronous:
                counts: Counts = {}
                self._count(counts, (method, status, duration_ms, where))
                self._flush(counts)
                return
            if self._pid != os.getpid():
                self._start()
            self._queue.put_nowait((method, status, duration_ms, where))  # type: ignore[union-attr]
        except Exception:
            pass

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Spool everything queued, stop the writer, and start a sender for what waits."""
        with self._start_lock:
            thread, pending = self._thread, self._queue
            if thread is None or pending is None or self._pid != os.getpid():
                return
            self._thread, self._pid = None, 0
        try:
            pending.put(_STOP, timeout=timeout)
        except Exception:
            return
        thread.join(timeout)
        try:
            self._pipeline().when_due(force=True)
        except Exception:
            pass

    def _on_sigterm(self, _signum: int, fatal: bool) -> None:
        if fatal:
            self.drain()

    def _start(self) -> None:
        import queue

        with self._start_lock:
            if self._pid == os.getpid():
                return
            # After a fork (pre-forking servers) the parent's thread does not exist here.
            self._queue = queue.Queue(QUEUE_LIMIT)
            self._thread = threading.Thread(
                target=self._write, args=(self._queue,), name="visivo-telemetry-writer", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def _write(self, pending: queue.Queue[tuple[Any, ...] | None]) -> None:
        import queue

        counts: Counts = {}
        next_flush = time.monotonic() + tuning.FLUSH_S
        while True:
            try:
                item = pending.get(timeout=max(next_flush - time.monotonic(), 0.0))
            except queue.Empty:
                item = ()
            if item is _STOP:
                self._flush(counts, closing=True)
                return
            if item:
                try:
                    self._count(counts, item)
                except Exception:
                    pass
            if time.monotonic() >= next_flush:
                self._flush(counts)
                next_flush = time.monotonic() + tuning.FLUSH_S

    def _count(self, counts: Counts, item: tuple[Any, ...]) -> None:
        """Count one request in its window (in memory until the next flush)."""
        method, status, duration_ms, where = item
        endpoint = self._endpoint_of(where)
        if endpoint is None:
            return
        now = time.time()
        key = (method, endpoint, status, now - now % self.window_s)
        seen = counts.get(key)
        if seen is None:
            counts[key] = [1, duration_ms, now]
        else:
            seen[0] += 1
            seen[1] += duration_ms

    def _flush(self, counts: Counts, closing: bool = False) -> None:
        """Hand the counts over; when closing, the windows may be sent at once."""
        batch = [(*key, int(count), total, first) for key, (count, total, first) in counts.items()]
        counts.clear()
        try:
            pipeline = self._pipeline()
            pipeline.count_requests(batch, None, self.window_s)
            if closing:
                pipeline.close_windows()
            else:
                pipeline.when_due()
        except Exception:
            pass
