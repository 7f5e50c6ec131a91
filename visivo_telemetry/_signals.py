"""Let telemetry write its last events when SIGTERM or SIGINT ends a process, which then ends
exactly as it would have without us.

A default SIGTERM (`SIG_DFL`) kills the process outright: no `atexit`, no `with` block's exit,
so a command's `cli_command` and a server's last request counts would be lost. Where the
handler is `SIG_DFL`, we install one that runs the registered callbacks (newest first, told
`fatal=True`), puts `SIG_DFL` back and sends the signal again: the process dies by the same
signal, with the same status (-15, or 143 in a shell). A second signal during that goes straight
to `SIG_DFL`.

SIGINT normally has Python's own handler, which raises `KeyboardInterrupt`: we chain to it (the
callbacks are told `fatal=False`, then it raises as before), so a command whose server swallows
the `KeyboardInterrupt` is still known to have been interrupted. Any other handler the host
installed is left alone: it decides what the signal does, and whatever exception or exit it
causes reaches our recorders the ordinary way. Handlers can only be set from the main thread;
elsewhere registering still keeps the callback for a handler installed later. When the last
callback is removed, the original handler is put back.

Python runs a handler only when the main thread returns to the interpreter, so a SIGTERM that
lands while it waits in a long C call (a database driver's query) would wait with it, where the
default action kills at once. While we replace a `SIG_DFL`, a watchdog thread therefore reads the
signal's byte from `signal.set_wakeup_fd` (only when no one else uses it); if the main thread has
not taken the signal within `GRACE_S`, the watchdog runs the callbacks and ends the process by
the same signal itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from ._sinks import spool_idle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    Callback = Callable[[int, bool], None]

LOCK_WAIT_S = 2.0
"""How long the handler waits for the spool lock: the signal may have interrupted this very
thread inside a spool write (the lock is not reentrant); then the callbacks are skipped."""

GRACE_S = 0.5
"""How long a fatal signal waits for the main thread before the watchdog acts in its place."""

TERMINATE = (signal.SIGTERM,)
INTERRUPT_OR_TERMINATE = (signal.SIGTERM, signal.SIGINT)
_callbacks: list[tuple[Callback, tuple[int, ...]]] = []
_originals: dict[int, object] = {}
"""The handler we replaced, per signal we handle now."""
_claim = threading.Lock()
"""Taken by whichever of the main thread and the watchdog handles a fatal signal first."""
_claimed = threading.Event()


class _Watchdog:
    """A thread woken by `signal.set_wakeup_fd` the moment a signal arrives."""

    def __init__(self, previous_fd: int, read_fd: int, write_fd: int) -> None:
        self.previous_fd = previous_fd
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.pid = os.getpid()
        self.stopping = False
        self.thread = threading.Thread(
            target=self.watch, name="visivo-telemetry-signals", daemon=True
        )

    @classmethod
    def start(cls) -> _Watchdog | None:
        """A running watchdog, or None where the wakeup fd is taken or cannot be set."""
        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(write_fd, False)
            previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except (ValueError, OSError, AttributeError):
            os.close(read_fd)
            os.close(write_fd)
            return None
        if previous != -1:
            signal.set_wakeup_fd(previous)
            os.close(read_fd)
            os.close(write_fd)
            return None
        watchdog = cls(previous, read_fd, write_fd)
        watchdog.thread.start()
        return watchdog

    def watch(self) -> None:
        try:
            while not self.stopping:
                data = os.read(self.read_fd, 64)
                if not data:
                    return
                for signum in data:
                    if not self.stopping and _originals.get(signum) is signal.SIG_DFL:
                        self.take_over(signum)
        except OSError:
            pass
        finally:
            os.close(self.read_fd)

    def take_over(self, signum: int) -> None:
        """The main thread has not taken a fatal signal in time: act in its place."""
        if _claimed.wait(GRACE_S) or not _claim.acquire(blocking=False):
            return
        _claimed.set()
        _run_callbacks(signum, True)
        _die_by(signum)

    def stop(self) -> None:
        self.stopping = True
        try:
            current = signal.set_wakeup_fd(self.previous_fd)
            if current != self.write_fd:
                signal.set_wakeup_fd(current)  # someone else's since: leave it theirs
            os.write(self.write_fd, b"\0")
        except (ValueError, OSError):
            pass
        try:
            os.close(self.write_fd)
        except OSError:
            pass


_watchdog: _Watchdog | None = None


def _die_by(signum: int) -> None:
    """End the process by `signum`'s default action from a thread that is not the main one:
    only C's `signal()` can set `SIG_DFL` there (ctypes, loaded only now)."""
    try:
        import ctypes

        ctypes.CDLL(None).signal(signum, ctypes.c_void_p(0))
    except Exception:
        pass
    os.kill(os.getpid(), signum)
    time.sleep(GRACE_S)
    os._exit(128 + signum)


def register(callback: Callback, signums: tuple[int, ...] = INTERRUPT_OR_TERMINATE) -> None:
    """Call `callback(signum, fatal)` when one of `signums` arrives, before it takes effect."""
    _callbacks.append((callback, signums))
    _install(signums)


def unregister(callback: Callback) -> None:
    """Forget `callback`; put back the original handler of a signal no callback waits for."""
    for index, (known, _) in enumerate(_callbacks):
        if known == callback:
            del _callbacks[index]
            break
    else:
        return
    waited = {signum for _, signums in _callbacks for signum in signums}
    _restore([signum for signum in _originals if signum not in waited])


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(signums: tuple[int, ...]) -> None:
    if not _is_main_thread():
        return
    global _watchdog
    for signum in signums:
        if signum in _originals:
            continue
        try:
            current = signal.getsignal(signum)
            if current is signal.SIG_DFL or current is signal.default_int_handler:
                signal.signal(signum, _handle)
                _originals[signum] = current
        except (ValueError, OSError, TypeError):
            pass
    if _watchdog is None and signal.SIG_DFL in _originals.values() and os.name == "posix":
        _watchdog = _Watchdog.start()


def _restore(signums: list[int]) -> None:
    if not _is_main_thread():
        return
    global _watchdog
    for signum in signums:
        original = _originals[signum]
        try:
            if signal.getsignal(signum) is _handle:
                signal.signal(signum, original)  # type: ignore[arg-type]
        except (ValueError, OSError, TypeError):
            pass
        del _originals[signum]
    if _watchdog is not None and signal.SIG_DFL not in _originals.values():
        _watchdog.stop()
        _watchdog = None


def _forget_in_child() -> None:
    """A forked child has no watchdog thread; the pipe it inherited is the parent's."""
    global _watchdog
    if _watchdog is not None:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass
        _watchdog = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _handle(signum: int, frame: FrameType | None) -> None:
    original = _originals.get(signum, signal.SIG_DFL)
    fatal = original is signal.SIG_DFL
    if fatal:
        if not _claim.acquire(blocking=False):
            while True:  # the watchdog is ending the process
                time.sleep(GRACE_S)
        _claimed.set()
        try:
            signal.signal(signum, signal.SIG_DFL)
            _originals.pop(signum, None)
        except (ValueError, OSError):
            pass
    _run_callbacks(signum, fatal)
    if fatal:
        os.kill(os.getpid(), signum)
    elif callable(original):
        original(signum, frame)


def _run_callbacks(signum: int, fatal: bool) -> None:
    if fatal and not spool_idle(LOCK_WAIT_S):
        return
    for callback, signums in reversed(list(_callbacks)):
        if signum in signums:
            try:
                callback(signum, fatal)
            except Exception:
                pass
