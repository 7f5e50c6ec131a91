"""`started_at`: a host may measure `duration_ms` from its own start (Visivo 2.2.1 measures from
the import of its command-line module); by default the command's own time is measured."""

from __future__ import annotations

import time

import click
from click.testing import CliRunner

from visivo_telemetry import Telemetry
from visivo_telemetry.integrations.click import instrument
from visivo_telemetry.testing import capture_events

KEY = "phc_test_key"
HOUR_MS = 3_600_000


def cli() -> click.Group:
    @click.group()
    def visivo() -> None:
        """Dashboards as code."""

    @visivo.command()
    def compile() -> None:
        """Compile."""

    return visivo


def durations(captured: list[dict]) -> list[float]:
    return [e["properties"]["duration_ms"] for e in captured]


def test_a_command_block_measures_from_the_hosts_reading(home):
    telemetry = Telemetry("2.2.1", api_key=KEY, project_dir=None)
    an_hour_ago = time.perf_counter() - 3600
    with capture_events() as captured:
        with telemetry.command("compile", started_at=an_hour_ago):
            pass
        with telemetry.command("compile"):
            pass

    from_host, own = durations(captured)
    assert from_host >= HOUR_MS
    assert own < HOUR_MS, "by default the block's own start"


def test_the_click_integration_passes_it_to_the_first_run_only(home, project, monkeypatch):
    monkeypatch.chdir(project)
    group = cli()
    instrument(group, Telemetry("2.2.1", api_key=KEY), started_at=time.perf_counter() - 3600)
    runner = CliRunner()
    with capture_events() as captured:
        runner.invoke(group, ["compile"])
        runner.invoke(group, ["compile"])

    first, second = durations(captured)
    assert first >= HOUR_MS, "the first run of the process includes what came before it"
    assert second < HOUR_MS, "a later run in the same process measures itself"


def test_a_reading_that_is_not_a_number_is_ignored(home):
    telemetry = Telemetry("2.2.1", api_key=KEY, project_dir=None)
    with capture_events() as captured:
        for reading in ("soon", float("nan"), True, object()):
            with telemetry.command("compile", started_at=reading):  # type: ignore[arg-type]
                pass
        with telemetry.command("compile", started_at=time.perf_counter() + 3600):
            pass

    assert len(captured) == 5
    assert all(0 <= d < HOUR_MS for d in durations(captured)), "a future reading counts as now"
