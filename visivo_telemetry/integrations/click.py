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
with no arguments. A run that names no command (`visivo --help`, `visivo --version`, a bare
`visivo`, or an error in the group's own options) is recorded as `"help"` with no arguments,
the name Visivo 2.2.1 gives any run whose first word starts with `-`. Shell completion records
nothing.

Each command's `parse_args` is wrapped too: once its parameters are parsed (or fail to parse),
the project named by `project_dir_param` may opt out for this run, and only then is the
first-run notice shown. A SIGTERM (or SIGINT) ends the run through `..signals`, which records it
and lets the process die exactly as it would have.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

import click

from .. import Telemetry
from . import (
    MAX_ARGS,
    REDACTED,
    VALUE,
    Command,
    DeclaredOption,
    is_number,
    is_sensitive_flag,
    on_signal,
    remove_signal_callback,
)

UNKNOWN = "unknown-command"
BARE = "help"
"""A run that names no command (`--help`, `--version`, bare): Visivo 2.2.1's own name."""
MASKED = VALUE
_RUN_KEY = "visivo_telemetry.run"
_WRAPPED = "_visivo_telemetry_instrumented"
_PARSE_WRAPPED = "_visivo_telemetry_parse_instrumented"


def _is_group(command: object) -> bool:
    """A command with subcommands: click's `Group`, or a Typer group on Typer's own copy of
    click (Typer 0.2x vendors click, so its classes are not `click`'s)."""
    return callable(getattr(command, "resolve_command", None)) and isinstance(
        getattr(command, "commands", None), dict
    )


def _is_command(command: object) -> bool:
    return all(callable(getattr(command, name, None)) for name in ("parse_args", "get_params"))


def _is_option(param: object) -> bool:
    return getattr(param, "param_type_name", None) == "option"


class _Wiring:
    """What `instrument` was given, shared by every group and command it wraps."""

    def __init__(
        self,
        telemetry: Telemetry,
        show_notice: bool,
        project_dir_param: str | None,
        started_at: float | None,
    ) -> None:
        self.telemetry = telemetry
        self.show_notice = show_notice
        self.project_dir_param = project_dir_param
        self._started_at = started_at

    def take_started_at(self) -> float | None:
        """The host's start reading, for the first run only: a process that runs its CLI
        again (a test suite's `CliRunner`) measures each later run from its own start."""
        started_at, self._started_at = self._started_at, None
        return started_at


class _Run:
    """One invocation of the root group: the command path so far and its recorder."""

    def __init__(self, wiring: _Wiring, root: click.Context) -> None:
        self.recorder: Command = wiring.telemetry.command(
            BARE, (), started_at=wiring.take_started_at()
        )
        self.forwards_exceptions = hasattr(root, "_close_with_exception_info")
        """click ≥ 8.3 hands the exception that ends the run to its context's resources."""
        self.path: list[str] = []
        self.done = False
        self.noticed = False
        self.signalled: int | None = None

    def __enter__(self) -> _Run:
        self.recorder.__enter__()
        on_signal(self.on_signal)
        return self

    def on_signal(self, signum: int, fatal: bool) -> None:
        """SIGTERM/SIGINT: a signal that will kill the process ends the run now. One that
        raises `KeyboardInterrupt` instead is left to the run: recorded if it ends the run, a
        success if the command catches it and ends normally (Visivo's `serve`), as the
        process's exit status says and as Visivo 2.2.1 recorded it."""
        if fatal:
            self.signalled = signum
            self.__exit__(None, None, None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self.done:
            return False
        self.done = True
        remove_signal_callback(self.on_signal)
        if exc_type is None and not self.forwards_exceptions:
            exc_type, exc, traceback = sys.exc_info()
        if exc_type is None and self.signalled is not None:
            exc_type = _signal_error(self.signalled)
        self.recorder.__exit__(exc_type, exc, traceback)
        return False

    def resolved(self, name: str, args: list[object]) -> None:
        self.path.append(name)
        self.recorder.name = " ".join(self.path)
        self.recorder.args = args


def _signal_error(signum: int) -> type[BaseException]:
    """What a run ended by a signal records as `error_type`: `KeyboardInterrupt` for SIGINT,
    as Python names it, else the signal's name (`SIGTERM`)."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt
    return type(signal.Signals(signum).name, (BaseException,), {})


class _Opt:
    """What click's parser knows of one option name: how many values follow it."""

    __slots__ = ("name", "nargs", "optional", "sensitive")

    def __init__(self, name: str, param: click.Option, takes_value: bool) -> None:
        self.name = name
        self.nargs = param.nargs if takes_value else 0
        self.optional = takes_value and bool(getattr(param, "_flag_needs_value", False))
        self.sensitive = any(is_sensitive_flag(n) for n in (*param.opts, param.name or ""))


class _Spec:
    """A command's options as click's parser sees them (`Option.add_to_parser`)."""

    def __init__(self, command: click.Command, ctx: click.Context) -> None:
        settings = command.context_settings
        self.normalize = settings.get("token_normalize_func", ctx.token_normalize_func)
        self.interspersed = settings.get("allow_interspersed_args", command.allow_interspersed_args)
        self.options: dict[str, _Opt] = {}
        for param in command.get_params(ctx):
            if _is_option(param):
                takes_value = not param.is_flag and not param.count
                for name in (*param.opts, *param.secondary_opts):
                    self.options[self._norm(name)] = _Opt(name, param, takes_value)
        self.prefixes = {"-", *(name[0] for name in self.options)}

    def _norm(self, name: str) -> str:
        if self.normalize is None:
            return name
        prefix = name[:2] if name[1:2] == name[:1] else name[:1]
        return prefix + self.normalize(name[len(prefix) :])

    def find(self, name: str) -> _Opt | None:
        try:
            return self.options.get(self._norm(name))
        except Exception:
            return None

    def is_option(self, token: str) -> bool:
        return len(token) > 1 and token[0] in self.prefixes


def _value(token: str, sensitive: bool) -> str:
    """A value: one that looks like a flag is replaced here, the rest by `sanitize_args`."""
    if token.startswith("-") and not is_number(token):
        return REDACTED if sensitive else MASKED
    return token


class _Walk:
    """Reads a command's argv as click's parser does, naming options from its own table."""

    def __init__(self, args: list[str], spec: _Spec) -> None:
        self.rest = args[::-1]
        """The tokens still to read, the next one last: taking one is O(1) whatever argv's size."""
        self.spec = spec
        self.out: list[object] = []

    def run(self) -> list[object]:
        """The first `MAX_ARGS` tokens named or masked: no more are ever recorded, so a huge
        argv costs no more than a short one."""
        while self.rest and len(self.out) < MAX_ARGS:
            token = self.rest.pop()
            if token == "--":
                self.out.append(token)
                self.out.extend(reversed(self.rest[-MAX_ARGS:]))
                return self.out
            if self.spec.is_option(token):
                self.option(token)
            elif self.spec.interspersed:
                self.out.append(token)
            else:
                self.out.append(token)
                self.out.extend(_value(t, False) for t in reversed(self.rest[-MAX_ARGS:]))
                return self.out
        return self.out

    def option(self, token: str) -> None:
        name, has_value, _ = token.partition("=")
        opt = self.spec.find(name)
        if opt is not None and len(name) > 2:
            self.long(token, opt, has_value)
        elif token[1:2] == token[:1]:
            self.out.append(MASKED)
        else:
            self.short(token)

    def long(self, token: str, opt: _Opt, has_value: bool) -> None:
        if has_value:
            attached = token.partition("=")[2]
            self.out.append(DeclaredOption(f"{opt.name}={attached}", opt.sensitive))
            return
        self.out.append(DeclaredOption(opt.name, opt.sensitive))
        self.values(opt)

    def short(self, token: str) -> None:
        """`-vq` (flags), `-t4` (attached value): click's `_match_short_opt`."""
        names = []
        for index, letter in enumerate(token[1:], 2):
            opt = self.spec.find(token[0] + letter)
            if opt is None:
                self.out.append(MASKED)
                return
            names.append(letter)
            if opt.nargs:
                if index < len(token):
                    self.out.append(token[0] + letter + _value(token[index:], opt.sensitive))
                    return
                self.out.append(DeclaredOption(token[0] + "".join(names), opt.sensitive))
                self.values(opt)
                return
        self.out.append(DeclaredOption(token[0] + "".join(names)))

    def values(self, opt: _Opt) -> None:
        """The values a declared option consumes, whatever they look like."""
        if opt.optional and (not self.rest or self.spec.is_option(self.rest[-1])):
            return
        for _ in range(min(opt.nargs, len(self.rest))):
            self.out.append(_value(self.rest.pop(), opt.sensitive))


def mask_undeclared_flags(args: list[str], spec: _Spec) -> list[object]:
    """Name declared options from click's table, mask the rest: a mistyped flag must not
    leak a word, and a value that looks like a flag is still a value."""
    return _Walk(args, spec).run()


def _masked(args: list[str], command: click.Command, ctx: click.Context) -> list[object]:
    return mask_undeclared_flags(args, _Spec(command, ctx))


def _run_of(ctx: click.Context, wiring: _Wiring) -> _Run | None:
    """The run this context belongs to; a new one only while telemetry is on (read per run:
    a test's `capture_events()` turns it on for an opted-out developer)."""
    root = ctx.find_root()
    run = root.meta.get(_RUN_KEY)
    if run is None and wiring.telemetry.enabled:
        run = root.meta[_RUN_KEY] = root.with_resource(_Run(wiring, root))
    return run


def _notice_once(run: _Run, wiring: _Wiring) -> None:
    """The first-run notice, when the command is known and its project has not opted out."""
    if wiring.show_notice and not run.noticed:
        run.noticed = True
        _print_notice(wiring.telemetry)


def _wrap_parse(command: click.Command, wiring: _Wiring) -> None:
    """Once a command's parameters are parsed, read the project it works on and show the
    notice. The root group's run starts before it parses: `--help`/`--version` end inside
    parsing, on a context click never closes, so such a run is recorded (as `help`) here."""
    if getattr(command, _PARSE_WRAPPED, False):
        return
    original: Callable[..., Any] = command.parse_args
    is_group = _is_group(command)

    def parse_args(ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.resilient_parsing:
            return original(ctx, args)
        given = list(args)  # click's parser consumes the list it is given
        run: _Run | None = None
        if ctx.parent is None:
            try:
                run = _run_of(ctx, wiring)
                if run is not None and not is_group:  # a one-command CLI: it is the command
                    run.resolved(command.name or BARE, _masked(given, command, ctx))
            except Exception:
                run = None
        try:
            rest = original(ctx, args)
        except BaseException:
            _parsed(ctx, command, given, wiring, failed=True)
            if run is not None:
                run.__exit__(*sys.exc_info())
            raise
        _parsed(ctx, command, given, wiring, failed=False)
        return rest

    command.parse_args = parse_args  # type: ignore[method-assign]
    setattr(command, _PARSE_WRAPPED, True)


def _parsed(
    ctx: click.Context, command: click.Command, args: list[str], wiring: _Wiring, failed: bool
) -> None:
    """After a command of a run parsed its parameters (or failed to): the project it names
    may opt out; then the notice, once the command about to run is known."""
    try:
        run = ctx.find_root().meta.get(_RUN_KEY)
        if run is None:
            return
        if wiring.project_dir_param:
            project_dir = _project_dir(ctx, command, args, wiring.project_dir_param, failed)
            if project_dir is not None:
                run.recorder.works_on(project_dir)
        is_group = _is_group(command)
        if (ctx.parent is not None and (failed or not is_group)) or (
            ctx.parent is None and not is_group and not failed
        ):
            _notice_once(run, wiring)
    except Exception:
        pass


def _project_dir(
    ctx: click.Context, command: click.Command, args: list[str], name: str, failed: bool
) -> Any:
    """The value of the parameter `name`: parsed, or read from argv when parsing failed (a
    usage error, `--help`) before click got to it."""
    value = ctx.params.get(name)
    if value is None and failed:
        value = _raw_option_value(command, ctx, args, name)
    return value if isinstance(value, (str, os.PathLike)) else None


def _raw_option_value(
    command: click.Command, ctx: click.Context, args: list[str], name: str
) -> str | None:
    """The last value given to option `name` in argv (`-w d`, `--working-dir=d`, `-wd`)."""
    options = [p for p in command.get_params(ctx) if _is_option(p)]
    opts = next((o.opts for o in options if o.name == name and not o.is_flag), None)
    if not opts:
        return None
    found = None
    for index, token in enumerate(args):
        if token == "--":
            break
        for opt in opts:
            if token == opt and index + 1 < len(args):
                found = args[index + 1]
            elif opt.startswith("--") and token.startswith(opt + "="):
                found = token[len(opt) + 1 :]
            elif len(opt) == 2 and token.startswith(opt) and len(token) > 2:
                found = token[2:]
    return found


def _print_notice(telemetry: Telemetry) -> None:
    text = telemetry.notice()
    if text:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:
            pass


def _wrap(group: click.Group, wiring: _Wiring) -> None:
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
            run = _run_of(ctx, wiring)
            if run is None:
                return
            if command is None or not command.name:
                run.resolved(UNKNOWN, [])
                _notice_once(run, wiring)
                return
            if _is_group(command):
                _wrap(command, wiring)
            else:
                _wrap_parse(command, wiring)
            run.resolved(command.name, _masked(rest, command, ctx))
        except Exception:
            pass

    group.resolve_command = resolve_command  # type: ignore[method-assign]
    _wrap_parse(group, wiring)
    setattr(group, _WRAPPED, True)


def instrument(
    cli: click.Command | Any,
    telemetry: Telemetry,
    *,
    show_notice: bool = True,
    project_dir_param: str | None = None,
    started_at: float | None = None,
) -> click.Command:
    """Record each run of `cli` (a click group, a one-command click CLI, or a Typer app);
    show the first-run notice if `show_notice`. Returns the click command that records.

    A Typer app builds a new click command each time it is called, so run the one returned
    (`main = instrument(app, telemetry)`, then `main()` as the entry point). `project_dir_param`
    names the parameter holding the project a command works on (Visivo's `working_dir`, from
    `-w/--working-dir`): once the command's parameters are parsed, an opt-out in that
    project's `project.visivo.yml` wins, and the run writes nothing at all. `started_at` (a
    `time.perf_counter()` reading, e.g. taken at the import of the CLI module) is where the
    process's first run measures its `duration_ms` from; by default, and for every later run,
    each run measures from the moment click starts parsing it.

    Wiring is cheap and always done; whether a run records is decided as it starts, so a test
    that captures events sees them even where the developer opted out.
    """
    command = _click_command_of(cli)
    if not isinstance(telemetry, Telemetry):
        raise TypeError(
            f"instrument() needs a visivo_telemetry.Telemetry, got {type(telemetry).__name__}"
        )
    wiring = _Wiring(telemetry, show_notice, project_dir_param, started_at)
    try:
        _wrap_all(command, wiring)
    except Exception:
        pass
    return command


def _click_command_of(cli: object) -> click.Command:
    """`cli` itself when it is a click command; a Typer app's click command."""
    if _is_command(cli):
        return cli  # type: ignore[return-value]
    if type(cli).__module__.split(".")[0] == "typer" and hasattr(cli, "registered_commands"):
        import typer.main

        return typer.main.get_command(cli)  # type: ignore[arg-type]
    raise TypeError(
        "instrument() needs a click.Group, a click.Command or a typer.Typer app, "
        f"got {type(cli).__name__}"
    )


def _wrap_all(command: click.Command, wiring: _Wiring) -> None:
    if not _is_group(command):
        _wrap_parse(command, wiring)
        return
    _wrap(command, wiring)
    for sub in list(command.commands.values()):
        if _is_group(sub):
            _wrap_all(sub, wiring)
