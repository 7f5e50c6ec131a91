"""Whether telemetry is on, and which source decided: the policy, and `OptOut`, which applies
it over one `Telemetry`'s life.

Precedence (first opt-out wins): environment, the machine's file (`/etc/visivo/config.yml`, an
administrator's), the project's `project.visivo.yml`, the user's `~/.visivo/config.yml`, then
on. Only an opt-out decides: nothing found lower in the list can be overridden by a "true"
higher up, so neither a cloned repository nor a user's `enable` can turn telemetry back on.
An unclear or unreadable answer where the user wrote about telemetry counts as "off".
"""

from __future__ import annotations

import os

from ._files import Unreadable, machine_config, paths
from ._record import Record
from ._words import is_set
from ._yaml_scan import (
    ENABLED_KEY,
    config_mapping,
    opts_out_anywhere,
    project_opts_out,
    user_config,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Decide = Callable[[str | None], "Decision"]

PROJECT_FILE = "project.visivo.yml"
OPT_OUT_VARIABLES = ("VISIVO_TELEMETRY_DISABLED", "DO_NOT_TRACK")
"""Checked in this order; what each reads as "no" is in `_words.FALSE_WORDS`."""


class Decision(Record):
    """Whether telemetry is on (`enabled`), which source decided it, and that source's file."""

    _fields = ("enabled", "decided_by", "source_path")
    _defaults = (None,)


def _env_decision(env: dict[str, str] | os._Environ[str]) -> Decision | None:
    for name in OPT_OUT_VARIABLES:
        if is_set(env.get(name), name):
            return Decision(False, f"env:{name}")
    return None


def machine_decision(env: dict[str, str] | os._Environ[str] | None = None) -> Decision | None:
    """The administrator's opt-out for every user of this machine, or None when its file says
    nothing (or is absent). A file there that cannot be read is an opt-out, as any unclear one."""
    path = machine_config(env)
    try:
        mapping = config_mapping(path, (ENABLED_KEY,))
    except Unreadable:
        return Decision(False, "machine", path)
    if mapping is not None and opts_out_anywhere(mapping):
        return Decision(False, "machine", path)
    return None


def project_decision(project_dir: str | os.PathLike[str] | None) -> Decision | None:
    """The project's own opt-out, or None when its `project.visivo.yml` says nothing."""
    if project_dir is None:
        return None
    path = os.path.join(os.fspath(project_dir), PROJECT_FILE)
    try:
        opts_out = project_opts_out(path)
    except Unreadable:
        return Decision(False, "project", path)
    return Decision(False, "project", path) if opts_out else None


def decide(
    project_dir: str | os.PathLike[str] | None = None,
    env: dict[str, str] | os._Environ[str] | None = None,
) -> Decision:
    """Whether telemetry is on, and why. Never raises; when in doubt, off."""
    env = os.environ if env is None else env
    try:
        found = _env_decision(env) or machine_decision(env) or project_decision(project_dir)
        if found:
            return found
        where = paths(env)
        if where is None:
            return Decision(False, "no-home")
        try:
            mapping = user_config(where)
        except Unreadable:
            return Decision(False, "global", where.config)
        if mapping is not None and opts_out_anywhere(mapping):
            return Decision(False, "global", where.config)
        return Decision(True, "default")
    except Exception:
        return Decision(False, "error")


class OptOut:
    """One `Telemetry`'s opt-out: decided at start, narrowed while a command works on another
    project (its `--working-dir`), read again before a command's event is written (the command
    itself may have opted out, as Visivo's `telemetry off` does). It can only ever turn
    telemetry off, and every "off" it finds is reported through `on_off` (in production: the
    spool is purged)."""

    def __init__(
        self, project_dir: str | None, decide: Decide, on_off: Callable[[], None] | None = None
    ) -> None:
        """`decide(project_dir)` is the policy (None: no project); `on_off()` runs whenever a
        decision turns telemetry off, at start included."""
        self._decide = decide
        self._on_off = on_off or _nothing
        self._project_dir = project_dir
        self._started = decide(project_dir)
        self._for_command: Decision | None = None
        if not self._started.enabled:
            self._on_off()

    @property
    def enabled(self) -> bool:
        """On at start, and no project of the running command opted out."""
        return self._started.enabled and self._for_command is None

    @property
    def decided_by(self) -> str:
        """`env:NAME`, `machine`, `project`, `global`, `default` (…): the source that decided."""
        return (self._for_command or self._started).decided_by

    def enter_project(self, project_dir: str | os.PathLike[str]) -> None:
        """A command works on `project_dir`: that project's opt-out holds until `leave_project`.

        The environment and the user's file keep their precedence (the policy reads them again).
        """
        if not self.enabled or os.path.abspath(os.fspath(project_dir)) == self._project_dir:
            return
        decision = self._decide(os.fspath(project_dir))
        if not decision.enabled:
            self._for_command = decision
            self._on_off()

    def leave_project(self) -> None:
        """The command that worked on another project has ended."""
        self._for_command = None

    def still_enabled(self) -> bool:
        """Read the environment and the user's file again: a command may have opted out while
        it ran. Once off, off for the rest of the process."""
        if not self.enabled:
            return False
        decision = self._decide(None)
        if decision.enabled:
            return True
        self._started = decision
        self._on_off()
        return False


def _nothing() -> None:
    pass
