"""Record one `cli_command` per run of a click group: `instrument(cli, telemetry)`.

We hook only `Group.resolve_command`, which click calls to look a word up in its own command
table, and register the recorder as a resource of the root context. No frame of ours is on the
stack while the command runs, so the host's exit code, output and tracebacks are unchanged.
The root context hands the exception that ends the run to the recorder (click ≥ 8.3; older
versions are read from `sys.exc_info()`), so `Abort`, `KeyboardInterrupt` and usage errors are
recorded by class name while `--help` and `Exit(0)` count as success.

What is recorded: the command path from click's table (`"run"`, `"dbt build"`) and the sanitized
arguments after it, where any flag the command does not declare is masked. A word that is not
a command is recorded as `"unknown-command"` (`"dbt unknown-command"` under a nested group)
with no arguments. Runs that name no command (`visivo --help`, `visivo --version`) and shell
completion record nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

import click

from ..client import Telemetry
from ..sanitize import is_number

UNKNOWN = "unknown-command"
MASKED = "<value>"
_RUN_KEY = "visivo_telemetry.run"
_WRAPPED = "_visivo_telemetry_instrumented"
_FORWARDS_EXCEPTIONS = hasattr(click.Context, "_close_with_exception_info")


class _Run:
    """One invocation of the root group: the command path so far and its recorder."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.recorder = telemetry.command(UNKNOWN, ())
        self.path: list[str] = []

    def __enter__(self) -> _Run:
        self.recorder.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_type is None and not _FORWARDS_EXCEPTIONS:
            exc_type, exc, traceback = sys.exc_info()
        self.recorder.__exit__(exc_type, exc, traceback)
        return False

    def resolved(self, name: str, args: list[str]) -> None:
        self.path.append(name)
        self.recorder.name = " ".join(self.path)
        self.recorder.args = args


def _declared_flags(command: click.Command, ctx: click.Context) -> frozenset[str]:
    names: set[str] = set()
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            names.update(param.opts, param.secondary_opts)
    return frozenset(names)


def mask_undeclared_flags(args: list[str], declared: frozenset[str]) -> list[str]:
    """Replace flags the command does not declare: a mistyped flag must not leak a word."""
    masked: list[str] = []
    for index, token in enumerate(args):
        if token == "--":
            masked.extend(args[index:])
            break
        if len(token) > 1 and token.startswith("-") and not is_number(token):
            name = token.split("=", 1)[0] if token.startswith("--") else token[:2]
            if name not in declared:
                token = MASKED
        masked.append(token)
    return masked


def _run_of(ctx: click.Context, telemetry: Telemetry, show_notice: bool) -> _Run:
    root = ctx.find_root()
    run = root.meta.get(_RUN_KEY)
    if run is None:
        run = root.meta[_RUN_KEY] = root.with_resource(_Run(telemetry))
        if show_notice:
            _print_notice(telemetry)
    return run


def _print_notice(telemetry: Telemetry) -> None:
    text = telemetry.notice()
    if text:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:
            pass


def _wrap(group: click.Group, telemetry: Telemetry, show_notice: bool) -> None:
    if getattr(group, _WRAPPED, False):
        return
    original: Callable[..., Any] = group.resolve_command

    def resolve_command(
        ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if ctx.resilient_parsing:
            return original(ctx, args)
        try:
            found = original(ctx, args)
        except BaseException:
            _note(ctx, None, [])
            raise
        _note(ctx, found[1], found[2])
        return found

    def _note(ctx: click.Context, command: click.Command | None, rest: list[str]) -> None:
        try:
            run = _run_of(ctx, telemetry, show_notice)
            if command is None or not command.name:
                run.resolved(UNKNOWN, [])
                return
            if isinstance(command, click.Group):
                _wrap(command, telemetry, show_notice)
            run.resolved(command.name, mask_undeclared_flags(rest, _declared_flags(command, ctx)))
        except Exception:
            pass

    group.resolve_command = resolve_command  # type: ignore[method-assign]
    setattr(group, _WRAPPED, True)


def instrument(group: click.Group, telemetry: Telemetry, *, show_notice: bool = True) -> None:
    """Record each command run through `group`; show the first-run notice if `show_notice`."""
    if not telemetry.enabled:
        return
    _wrap(group, telemetry, show_notice)
    for command in list(group.commands.values()):
        if isinstance(command, click.Group):
            instrument(command, telemetry, show_notice=show_notice)
