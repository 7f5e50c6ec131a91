"""`instrument()` takes every shape a click CLI comes in: a group, a one-command CLI, a Typer
app; anything else is a `TypeError` that says what to pass, raised before the host runs."""

from __future__ import annotations

import textwrap

import click
import pytest
import typer
from click.testing import CliRunner
from helpers import TEST_API_KEY, run_host

from visivo_telemetry import Telemetry, set_metric
from visivo_telemetry.integrations.click import instrument
from visivo_telemetry.testing import capture_events


def _one_command_cli() -> click.Command:
    @click.command()
    @click.option("--threads", type=int, default=1)
    @click.option("--token")
    @click.argument("target", required=False)
    def build(threads: int, token: str | None, target: str | None) -> None:
        """A CLI that is one command."""
        set_metric("job_count", threads)
        if target == "fail":
            raise click.ClickException("cannot build")

    return build


def test_a_one_command_click_cli_is_recorded_under_its_own_name(home):
    cli = _one_command_cli()
    returned = instrument(cli, Telemetry("1.4.0", api_key=TEST_API_KEY, project_dir=None))
    assert returned is cli
    runner = CliRunner()

    with capture_events() as captured:
        assert (
            runner.invoke(cli, ["--threads", "4", "--token", "s3cret", "/home/ada"]).exit_code == 0
        )
        assert runner.invoke(cli, ["--nope"]).exit_code == 2
        assert runner.invoke(cli, ["fail"]).exit_code == 1

    ok, usage, failed = (e["properties"] for e in captured)
    assert ok["command"] == "build" and ok["success"] is True
    assert ok["command_args"] == ["--threads", "<value>", "--token", "<redacted>", "<path>"]
    assert "job_count" not in ok, "job_count belongs to `run` only, as the notice says"
    assert (usage["success"], usage["error_type"], usage["command_args"]) == (
        False,
        "NoSuchOption",
        ["<value>"],
    )
    assert (failed["success"], failed["error_type"]) == (False, "ClickException")


def test_a_one_command_cli_in_a_real_process_delivers_its_event(env, home, project, collector):
    code = textwrap.dedent(
        f"""
        import click
        from visivo_telemetry import Telemetry
        from visivo_telemetry.integrations.click import instrument

        @click.command()
        @click.option("--threads")
        def run(threads):
            click.echo("ran")

        instrument(run, Telemetry("1.4.0", api_key={TEST_API_KEY!r}))
        run(["--threads", "4"])
        """
    )
    result, _ = run_host(code, env, cwd=project)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")
    [event] = collector.wait_for_events(1, timeout=30)
    assert event["properties"]["command"] == "run"
    assert event["properties"]["command_args"] == ["--threads", "<value>"]


def _typer_app(commands: int) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def run(threads: int = 1, output_dir: str = "target") -> None:
        typer.echo(f"{threads} threads")

    if commands > 1:

        @app.command()
        def compile() -> None:
            raise typer.Exit(0)

    return app


@pytest.mark.parametrize("commands", [1, 2], ids=["one command", "two commands"])
def test_a_typer_app_is_recorded_through_the_click_command_instrument_returns(
    home, commands, capsys
):
    main = instrument(_typer_app(commands), Telemetry("1.4.0", api_key=TEST_API_KEY))
    assert callable(main.main), "a click command (Typer's own copy of click, for Typer 0.2x)"
    argv = ["--threads", "4", "--output-dir", "/tmp/out"]
    if commands > 1:
        argv = ["run", *argv]

    with capture_events() as captured:
        main.main(args=argv, prog_name="app", standalone_mode=False)
        if commands > 1:
            main.main(args=["compile"], prog_name="app", standalone_mode=False)

    assert capsys.readouterr().out == "4 threads\n"
    names = [e["properties"]["command"] for e in captured]
    assert names == (["run"] if commands == 1 else ["run", "compile"])
    assert captured[0]["properties"]["command_args"] == [
        "--threads",
        "<value>",
        "--output-dir",
        "<path>",
    ]
    assert all(e["properties"]["success"] for e in captured)


@pytest.mark.parametrize(
    "wrong, says",
    [
        (lambda: None, "click.Group, a click.Command or a typer.Typer app"),
        ("visivo", "click.Group, a click.Command or a typer.Typer app"),
    ],
)
def test_a_wrong_cli_is_a_type_error_that_says_what_to_pass(home, wrong, says):
    with pytest.raises(TypeError, match=says):
        instrument(wrong, Telemetry("1.4.0", api_key=TEST_API_KEY))


def test_a_wrong_telemetry_is_a_type_error_too(home):
    with pytest.raises(TypeError, match="needs a visivo_telemetry.Telemetry"):
        instrument(_one_command_cli(), "phc_key")  # type: ignore[arg-type]
