"""The first-run notice: tell a person at a terminal, once per machine, what is collected.

Remembered as `telemetry_notice_shown: true` in `~/.visivo/config.yml`. Never shown in CI or
when stderr is not a terminal (nobody would read it, and scripts parse stderr). When the answer
cannot be remembered (unwritable home), or the file is unclear about it, it is not shown,
rather than shown on every run.
"""

from __future__ import annotations

import os
import sys

from ._files import ConfigWriteError, Unreadable, write_flag
from ._words import is_set
from ._yaml_scan import read_flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._files import Paths

NOTICE_KEY = "telemetry_notice_shown"

TEXT = """\
Visivo collects anonymous usage data: command names, flag names (never their values),
durations, success or the error's class name, and Visivo/Python/OS versions. No paths,
values, project names, hostnames or user ids. Events wait in {spool} until sent.
See what would be sent: `visivo-telemetry show`. Opt out: `visivo-telemetry disable`
or VISIVO_TELEMETRY_DISABLED=1 (DO_NOT_TRACK=1 works too). This notice is shown once."""


def in_ci(env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """Whether we run under CI (`CI` set to anything but empty, `0` or `false`)."""
    return is_set((os.environ if env is None else env).get("CI"), "CI")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def first_run_notice(enabled: bool, paths: Paths | None) -> str | None:
    """The notice text the first time on this machine at a terminal; None otherwise."""
    if not enabled or paths is None or in_ci() or not _stderr_is_terminal():
        return None
    try:
        if read_flag(paths, NOTICE_KEY):
            return None
    except Unreadable:
        return None
    try:
        write_flag(paths.config, NOTICE_KEY, True)
    except ConfigWriteError:
        return None
    return TEXT.format(spool=paths.db)
