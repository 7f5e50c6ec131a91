"""Frozen apps (PyInstaller): the app's own binary doubles as the sender.

In a frozen app `sys.executable` is the app, not a Python interpreter, so `python -c ...` cannot
start the sender. Instead the host starts `[sys.executable]` (no argument the app could parse)
with `SENDER_ENV` set, and the app's entry point calls `run_sender_if_requested()` first thing:
in that process it runs the sender and exits before any of the app runs.

Two rules keep a wrongly wired build from looping or losing a user's command:

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
import sys

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
