"""A minimal click CLI, like Visivo's, that the benchmark runs with each kind of telemetry.

    python scripts/bench_host.py none    run --threads 4
    python scripts/bench_host.py floor   run --threads 4
    python scripts/bench_host.py visivo  run --threads 4
    python scripts/bench_host.py posthog run --threads 4

`none` records nothing; `floor` does only what recording an event cannot do without (#24);
`visivo` records through visivo-telemetry; `posthog` uses the PostHog SDK the way Visivo does
today: capture, then `flush()` and `shutdown()` at exit. The receiver comes from
`VISIVO_POSTHOG_HOST` and the key from `VISIVO_POSTHOG_API_KEY` in every mode.
"""

from __future__ import annotations

import os
import sys
import time

import click

VERSION = "1.4.0"
POSTHOG_KEY = "phc_bench_project_key"


@click.group()
def cli() -> None:
    """The host's command table: telemetry names commands from here, never from raw argv."""


@cli.command()
@click.option("--threads", default=1, type=int)
@click.option("--dag-filter", default=None)
@click.argument("files", nargs=-1)
def run(threads: int, dag_filter: str | None, files: tuple[str, ...]) -> None:
    """Stands in for `visivo run`: does nothing, so the cost measured is all start-up and exit."""


def main_none(argv: list[str]) -> None:
    """No telemetry at all: the baseline."""
    cli.main(args=argv, prog_name="visivo")


def main_visivo(argv: list[str]) -> None:
    """visivo-telemetry wired as the README shows for a click CLI."""
    from visivo_telemetry import Telemetry
    from visivo_telemetry.integrations.click import instrument

    instrument(
        cli, Telemetry(version=VERSION, project_dir=".", api_key=POSTHOG_KEY), show_notice=False
    )
    cli.main(args=argv, prog_name="visivo")


def main_posthog(argv: list[str]) -> None:
    """PostHog SDK in process, as Visivo uses it today: capture, flush and shutdown at exit."""
    import posthog

    client = posthog.Posthog(
        os.environ.get("VISIVO_POSTHOG_API_KEY", "phc_bench"),
        host=os.environ["VISIVO_POSTHOG_HOST"],
    )
    started = time.perf_counter()
    code: int | str | None = 0
    try:
        cli.main(args=argv, prog_name="visivo")
    except SystemExit as done:
        code = done.code
    client.capture(
        "cli_command",
        distinct_id="bench",
        properties={
            "command": argv[0] if argv else "",
            "duration_ms": (time.perf_counter() - started) * 1000.0,
            "success": code in (0, None),
        },
    )
    client.flush()
    client.shutdown()
    sys.exit(code)


def main_floor(argv: list[str]) -> None:
    """The design's floor (#24): what recording one event cannot do without, and nothing else.

    Load `sqlite3`, append one row to a WAL-mode file under `~/.visivo` and commit, start one
    detached process with `posix_spawn` (an interpreter that does nothing), as a host does.
    """
    code: int | str | None = 0
    try:
        cli.main(args=argv, prog_name="visivo")
    except SystemExit as done:
        code = done.code
    import sqlite3

    folder = os.path.join(os.path.expanduser("~"), ".visivo")
    os.makedirs(folder, exist_ok=True)
    conn = sqlite3.connect(os.path.join(folder, "floor.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO events (body) VALUES (?)", (" ".join(argv),))
    conn.execute("COMMIT")
    conn.close()
    null = os.open(os.devnull, os.O_RDWR)
    os.posix_spawn(
        sys.executable,
        [sys.executable, "-c", "pass"],
        dict(os.environ),
        file_actions=[(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)],
        setsid=True,
    )
    os.close(null)
    sys.exit(code)


MODES = {"none": main_none, "floor": main_floor, "visivo": main_visivo, "posthog": main_posthog}

if __name__ == "__main__":
    MODES[sys.argv[1]](sys.argv[2:])
