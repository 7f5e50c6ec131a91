"""`visivo_telemetry.testing.capture_events()`: a host's own tests see what it would record, as
production builds it, while nothing is written under HOME and no process is started."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from flask import Flask

from visivo_telemetry import Telemetry, set_metric
from visivo_telemetry.integrations import flask as flask_integration
from visivo_telemetry.integrations.click import instrument
from visivo_telemetry.testing import capture_events

KEY = "phc_test_key"
_PROCESS_EVENTS = ("os.posix_spawn", "os.spawn", "subprocess.Popen", "os.fork", "os.exec")
_started: list[str] = []
_watching = [False]


def _watch_process_starts(event: str, _args: tuple) -> None:
    if _watching[0] and event.startswith(_PROCESS_EVENTS):
        _started.append(event)


sys.addaudithook(_watch_process_starts)


@pytest.fixture
def no_process_started() -> Iterator[None]:
    """Fails the test if anything in it starts a process (seen through Python's audit hooks)."""
    _started.clear()
    _watching[0] = True
    yield
    _watching[0] = False
    assert _started == [], f"processes were started: {_started}"


def everything_under(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


def visivo_like_cli() -> click.Group:
    """A Visivo-shaped CLI: `run` counts jobs, `compile` counts objects, `deploy` fails."""

    @click.group()
    def visivo() -> None:
        """Dashboards as code."""

    @visivo.command()
    @click.option("-th", "--threads", type=int, default=8)
    @click.option("--output-dir", type=click.Path(), default="target")
    def run(threads: int, output_dir: str) -> None:
        set_metric("object_counts", {"charts": 4, "traces": 9})  # Visivo's run compiles first
        set_metric("job_count", 12)
        click.echo(f"ran on {threads} threads")

    @visivo.command()
    def compile() -> None:
        set_metric("object_counts", {"charts": 4, "traces": 9})

    @visivo.command()
    @click.option("--token")
    def deploy(token: str | None) -> None:
        raise RuntimeError(f"cannot deploy with {token}")

    return visivo


def test_a_click_cli_run_by_cli_runner_is_captured_with_nothing_written(
    home, project, monkeypatch, no_process_started
):
    monkeypatch.chdir(project)
    cli = visivo_like_cli()
    instrument(cli, Telemetry("2.2.1", api_key=KEY))  # created before the block, as at import
    runner = CliRunner()

    with capture_events() as captured:
        assert runner.invoke(cli, ["run", "-th", "4", "--output-dir", "/home/ada"]).exit_code == 0
        assert runner.invoke(cli, ["compile"]).exit_code == 0
        assert runner.invoke(cli, ["deploy", "--token", "hunter2"]).exit_code == 1

    assert [e["event"] for e in captured] == ["cli_command"] * 3
    run, compiled, deploy = (e["properties"] for e in captured)
    assert run["command"] == "run" and run["job_count"] == 12 and run["success"] is True
    assert run["command_args"] == ["-th", "<value>", "--output-dir", "<path>"]
    assert compiled["object_counts"] == {"charts": 4, "traces": 9}
    assert "object_counts" not in run and "job_count" not in compiled, "as the notice says"
    assert deploy["success"] is False and deploy["error_type"] == "RuntimeError"
    assert deploy["command_args"] == ["--token", "<redacted>"]
    assert "hunter2" not in json.dumps(captured)
    assert all(e["distinct_id"] == e["properties"]["session_id"] for e in captured)
    assert everything_under(home) == []


def test_outside_the_block_production_recording_resumes(home, project, monkeypatch):
    monkeypatch.chdir(project)
    cli = visivo_like_cli()
    instrument(cli, Telemetry("2.2.1", api_key=KEY))
    with capture_events() as captured:
        CliRunner().invoke(cli, ["compile"])
    CliRunner().invoke(cli, ["run"])

    assert [e["properties"]["command"] for e in captured] == ["compile"]
    assert (home / ".visivo" / "telemetry.db").exists(), "the later run was spooled as usual"


def test_a_captured_event_is_what_debug_mode_prints(home, monkeypatch, capsys):
    telemetry = Telemetry("2.2.1", api_key=KEY, project_dir=None)
    with capture_events() as captured, telemetry.command("run", ["--threads", "4"]):
        set_metric("job_count", 3)
    monkeypatch.setenv("VISIVO_TELEMETRY_DEBUG", "1")
    debug = Telemetry("2.2.1", api_key=KEY, project_dir=None)
    with debug.command("run", ["--threads", "4"]):
        set_metric("job_count", 3)
    printed = json.loads(capsys.readouterr().err)

    def comparable(item: dict) -> dict:
        return {
            **item,
            "uuid": 0,
            "timestamp": 0,
            "properties": {**item["properties"], "duration_ms": 0},
        }

    assert [comparable(e) for e in captured] == [comparable(printed)]
    assert everything_under(home) == []


def test_flask_requests_are_captured_when_each_response_returns(home, no_process_started):
    app = Flask("visivo_api")

    @app.get("/api/projects/<int:project_id>/")
    def project(project_id: int) -> dict:
        return {"id": project_id}

    telemetry = Telemetry("2.2.1", api_key=KEY, project_dir=None)
    flask_integration.instrument(app, telemetry, window_s=1e9)  # no window edge in the test
    client = app.test_client()

    with capture_events() as captured:
        for project_id in (1, 2, 3):
            assert client.get(f"/api/projects/{project_id}/").status_code == 200
        assert client.get("/api/acme-corp/4").status_code == 404
        seen_inside = len(captured)

    assert seen_inside == 2, "each request is in the list as soon as its response returned"
    assert [(e["event"], e["properties"]["endpoint"]) for e in captured] == [
        ("api_request", "/api/projects/{project_id}/"),
        ("api_request", "/api/{value}/{id}"),
    ]
    assert [e["properties"]["request_count"] for e in captured] == [3, 1]
    assert [e["properties"]["status_code"] for e in captured] == [200, 404]
    assert "acme" not in json.dumps(captured)
    assert everything_under(home) == []


def _opt_out_the_developer(how: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "DO_NOT_TRACK":
        monkeypatch.setenv("DO_NOT_TRACK", "1")
    elif how == "VISIVO_TELEMETRY_DISABLED":
        monkeypatch.setenv("VISIVO_TELEMETRY_DISABLED", "1")
    else:
        (home / ".visivo").mkdir()
        (home / ".visivo" / "config.yml").write_text("telemetry_enabled: false\n")


@pytest.mark.parametrize("how", ["DO_NOT_TRACK", "VISIVO_TELEMETRY_DISABLED", "config.yml"])
def test_a_developer_who_opted_out_captures_what_production_records(
    home, project, monkeypatch, how, no_process_started
):
    """The host's tests must pass on a privacy-minded developer's machine: the developer's own
    opt-out decides what their own telemetry does, never what a test captures."""
    _opt_out_the_developer(how, home, monkeypatch)
    before = everything_under(home)
    monkeypatch.chdir(project)
    cli = visivo_like_cli()
    telemetry = Telemetry("2.2.1", api_key=KEY)  # made at import, on the opted-out machine
    instrument(cli, telemetry)
    assert not telemetry.enabled

    with capture_events() as captured:
        assert CliRunner().invoke(cli, ["run", "-th", "4"]).exit_code == 0

    assert [e["properties"]["command"] for e in captured] == ["run"]
    assert captured[0]["properties"]["job_count"] == 12
    assert everything_under(home) == before, "capturing wrote nothing and purged nothing"
    assert not telemetry.enabled, "outside the block the developer's opt-out holds again"


def test_the_developers_own_destination_and_debug_settings_do_not_count(home, monkeypatch, capsys):
    monkeypatch.setenv("VISIVO_TELEMETRY_DEBUG", "1")
    monkeypatch.setenv("VISIVO_POSTHOG_API_KEY", "phx_personal_key")  # not usable: ignored
    telemetry = Telemetry("2.2.1", api_key=KEY, project_dir=None)
    with capture_events() as captured, telemetry.command("run", []):
        pass
    assert [e["properties"]["command"] for e in captured] == ["run"]
    assert capsys.readouterr().err == "", "no debug line: the capture is the output"


def test_a_test_may_capture_as_if_the_user_opted_out(home, project, monkeypatch):
    monkeypatch.chdir(project)
    cli = visivo_like_cli()
    telemetry = Telemetry("2.2.1", api_key=KEY)
    instrument(cli, telemetry)
    with capture_events(opted_out=True) as captured:
        assert not telemetry.enabled
        assert CliRunner().invoke(cli, ["run"]).exit_code == 0
    assert captured == []
    assert everything_under(home) == [], "an opt-out while capturing purges nothing either"


def test_a_flask_app_instrumented_on_an_opted_out_machine_is_captured(home, monkeypatch):
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    app = Flask("visivo_api")
    app.add_url_rule("/api/projects/<int:project_id>/", "project", lambda project_id: {})
    flask_integration.instrument(app, Telemetry("2.2.1", api_key=KEY, project_dir=None))
    with capture_events() as captured:
        assert app.test_client().get("/api/projects/7/").status_code == 200
    assert [e["properties"]["endpoint"] for e in captured] == ["/api/projects/{project_id}/"]


@pytest.mark.parametrize("how", ["project", "no key"])
def test_what_the_host_itself_would_not_record_is_not_captured(home, project, monkeypatch, how):
    api_key: str | None = KEY
    if how == "project":
        (project / "project.visivo.yml").write_text("defaults:\n  telemetry_enabled: false\n")
    else:
        api_key = None
    before = everything_under(home)
    monkeypatch.chdir(project)
    cli = visivo_like_cli()
    instrument(cli, Telemetry("2.2.1", api_key=api_key))

    with capture_events() as captured:
        assert CliRunner().invoke(cli, ["run"]).exit_code == 0

    assert captured == []
    assert everything_under(home) == before


def test_a_telemetry_created_inside_the_block_purges_nothing(home, monkeypatch):
    spool = home / ".visivo" / "telemetry.db"
    with Telemetry("2.2.1", api_key=KEY, project_dir=None).command("run", []):
        pass
    assert spool.exists()
    monkeypatch.setenv("VISIVO_TELEMETRY_DISABLED", "1")
    with capture_events() as captured:
        telemetry = Telemetry("2.2.1", api_key=KEY, project_dir=None)
        with telemetry.command("run", []):
            pass
    assert len(captured) == 1, "the developer's opt-out does not decide what a test captures"
    assert spool.exists(), "capturing touches nothing under HOME"


class _Terminal:
    """A stderr that says it is a terminal, where the first-run notice would be shown."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_no_first_run_notice_is_shown_or_remembered_while_capturing(home, monkeypatch):
    telemetry = Telemetry("2.2.1", api_key=KEY, project_dir=None)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with capture_events():
        assert telemetry.notice() is None
    assert everything_under(home) == []
    assert telemetry.notice() is not None, "outside the block it is due, at a terminal"
