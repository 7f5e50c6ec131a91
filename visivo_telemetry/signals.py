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
"""

from __future__ import annotations

import os
import signal
import threading

from . import client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    Callback = Callable[[int, bool], None]

LOCK_WAIT_S = 2.0
"""How long the handler waits for the spool lock: the signal may have interrupted this very
thread inside a spool write (the lock is not reentrant); then the callbacks are skipped."""

TERMINATE = (signal.SIGTERM,)
INTERRUPT_OR_TERMINATE = (signal.SIGTERM, signal.SIGINT)
_callbacks: list[tuple[Callback, tuple[int, ...]]] = []
_originals: dict[int, object] = {}
"""The handler we replaced, per signal we handle now."""


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


def _restore(signums: list[int]) -> None:
    if not _is_main_thread():
        return
    for signum in signums:
        original = _originals[signum]
        try:
            if signal.getsignal(signum) is _handle:
                signal.signal(signum, original)  # type: ignore[arg-type]
        except (ValueError, OSError, TypeError):
            pass
        del _originals[signum]


def _handle(signum: int, frame: FrameType | None) -> None:
    original = _originals.get(signum, signal.SIG_DFL)
    fatal = original is signal.SIG_DFL
    if fatal:
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
    if fatal:
        if not client._SPOOL_LOCK.acquire(timeout=LOCK_WAIT_S):
            return
        client._SPOOL_LOCK.release()
    for callback, signums in reversed(list(_callbacks)):
        if signum in signums:
            try:
                callback(signum, fatal)
            except Exception:
                pass
