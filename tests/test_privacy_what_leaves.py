"""Issue 12, "what leaves is only partly observed": the receiver keeps every request whole
(target, every header, the body as it came off the wire), and these tests assert exactly what
left, at every level, against the documented wire (`wire_contract`), never the sender's code.
"""

from __future__ import annotations

import getpass
import json
import socket
import sqlite3
import textwrap

from helpers import (
    TEST_API_KEY,
    flush,
    host_code,
    json_strings,
    run_host,
    spool_path,
    spool_rows,
    spool_state,
    wait_for_senders_to_exit,
)
from privacy_support import spool_commands
from reliability_support import seed_spool
from wire_contract import assert_exactly_what_left, items_that_left, strict_json

from visivo_telemetry import _events as events

API_HOST = textwrap.dedent(
    """
    from visivo_telemetry import Telemetry
    t = Telemetry(version="1.4.0", project_dir=".", api_key="phc_test_key", long_running=True)
    t.request("GET", "/api/projects/", 200, 3.0)
    t.close()
    """
)


def test_every_request_is_exactly_the_documented_body_items_properties_and_headers(
    env, home, project, collector
):
    run_host(host_code("run", ["--threads", "4"], metrics={"job_count": 3}), env, cwd=project)
    run_host(host_code("compile", metrics={"object_counts": {"charts": 2}}), env, cwd=project)
    run_host(host_code("serve", raise_error="KeyError"), env, cwd=project)
    run_host(API_HOST, env, cwd=project)
    assert wait_for_senders_to_exit(home) == []
    assert flush(env).returncode == 0
    collector.wait_for_events(4)

    bodies = assert_exactly_what_left(collector)

    items = items_that_left(bodies)
    assert sorted(i["properties"].get("command", i["event"]) for i in items) == [
        "api_request",
        "compile",
        "run",
        "serve",
    ]
    assert all("historical_migration" not in body for body in bodies)


def test_a_backlog_batch_adds_only_historical_migration(env, home, collector):
    seed_spool(home, 3, age_s=72 * 3600)

    assert flush(env).returncode == 0
    collector.wait_for_events(3)

    (body,) = assert_exactly_what_left(collector)
    assert body["historical_migration"] is True and len(body["batch"]) == 3


def test_nothing_private_is_anywhere_in_the_request(env, home, project, collector):
    """Not in the URL, not in a header's name or value, not in any string of the body."""
    run_host(host_code("run", [str(home), getpass.getuser(), str(project)]), env, cwd=project)
    collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []

    (request,) = collector.received()
    sent = [
        request["target"],
        *json_strings(request["headers"]),
        *json_strings(json.loads(request["text"])),
    ]
    for private in (socket.gethostname(), getpass.getuser(), str(home), str(project)):
        # A short name ("vm") is compared whole, a longer one looked for inside every string.
        assert not [s for s in sent if s == private or (len(private) > 3 and private in s)]


def _duplicated(properties: dict, key: str, first: object, last: object) -> str:
    """Properties JSON whose text names `key` twice: `first`, then (json.loads keeps) `last`."""
    rest = {k: v for k, v in properties.items() if k != key}
    head = json.dumps({key: first})[:-1]
    return f"{head},{json.dumps(rest)[1:-1]},{json.dumps({key: last})[1:]}"


def test_a_spool_row_with_duplicate_keys_leaves_only_what_was_validated(
    env, home, project, collector
):
    """A tampered row naming a key twice: json.loads keeps the last value, so the sender must
    send its own encoding of what it validated, never the row's text with the first value."""
    spool_commands(project, [("run", [])])
    (good,) = spool_rows(home)
    props = good["properties"]
    hidden_first = {
        "command": _duplicated(props, "command", "/home/alice/secret", "run"),
        "command_args": _duplicated(props, "command_args", ["--x", "alice"], ["--x", "<value>"]),
        "$ip": _duplicated(props, "$ip", "203.0.113.7", "0.0.0.0"),
    }
    bad_last = {
        "command": _duplicated(props, "command", "run", "/home/alice/secret"),
        "hostname": _duplicated(props, "hostname", "x", "alice-laptop"),
    }
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute("DELETE FROM events")
        conn.executemany(
            "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
            [
                (events.new_uuid7(), "cli_command", events.iso_utc(), text)
                for text in [*hidden_first.values(), *bad_last.values()]
            ],
        )
    conn.close()

    assert flush(env).returncode == 0
    collector.wait_for_events(len(hidden_first))

    bodies = assert_exactly_what_left(collector)  # strict_json: no key repeated anywhere
    items = items_that_left(bodies)
    assert len(items) == len(hidden_first)
    assert all(i["properties"]["command"] == "run" for i in items)
    assert sorted(i["properties"]["command_args"] for i in items) == [[], [], ["--x", "<value>"]]
    for request in collector.received():
        for private in ("alice", "203.0.113.7"):
            assert private not in request["text"], private
    assert spool_rows(home) == []
    assert spool_state(home)["dropped_invalid"] == str(len(bad_last))


def test_the_strict_reader_sees_a_repeated_key():
    """The check above can fail: a body with a repeated key is refused by `strict_json`."""
    try:
        strict_json('{"batch": [], "batch": []}')
    except AssertionError as error:
        assert "batch" in str(error)
    else:
        raise AssertionError("a repeated key went unnoticed")
    assert strict_json(f'{{"api_key": "{TEST_API_KEY}"}}') == {"api_key": TEST_API_KEY}
