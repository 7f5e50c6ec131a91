"""A Visivo-like click CLI with telemetry wired in (see `wire`).

Used by the demo and the tests: `python scripts/visivo_cli.py run --threads 4`.
"""

from __future__ import annotations

import time

import click

from visivo_telemetry import Telemetry, set_metric
from visivo_telemetry.integrations.click import instrument

VERSION = "1.4.0"
POSTHOG_KEY = "phc_visivo_example_public_project_key"
"""An application's public PostHog project key, passed in code as Visivo passes its own."""
POSTHOG_HOST = "https://us.i.posthog.com"


@click.group()
@click.version_option(VERSION, prog_name="visivo")
def visivo() -> None:
    """Visivo: dashboards as code."""


@visivo.command()
@click.option("--dag-filter", help="Which objects to run.")
@click.option("--threads", type=int, default=8, show_default=True)
@click.option("--output-dir", type=click.Path(), default="target")
@click.option("--sleep", type=float, default=0.0, help="Pretend the jobs take this long.")
def run(dag_filter: str | None, threads: int, output_dir: str, sleep: float) -> None:
    """Run the project's jobs."""
    jobs = 12 if dag_filter is None else 3
    set_metric("job_count", jobs)
    click.echo(f"ran {jobs} jobs on {threads} threads into {output_dir}")
    if sleep:
        click.echo("ready", err=True)
        time.sleep(sleep)


@visivo.command()
@click.option("--working-dir", type=click.Path(), default=".")
def compile(working_dir: str) -> None:
    """Compile the project."""
    set_metric("object_counts", {"charts": 4, "traces": 9, "dashboards": 1})
    click.echo("compiled 14 objects")


@visivo.command()
@click.option("--port", type=int, default=8000)
@click.option("--token", help="Deploy token.")
def deploy(port: int, token: str | None) -> None:
    """Deploy to Visivo cloud (always fails here)."""
    raise RuntimeError("deploy target unreachable")


@visivo.command()
def init() -> None:
    """Create a project (asks for confirmation)."""
    click.confirm("create a project here?", abort=True)
    click.echo("created")


@visivo.group()
def dbt() -> None:
    """dbt helpers."""


@dbt.command()
@click.option("--select", help="dbt selector.")
@click.option("--full-refresh", is_flag=True)
def build(select: str | None, full_refresh: bool) -> None:
    """Build the dbt project."""
    click.echo("dbt build done")


def wire() -> None:
    """Turn telemetry on for this CLI, as the README's click wiring shows."""
    instrument(visivo, Telemetry(VERSION, api_key=POSTHOG_KEY, host=POSTHOG_HOST))


if __name__ == "__main__":
    wire()
    visivo(prog_name="visivo")
