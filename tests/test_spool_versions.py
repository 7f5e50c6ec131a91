"""One spool, several versions of the library: Visivo in two virtualenvs shares `~/.visivo`.

The rule (docs/design.md, "Spool format"): a format change is additive; no version resets,
downgrades or empties a spool another wrote; every version's events are delivered; a sender leaves
the rows a newer version wrote that it cannot validate. Version 0.1.0 (spool format 1, one event
per request) is the released code these tests run beside today's, from this repository's history.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    flush,
    host_code,
    run_host,
    spool_path,
    spool_rows,
    spool_state,
    wait_for_senders_to_exit,
)
from reliability_support import seed_spool
from test_flask_integration import get, start_server

from visivo_telemetry import _events as events
from visivo_telemetry import _spool as spool

RELEASED = "f71d8fe"
"""The commit of visivo-telemetry 0.1.0, the last release before spool format 2."""


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """visivo-telemetry 0.1.0's code, unpacked from git into a folder of its own."""
    root = tmp_path_factory.mktemp("visivo-telemetry-0.1.0")
    archive = root / "code.tar"
    done = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            "-o",
            str(archive),
            RELEASED,
            "visivo_telemetry",
            "sender",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"0.1.0 is not in this checkout's git history: {done.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(
            root
        )
    return root


def old_host(command: str, args: list[str], env: dict[str, str], released: Path) -> str:
    code = host_code(command, args) + textwrap.dedent(
        """
        t.request("GET", "/api/projects/7/", 200, 3.0)
        import visivo_telemetry._version as v
        print(v.__version__)
        """
    )
    result, _ = run_host(code, {**env, "PYTHONPATH": str(released)}, cwd=released)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def user_version(home: Path) -> int:
    conn = sqlite3.connect(spool_path(home))
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_two_versions_share_one_spool_and_every_event_arrives(
    env, home, project, released, collector
):
    proc, url, probes = start_server(env, project)
    served = probes + sum(get(url + "/api/projects/1/") == 200 for _ in range(50))
    deadline_rows = [row for row in spool_rows(home) if row["table"] == "request_windows"]
    for _ in range(100):
        if deadline_rows:
            break
        time.sleep(0.05)
        deadline_rows = [row for row in spool_rows(home) if row["table"] == "request_windows"]
    assert deadline_rows, "the server counts its requests in request_windows"

    assert old_host("run", ["--old1"], env, released) == "0.1.0"
    windows = [row for row in spool_rows(home) if row["table"] == "request_windows"]
    assert sum(row["request_count"] for row in windows) >= sum(
        row["request_count"] for row in deadline_rows
    ), "0.1.0 left the newer table and its counts alone"

    result, _ = run_host(host_code("run", ["--new1"]), env, cwd=project)
    assert result.returncode == 0
    old_host("run", ["--old2"], env, released)
    served += sum(get(url + "/api/projects/2/") == 200 for _ in range(30))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    old_host("run", ["--old3"], env, released)

    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    received = collector.events()
    commands = sorted(
        e["properties"]["command_args"][0] for e in received if e["event"] == "cli_command"
    )
    assert commands == ["--new1", "--old1", "--old2", "--old3"]
    requests = [e["properties"] for e in received if e["event"] == "api_request"]
    old_requests = [p for p in requests if p["$lib_version"] == "0.1.0"]
    assert len(old_requests) == 3 and all(p.get("request_count", 1) == 1 for p in old_requests)
    new_counts = sum(p["request_count"] for p in requests if p["$lib_version"] != "0.1.0")
    assert new_counts == served
    assert collector.stats()["duplicates"] == 0
    assert spool_rows(home) == []
    assert spool_state(home).get("dropped_invalid") in (None, "0")


def test_a_sender_leaves_rows_a_newer_version_wrote_and_drops_only_its_own_damage(env, home):
    """A row with a field this version does not know is left for a newer sender when a newer
    version wrote it, and dropped as invalid when it claims to be ours."""
    seed_spool(home, 2)
    conn = spool.connect(str(spool_path(home)))
    try:
        for lib_version, command in (
            ("99.0.0", "--from-the-future"),
            (events.LIB_VERSION, "--ours"),
        ):
            props = events.cli_command_properties("run", [command], 1.0, None, {})
            event = events.build("cli_command", "1.4.0", props)
            changed = {
                **json.loads(event.properties_json),
                "$lib_version": lib_version,
                "new_field": 1,
            }
            spool.append(
                conn,
                events.Event(event.uuid, event.event, event.created_at, json.dumps(changed)),
                (None, None),
            )
    finally:
        conn.close()

    assert flush(env).returncode == 0
    left = [row["properties"]["command_args"] for row in spool_rows(home)]
    assert left == [["--from-the-future"]]
    assert spool_state(home)["dropped_invalid"] == "1"


def test_an_older_format_number_never_lowers_a_newer_one(home):
    """Today's code (format 3) upgrades a format-1 spool to 3 and leaves a format-4 spool at 4."""
    path = spool_path(home)
    spool.connect(str(path)).close()
    assert user_version(home) == spool.SCHEMA_VERSION == 3
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=4")
    conn.close()
    spool.connect(str(path)).close()
    assert user_version(home) == 4
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=1")
    conn.close()
    spool.connect(str(path)).close()
    assert user_version(home) == 3
