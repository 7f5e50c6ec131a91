"""Whether telemetry is on, and which source decided.

Precedence (first opt-out wins): environment, the project's `project.visivo.yml`, the user's
`~/.visivo/config.yml`, then on. Only an opt-out decides: nothing found lower in the list can
be overridden by a "true" higher up, so a cloned repository cannot turn telemetry back on.
An unclear or unreadable answer where the user wrote about telemetry counts as "off".
"""

from __future__ import annotations

import os

from ._files import Unreadable, paths
from ._record import Record
from ._words import is_set
from ._yaml_scan import opts_out_anywhere, project_opts_out, user_config

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
        found = _env_decision(env) or project_decision(project_dir)
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
