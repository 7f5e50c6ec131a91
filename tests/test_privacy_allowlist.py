"""Privacy notice: "This section is the complete list; the code enforces it."

One allowlist (`_schema.py`) decides what the event builder makes, what the sender lets out,
what debug mode prints and what the README's table says. Nothing outside it is ever sent.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    clean_env,
    flush,
    host_code,
    run_host,
    spool_path,
    spool_rows,
    spool_state,
    wait_for_senders_to_exit,
)
from hypothesis import given
from hypothesis import strategies as st
from privacy_support import (
    DOCUMENTED_API_KEYS,
    DOCUMENTED_CLI_KEYS,
    DOCUMENTED_CLI_OPTIONAL_KEYS,
    spool_commands,
)

from visivo_telemetry import Telemetry
from visivo_telemetry import _events as events
from visivo_telemetry import _schema as schema

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _cli(command="run", **metrics):
    return events.build(
        "cli_command",
        "1.4.0",
        events.cli_command_properties(command, ["--threads", "<value>"], 5.0, None, metrics),
    )


def test_a_cli_command_carries_exactly_the_documented_keys():
    event = _cli()

    assert set(json.loads(event.properties_json)) == DOCUMENTED_CLI_KEYS


def test_optional_metrics_are_the_only_additions():
    run = _cli("run", job_count=3)
    compiled = _cli("compile", object_counts={"charts": 2})

    keys = set(json.loads(run.properties_json)) | set(json.loads(compiled.properties_json))
    assert keys == DOCUMENTED_CLI_KEYS | DOCUMENTED_CLI_OPTIONAL_KEYS


def test_an_api_request_carries_exactly_the_documented_keys():
    props = events.api_request_properties("GET", "/api/projects/{id}", 200, 3.0)
    event = events.build("api_request", "1.4.0", props)

    assert set(json.loads(event.properties_json)) == DOCUMENTED_API_KEYS


def test_the_allowlist_is_the_documented_list():
    assert schema.allowed_keys("cli_command") == DOCUMENTED_CLI_KEYS | DOCUMENTED_CLI_OPTIONAL_KEYS
    assert schema.allowed_keys("api_request") == DOCUMENTED_API_KEYS
    assert set(schema.EVENTS) == {"cli_command", "api_request"}


def test_metrics_outside_the_allowlist_are_never_recorded(home, project):
    telemetry = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=project)
    metrics = {"project_name": "acme", "sql": "select 1", "job_count": 3, "object_counts": "x"}
    with telemetry.command("run") as command:
        command.metrics.update(metrics)
    telemetry.close()

    (row,) = spool_rows(home)
    assert set(row["properties"]) == DOCUMENTED_CLI_KEYS | {"job_count"}
    assert "acme" not in json.dumps(row["properties"])


def test_an_error_is_recorded_as_its_class_name_only(home, project):
    telemetry = Telemetry(version="1.4.0", api_key="phc_test_key", project_dir=project)
    with pytest.raises(FileNotFoundError), telemetry.command("run", []):
        raise FileNotFoundError("/home/alice/secret_project/orders.sql")

    (row,) = spool_rows(home)
    assert row["properties"]["error_type"] == "FileNotFoundError"
    assert "alice" not in json.dumps(row)


def test_debug_output_is_exactly_the_allowlisted_event(home, project):
    env = clean_env(home, VISIVO_TELEMETRY_DEBUG="1")
    result, _ = run_host(host_code("run", ["--token", "abc", "/home/alice"]), env, cwd=project)

    (line,) = result.stderr.splitlines()
    printed = json.loads(line)
    assert set(printed["properties"]) == DOCUMENTED_CLI_KEYS
    assert printed["properties"]["command_args"] == ["--token", "<redacted>", "<path>"]
    assert result.stdout == ""
    assert not spool_path(home).exists()


def test_what_arrives_is_exactly_the_documented_keys(env, home, project, collector):
    run_host(host_code("compile", metrics={"object_counts": {"charts": 1}}), env, cwd=project)

    (received,) = collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []
    assert set(received["properties"]) == DOCUMENTED_CLI_KEYS | {"object_counts"}
    assert set(received) >= {"event", "uuid", "timestamp", "distinct_id", "properties"}


def _tamper(properties: dict) -> dict[str, tuple[str, str]]:
    """Spool rows that break the allowlist, by what they break: (event name, properties JSON)."""

    def changed(**overrides):
        return json.dumps({**properties, **overrides})

    without_session = {k: v for k, v in properties.items() if k != "session_id"}
    return {
        "extra key": ("cli_command", changed(hostname="alice-laptop")),
        "extra key: project": ("cli_command", changed(project_name="alice-secret-project")),
        "wrong type: duration": ("cli_command", changed(duration_ms="12")),
        "wrong type: success": ("cli_command", changed(success=1)),
        "raw path in args": ("cli_command", changed(command_args=["--dir", "/home/alice/x"])),
        "raw value in args": ("cli_command", changed(command_args=["--filter", "alice"])),
        "error message": ("cli_command", changed(error_type="OSError: /home/alice/x")),
        "command with a path": ("cli_command", changed(command="run /home/alice")),
        "session id not random": ("cli_command", changed(session_id="alice")),
        "person profile on": ("cli_command", changed(**{"$process_person_profile": True})),
        "geoip on": ("cli_command", changed(**{"$geoip_disable": False})),
        "missing key": ("cli_command", json.dumps(without_session)),
        "unknown event": ("alice_page_view", changed()),
        "api fields in a cli event": ("cli_command", changed(endpoint="/alice")),
        "not JSON": ("cli_command", '{"alice": '),
        "not an object": ("cli_command", '["alice"]'),
    }


def test_a_tampered_spool_row_is_never_sent(env, home, project, collector):
    spool_commands(project, [("run", ["--threads", "4"])])
    (good,) = spool_rows(home)
    tampered = _tamper(good["properties"])
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.executemany(
            "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
            [
                (events.new_uuid4(), name, events.iso_utc(), props)
                for name, props in tampered.values()
            ],
        )
    conn.close()

    result = flush(env)

    assert result.returncode == 0, result.stderr
    assert [e["uuid"] for e in collector.events()] == [good["uuid"]]
    assert all("alice" not in json.dumps(e) for e in collector.events())
    assert spool_rows(home) == []
    assert spool_state(home)["dropped_invalid"] == str(len(tampered))


WELL_FORMED = json.loads(_cli(job_count=1).properties_json)


@pytest.mark.parametrize("name, row", _tamper(WELL_FORMED).items(), ids=_tamper(WELL_FORMED))
def test_the_sender_check_refuses_each_kind_of_tampering(name, row):
    event, properties = row
    try:
        parsed = json.loads(properties)
    except ValueError:
        parsed = properties

    assert schema.is_valid("cli_command", WELL_FORMED)
    assert not schema.is_valid(event, parsed)


def test_the_readme_table_is_generated_from_the_allowlist():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- schema-table -->\n", "<!-- /schema-table -->"
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()

    assert table == schema.markdown_table()


def test_the_table_names_every_allowed_key():
    table = schema.markdown_table()

    for event in schema.EVENTS:
        for key in schema.allowed_keys(event):
            assert f"| `{key}` |" in table, key
    assert Path(schema.__file__).name == "_schema.py"


WELL_FORMED_API = json.loads(
    events.build(
        "api_request", "1.4.0", events.api_request_properties("GET", "/api/{id}", 200, 3.0)
    ).properties_json
)


@given(st.sampled_from(sorted(schema.RULES)), _JSON)
def test_no_value_in_a_tampered_row_makes_the_check_raise(key, value):
    """A sender that raised on a row instead of refusing it would never get past that row."""
    assert schema.check_property(key, value) in (True, False)
    assert schema.is_valid("api_request", {**WELL_FORMED_API, key: value}) in (True, False)


def test_a_key_that_two_events_carry_is_checked_by_one_rule():
    (cli_duration,) = [p for p in schema.PROPERTIES if p[:2] == ("duration_ms", "cli_command")]
    other_rule = (*cli_duration[:3], lambda value: True, *cli_duration[4:])

    assert schema.RULES["duration_ms"] is cli_duration[3]
    with pytest.raises(ValueError, match="duration_ms is declared with two rules"):
        schema._derive((*schema.PROPERTIES, other_rule))
