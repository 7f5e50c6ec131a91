"""A command run against another project (`visivo run -w ../acme`) honours that project's
opt-out: decided once its parameters are parsed, before a byte is written or a notice shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import (
    PYTHON,
    clean_env,
    run_stderr_on,
    spool_path,
    spool_rows,
    wait_for_senders_to_exit,
)

from visivo_telemetry import Telemetry
from visivo_telemetry.integrations.click import instrument
from visivo_telemetry.testing import capture_events

CLI = Path(__file__).with_name("visivo_shaped_cli.py")
OPT_OUT = "defaults:\n  telemetry_enabled: false\n"


@pytest.fixture
def projects(tmp_path: Path) -> dict[str, Path]:
    """Where the user stands (no project file), a project that opts out, one that does not."""
    found = {name: tmp_path / name for name in ("here", "private", "open")}
    for path in found.values():
        path.mkdir()
    (found["private"] / "project.visivo.yml").write_text(OPT_OUT)
    (found["open"] / "project.visivo.yml").write_text("name: open\n")
    return found


def visivo(args: list[str], env, cwd, tty: bool = False) -> tuple[int, str, str]:
    return run_stderr_on([PYTHON, str(CLI), "wired", *args], env, cwd, tty)


def everything_under(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


@pytest.mark.parametrize(
    "args",
    [
        ["run", "-w", "../private"],
        ["run", "--working-dir", "../private", "--threads", "2"],
        ["run", "--working-dir=../private"],
        ["run", "-w../private"],
        ["run", "-w", "../private", "--no-such-flag"],
        ["run", "-w", "../private", "--threads", "many"],
        ["run", "--help", "-w", "../private"],
    ],
)
def test_a_project_that_opts_out_gets_no_byte_and_no_notice(home, projects, args):
    env = clean_env(home)
    code, out, terminal = visivo(args, env, projects["here"], tty=True)
    plain = subprocess.run(
        [PYTHON, str(CLI), "plain", *args], env=env, cwd=projects["here"], capture_output=True
    )

    assert code == plain.returncode and out.encode() == plain.stdout
    assert "anonymous usage data" not in terminal
    assert everything_under(home) == [], "nothing under HOME: no spool, no notice flag"


def test_a_project_that_does_not_opt_out_is_recorded_and_noticed(home, projects):
    code, out, terminal = visivo(["run", "-w", "../open"], clean_env(home), projects["here"], True)

    assert (code, out) == (0, "ran in ../open\n")
    assert "anonymous usage data" in terminal
    [row] = spool_rows(home)
    assert row["properties"]["command"] == "run"
    assert row["properties"]["command_args"] == ["-w", "<path>"]


def test_the_opt_out_purges_the_spool_as_any_off_decision_does(home, projects):
    env = clean_env(home)
    visivo(["run"], env, projects["here"])
    assert wait_for_senders_to_exit(home) == []  # a sender starting later makes a new spool
    assert spool_path(home).exists()

    visivo(["run", "-w", str(projects["private"])], env, projects["here"])

    assert not spool_path(home).exists()


def test_a_project_opt_in_never_overrides_an_opt_out(home, projects):
    (projects["open"] / "project.visivo.yml").write_text("defaults:\n  telemetry_enabled: true\n")
    (projects["here"] / "project.visivo.yml").write_text(OPT_OUT)
    visivo(["run", "-w", "../open"], clean_env(home), projects["here"])
    visivo(["run", "-w", "../open"], clean_env(home, DO_NOT_TRACK="1"), projects["open"])

    assert everything_under(home) == []


def test_the_decision_holds_for_one_run_only(home, projects, monkeypatch):
    """A test suite invoking the CLI again in one process: the next project decides anew."""
    monkeypatch.chdir(projects["here"])
    from visivo_shaped_cli import visivo as cli

    telemetry = Telemetry("2.2.1", api_key="phc_test_key")
    instrument(cli, telemetry, project_dir_param="working_dir")
    runner = CliRunner()
    with capture_events() as captured:
        assert runner.invoke(cli, ["run", "-w", str(projects["private"])]).exit_code == 0
        assert runner.invoke(cli, ["run", "-w", str(projects["open"])]).exit_code == 0

    [event] = captured
    assert event["properties"]["command_args"] == ["-w", "<path>"]
    assert telemetry.enabled and telemetry.decided_by == "default"


def test_a_server_for_a_project_that_opts_out_records_no_request(home, projects, monkeypatch):
    import click
    from flask import Flask

    from visivo_telemetry.integrations import flask as flask_integration

    @click.group()
    def cli() -> None:
        """Dashboards as code."""

    @cli.command()
    @click.option("-w", "--working-dir", default=".")
    def serve(working_dir: str) -> None:
        app = Flask("visivo_api")
        app.get("/api/health")(lambda: {"status": "ok"})
        flask_integration.instrument(app, telemetry)
        assert app.test_client().get("/api/health").status_code == 200

    monkeypatch.chdir(projects["here"])
    telemetry = Telemetry("2.2.1", api_key="phc_test_key")
    instrument(cli, telemetry, project_dir_param="working_dir")
    with capture_events() as private:
        assert CliRunner().invoke(cli, ["serve", "-w", "../private"]).exit_code == 0
    with capture_events() as open_:
        assert CliRunner().invoke(cli, ["serve", "-w", "../open"]).exit_code == 0

    assert private == []
    assert sorted(e["event"] for e in open_) == ["api_request", "cli_command"]
