"""`OptOut`: one `Telemetry`'s opt-out decision over its life.

The precedence policy (`_precedence.decide`) answers "is telemetry on for this project, now?";
this object applies it at the three moments a host needs it: once at start, again when a
command turns out to work on another project (its `--working-dir`), and again before a
command's event is written (the command itself may have opted out, as Visivo's `telemetry off`
does). It can only ever turn telemetry off, and every "off" it finds is reported through
`on_off`, which in production purges the spool.
"""

from __future__ import annotations

import os

from ._precedence import Decision

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Decide = Callable[[str | None], Decision]


class OptOut:
    """Whether one `Telemetry` records, and which source decided."""

    def __init__(self, project_dir: str | None, decide: Decide, on_off: Callable[[], None]):
        """`decide(project_dir)` is the policy (None: no project); `on_off()` runs whenever a
        decision turns telemetry off, at start included."""
        self._decide = decide
        self._on_off = on_off
        self._project_dir = project_dir
        self._started = decide(project_dir)
        self._for_command: Decision | None = None
        if not self._started.enabled:
            on_off()

    @property
    def enabled(self) -> bool:
        """On at start, and no project of the running command opted out."""
        return self._started.enabled and self._for_command is None

    @property
    def decided_by(self) -> str:
        """`env:NAME`, `project`, `global`, `default` (…): the source that decided."""
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
