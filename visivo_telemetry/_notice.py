"""The first-run notice: tell a person at a terminal what is collected, before anything leaves.

Shown once per machine, and once more whenever the set of collected fields changes: the version
shown is remembered as `telemetry_notice_version` in `~/.visivo/config.yml` (beside
`telemetry_notice_shown: true`, which versions before it wrote). The run that shows it starts
no sender (`Pipeline.notice`): its event waits in the spool for a later command, so the user can
opt out before anything is sent. Never shown in CI or when stderr is not a terminal (nobody
would read it, and scripts parse stderr); there nothing changes. When the answer cannot be
remembered (unwritable home), or the file is unclear about it, it is not shown, rather than
shown on every run.
"""

from __future__ import annotations

import os
import sys

from ._files import ConfigWriteError, Unreadable, write_flag
from ._words import is_set, word
from ._yaml_scan import user_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._files import Paths

NOTICE_KEY = "telemetry_notice_shown"
NOTICE_VERSION_KEY = "telemetry_notice_version"
FIRST_VERSIONED = "fields-22c33a2a"
"""The collected fields when the notice got a version (0.2.0): a `telemetry_notice_shown: true`
with no version was shown for exactly these, so it is not shown again until they change."""

TEXT = """\
Visivo collects anonymous usage data: command names, flag names (never their values),
durations, success or the error's class name, and Visivo/Python/OS versions. No paths,
values, project names, hostnames or user ids. Events wait in {spool} until sent;
nothing is sent before your next Visivo command. What was sent stays listed for 30 days:
`visivo-telemetry show --sent`. See what would be sent: `visivo-telemetry show`.
Opt out: `visivo-telemetry disable` or VISIVO_TELEMETRY_DISABLED=1 (DO_NOT_TRACK=1 works too).
This notice is shown once, and again if what is collected changes."""

CHANGED = "What Visivo's telemetry collects has changed since you last saw this notice.\n"


def fields_version() -> str:
    """A name for the set of collected fields (each field, its event and the command that
    carries it), derived from the allowlist: any change to what is collected changes it."""
    import zlib

    from ._schema import PROPERTIES

    fields = sorted(
        f"{carried_by} {name} {command or ''}" for name, carried_by, *_, command in PROPERTIES
    )
    return f"fields-{zlib.crc32(chr(10).join(fields).encode()):08x}"


def in_ci(env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """Whether we run under CI (`CI` set to anything but empty, `0` or `false`)."""
    return is_set((os.environ if env is None else env).get("CI"), "CI")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def shown_version(paths: Paths) -> str | None:
    """The version of the notice this user saw (None: never); raises `Unreadable`."""
    config = user_config(paths, (NOTICE_KEY, NOTICE_VERSION_KEY)) or {}
    version = config.get(NOTICE_VERSION_KEY)
    if isinstance(version, str):
        return version
    return FIRST_VERSIONED if word(config.get(NOTICE_KEY)) is True else None


def first_run_notice(enabled: bool, paths: Paths | None) -> str | None:
    """The notice text when this user has not seen it for today's fields, at a terminal, and
    the fact is remembered; None otherwise."""
    if not enabled or paths is None or in_ci() or not _stderr_is_terminal():
        return None
    try:
        seen = shown_version(paths)
    except Unreadable:
        return None
    current = fields_version()
    if seen == current:
        return None
    try:
        write_flag(paths.config, NOTICE_VERSION_KEY, current)
        write_flag(paths.config, NOTICE_KEY, True)
    except ConfigWriteError:
        return None
    return ("" if seen is None else CHANGED) + TEXT.format(spool=paths.db)
