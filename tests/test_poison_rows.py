"""One poison row never stops delivery: it is refused unread, dropped and counted, and every
valid row beside it still arrives (a real spool, a real sender through `flush`, a real receiver).
"""

from __future__ import annotations

import sqlite3

import pytest
from helpers import flush, spool_path, spool_rows, spool_state
from reliability_support import seed_spool

from visivo_telemetry import _events as events

POISON = {
    "nested 4,000 deep": "[" * 4000 + "]" * 4000,
    "objects nested 4,000 deep": '{"a":' * 1500 + "1" + "}" * 1500,
    "a blob, not text": b'{"visivo_version": "1.4.0"}',
    "over the size cap": '{"x": "' + "y" * 9000 + '"}',
    "not an object": '"just a string"',
}


@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
def test_a_poison_row_is_dropped_and_counted_and_the_rest_arrive(env, home, collector, poison):
    uuids = seed_spool(home, 3)
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute(
            "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
            (events.new_uuid7(), "cli_command", events.iso_utc(), poison),
        )
    conn.close()
    seed_spool(home, 2, command="after")

    result = flush(env)

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    received = collector.wait_for_events(5, timeout=30)
    assert set(uuids) <= {e["uuid"] for e in received} and len(received) == 5
    assert spool_rows(home) == []
    assert spool_state(home).get("dropped_invalid") == "1"


def test_debug_mode_names_the_poison_row_it_drops(env, home, collector):
    seed_spool(home, 2)
    poison_uuid = events.new_uuid7()
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute(
            "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
            (poison_uuid, "cli_command", events.iso_utc(), POISON["nested 4,000 deep"]),
        )
        [(row_id,)] = conn.execute("SELECT id FROM events WHERE uuid = ?", (poison_uuid,))
    conn.close()

    result = flush({**env, "VISIVO_TELEMETRY_DEBUG": "1"})

    assert result.returncode == 0 and len(collector.wait_for_events(2, timeout=30)) == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"visivo-telemetry: dropped events row {row_id} ({poison_uuid}): ")
    assert "size and depth limits" in line

    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute(
            "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
            (events.new_uuid7(), "cli_command", events.iso_utc(), POISON["not an object"]),
        )
    conn.close()
    quiet = flush(env)
    assert (quiet.returncode, quiet.stderr) == (0, ""), "named only in debug mode"
    assert spool_state(home)["dropped_invalid"] == "2"


def test_a_legitimate_row_is_never_refused_for_its_brackets():
    """Placeholders are braces inside strings: a deep-looking but valid endpoint still parses."""
    endpoint = "/api" + "/{id}" * 40
    text = events.dumps({"endpoint": endpoint, "command_args": ["--a", "<value>"]})
    assert events.parse_properties(text) == {
        "endpoint": endpoint,
        "command_args": ["--a", "<value>"],
    }
