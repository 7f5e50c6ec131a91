"""A spool is ours or it is set aside: a trigger, a view or an unknown object in it is never
used, so nothing planted there can redirect events; a newer version's tables are kept."""

from __future__ import annotations

import sqlite3

import pytest
from helpers import flush, host_code, run_host, spool_path, spool_state
from reliability_support import seed_spool

PLANTED = {
    "trigger": (
        "CREATE TRIGGER redirect AFTER INSERT ON state BEGIN "
        "UPDATE state SET value = 'https://attacker.invalid' WHERE key = 'app_host'; END"
    ),
    "view": "CREATE VIEW leak AS SELECT * FROM events",
    "table": "CREATE TABLE extra (x TEXT)",
    "index": "CREATE INDEX by_event ON events (event)",
}


def _plant(home, sql: str, user_version: int | None = None) -> None:
    seed_spool(home, 2)
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute(sql)
        if user_version is not None:
            conn.execute(f"PRAGMA user_version={user_version}")
    conn.close()


def _set_aside(home) -> list[str]:
    return sorted(p.name for p in (home / ".visivo").glob("telemetry.db.corrupt-*"))


@pytest.mark.parametrize("planted", PLANTED, ids=PLANTED)
def test_a_spool_holding_what_we_never_make_is_set_aside_and_never_used(
    env, home, project, collector, planted
):
    _plant(home, PLANTED[planted])

    result, _ = run_host(host_code("run", ["--after"]), env, cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert len(_set_aside(home)) == 1, "the planted spool moved aside, as a damaged one is"
    assert flush(env).returncode == 0
    [event] = collector.wait_for_events(1, timeout=30)
    assert event["properties"]["command_args"] == ["--after"]
    assert spool_state(home)["spools_set_aside"] == "1"
    names = {
        row[0]
        for row in sqlite3.connect(spool_path(home)).execute(
            "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'view')"
        )
    }
    assert names == set()


@pytest.mark.parametrize("planted", ["table", "index"])
def test_a_newer_versions_tables_and_indexes_are_kept(env, home, project, collector, planted):
    """The spool format rule: a newer version may add tables; an older one never resets it."""
    _plant(home, PLANTED[planted], user_version=99)

    result, _ = run_host(host_code("run", ["--after"]), env, cwd=project)

    assert (result.returncode, result.stderr) == (0, "")
    assert _set_aside(home) == []
    assert flush(env).returncode == 0
    assert len(collector.wait_for_events(3, timeout=30)) == 3
