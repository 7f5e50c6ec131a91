"""The click integration: one line wires a Visivo-like CLI, and nothing the user sees changes."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from helpers import PYTHON, ROOT, flush, spool_rows, wait_for_senders_to_exit

SCRIPTS = ROOT / "scripts"
LAUNCH = """\
import sys; sys.path.insert(0, {scripts!r}); import visivo_cli
{wire}
visivo_cli.visivo(prog_name="visivo")
"""


def cli_argv(args: list[str], instrumented: bool = True) -> list[str]:
    """The demo CLI; the plain variant differs only by not calling the one wiring line."""
    wire = "visivo_cli.wire()" if instrumented else "pass"
    return [PYTHON, "-c", LAUNCH.format(scripts=str(SCRIPTS), wire=wire), *args]


def run_cli(
    args: list[str], env: dict[str, str], cwd, instrumented: bool = True, stdin: str = ""
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_argv(args, instrumented),
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def delivered(env, home, collector, expected: int) -> list[dict]:
    """Every event of the test, once all senders are done and the spool is flushed."""
    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    events = collector.wait_for_events(expected)
    assert spool_rows(home) == []
    return [e["properties"] for e in events]


def by_command(props: list[dict]) -> dict[str, dict]:
    return {p["command"]: p for p in props}


def test_commands_and_nested_groups_are_named_from_clicks_table(env, home, project, collector):
    run_cli(["run", "--threads", "4", "--output-dir", "/home/ada/out"], env, project)
    run_cli(["compile", "--working-dir", "acme-dashboards"], env, project)
    run_cli(["dbt", "build", "--select", "orders_daily", "--full-refresh"], env, project)

    events = by_command(delivered(env, home, collector, 3))

    assert set(events) == {"run", "compile", "dbt build"}
    assert events["run"]["command_args"] == ["--threads", "<value>", "--output-dir", "<path>"]
    assert events["run"]["job_count"] == 12 and events["run"]["success"] is True
    assert events["compile"]["object_counts"] == {"charts": 4, "traces": 9, "dashboards": 1}
    assert events["compile"]["command_args"] == ["--working-dir", "<value>"]
    assert events["dbt build"]["command_args"] == ["--select", "<value>", "--full-refresh"]
    assert "job_count" not in events["compile"] and "object_counts" not in events["run"]


def test_a_mistyped_command_or_flag_never_leaks_the_word(env, home, project, collector):
    run_cli(["rnu", "acme-secret-project"], env, project)
    run_cli(["dbt", "biuld", "--select", "x"], env, project)
    run_cli(["run", "--acme-client-name"], env, project)

    props = delivered(env, home, collector, 3)
    events = by_command(props)

    assert events["unknown-command"]["command_args"] == []
    assert events["dbt unknown-command"]["command_args"] == []
    assert events["unknown-command"]["error_type"] == events["dbt unknown-command"]["error_type"]
    assert events["unknown-command"]["success"] is False
    assert events["run"]["command_args"] == ["<value>"]
    assert events["run"]["error_type"] == "NoSuchOption"
    wire = json.dumps(collector.events())
    for word in ("rnu", "acme", "biuld"):
        assert word not in wire


def test_help_version_and_exit_zero_count_as_success(env, home, project, collector):
    for args in (["run", "--help"], ["dbt", "build", "--help"], ["--help"], ["--version"]):
        assert run_cli(args, env, project).returncode == 0

    bare = run_cli([], env, project)
    assert "Usage:" in bare.stdout + bare.stderr

    props = delivered(env, home, collector, 5)
    events = by_command(props)

    assert sorted(e["command"] for e in props) == ["dbt build", "help", "help", "help", "run"]
    assert events["run"]["command_args"] == ["--help"]
    assert all(e["command_args"] == [] for e in props if e["command"] == "help")
    # A bare `visivo` exits 0 on click 8.1 and 2 (NoArgsIsHelpError) from click 8.2 on.
    failed = [e["error_type"] for e in props if not e["success"]]
    assert failed == ([] if bare.returncode == 0 else ["NoArgsIsHelpError"])


def test_failures_and_aborts_are_recorded_by_class_name(env, home, project, collector):
    failed = run_cli(["deploy", "--token", "hunter2"], env, project)
    aborted = run_cli(["init"], env, project, stdin="n\n")
    assert failed.returncode == 1 and aborted.returncode == 1

    events = by_command(delivered(env, home, collector, 2))

    assert events["deploy"]["error_type"] == "RuntimeError"
    assert events["deploy"]["command_args"] == ["--token", "<redacted>"]
    assert events["init"]["error_type"] == "Abort"
    assert all(e["success"] is False for e in events.values())
    assert "hunter2" not in json.dumps(collector.events())
    assert "unreachable" not in json.dumps(collector.events())


def interrupt(args: list[str], env, cwd, instrumented: bool) -> tuple[int, str, str]:
    """Start a long command, press Ctrl-C once it is running, collect what the user saw."""
    proc = subprocess.Popen(
        cli_argv(args, instrumented),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, "ready\n" + err


def test_ctrl_c_is_recorded_as_keyboard_interrupt_and_looks_the_same(env, home, project, collector):
    args = ["run", "--sleep", "60"]
    plain = interrupt(args, env, project, instrumented=False)
    wired = interrupt(args, env, project, instrumented=True)

    assert wired == plain
    assert wired[0] == 1 and wired[2].endswith("Aborted!\n")
    [event] = delivered(env, home, collector, 1)
    assert event["command"] == "run"
    assert event["error_type"] == "KeyboardInterrupt" and event["success"] is False
    assert event["job_count"] == 12, "a metric set before the interrupt is kept"


@pytest.mark.parametrize(
    "args, stdin",
    [
        (["run", "--threads", "2"], ""),
        (["dbt", "build"], ""),
        (["deploy"], ""),
        (["init"], "n\n"),
        (["init"], "y\n"),
        (["nope"], ""),
        (["run", "--threads", "many"], ""),
        (["run", "--help"], ""),
        (["dbt"], ""),
        (["--version"], ""),
        ([], ""),
    ],
)
def test_exit_code_stdout_and_stderr_are_exactly_the_uninstrumented_ones(
    env, home, project, args, stdin
):
    plain = run_cli(args, env, project, instrumented=False, stdin=stdin)
    wired = run_cli(args, env, project, instrumented=True, stdin=stdin)

    assert (wired.returncode, wired.stdout, wired.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert "visivo_telemetry" not in wired.stderr
    assert wait_for_senders_to_exit(home) == []


def test_shell_completion_records_nothing(env, home, project, collector):
    completion = dict(env, _VISIVO_COMPLETE="bash_complete", COMP_WORDS="visivo ru", COMP_CWORD="1")
    result = run_cli([], completion, project)
    assert result.returncode == 0 and "run" in result.stdout
    run_cli(["compile"], env, project)

    assert [e["command"] for e in delivered(env, home, collector, 1)] == ["compile"]
    time.sleep(0.5)
    assert collector.stats()["events"] == 1


def test_set_metric_outside_a_recorded_command_is_ignored(home):
    from visivo_telemetry import Telemetry, set_metric

    set_metric("job_count", 3)
    telemetry = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=None)
    with telemetry.command("compile"):
        set_metric("object_counts", {"charts": 1})
    set_metric("job_count", 4)
    [row] = spool_rows(home)
    assert row["properties"]["object_counts"] == {"charts": 1}
    assert "job_count" not in row["properties"]
