"""A host CLI shaped like Visivo 2.2.1: commands take `-w/--working-dir`, `wait` runs until it is
interrupted, `serve` runs a Flask server through our Flask integration.

`python visivo_shaped_cli.py wired|plain ARGS...`: `wired` instruments it as Visivo would
(`project_dir_param="working_dir"`), `plain` is the same program without telemetry.
"""

from __future__ import annotations

import sys
import time

import click
from flask import Flask

from visivo_telemetry import Telemetry, set_metric
from visivo_telemetry.integrations import flask as flask_integration
from visivo_telemetry.integrations.click import instrument

KEY = "phc_test_key"
WIRED = len(sys.argv) > 1 and sys.argv[1] == "wired"
telemetry = Telemetry("2.2.1", api_key=KEY) if WIRED else None
working_dir = click.option("-w", "--working-dir", default=".", type=click.Path())


@click.group()
def visivo() -> None:
    """Dashboards as code."""


@visivo.command()
@working_dir
@click.option("--threads", type=int, default=8)
def run(working_dir: str, threads: int) -> None:
    """Run the project's jobs."""
    set_metric("job_count", 3)
    click.echo(f"ran in {working_dir}")


@visivo.command()
@working_dir
def wait(working_dir: str) -> None:
    """Run until interrupted."""
    click.echo("started")
    click.echo("ready", err=True)
    time.sleep(600)


@visivo.command()
@working_dir
def query(working_dir: str) -> None:
    """Wait in one endless C call that releases the GIL, as a database driver's query does:
    the main thread runs no Python (so no signal handler) until it returns."""
    import sqlite3

    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    click.echo("ready", err=True)
    sqlite3.connect(":memory:").execute(endless)


@visivo.command()
@working_dir
@click.option("--port", type=int, required=True)
def serve(working_dir: str, port: int) -> None:
    """Serve the API with Flask's development server until stopped."""
    app = Flask("visivo_api")

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok"}

    if telemetry is not None:
        flask_integration.instrument(app, telemetry)  # off too if the project opted out
    click.echo("serving", err=True)
    app.run(host="127.0.0.1", port=port)


if __name__ == "__main__":
    if telemetry is not None:
        instrument(visivo, telemetry, project_dir_param="working_dir")
    visivo(sys.argv[2:], prog_name="visivo")
