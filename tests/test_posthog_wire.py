"""What reaches PostHog is what PostHog's capture service accepts and keeps as we promise.

Capture fills `$ip` from the connection whenever an event leaves it empty, answers 200 to any
well-formed key whether or not a project owns it, rejects a whole request for one malformed
uuid, accepts gzip bodies, and routes `historical_migration` batches to its backlog pipeline.
`scripts/collector.py` enforces the same rules, so these tests check against PostHog's.
"""

from __future__ import annotations

import json
import sqlite3
from importlib.metadata import version

import pytest
from helpers import (
    TEST_API_KEY,
    Collector,
    clean_env,
    flush,
    host_code,
    run_host,
    spool_path,
    spool_rows,
    spool_state,
    status_json,
    wait_for_senders_to_exit,
)
from privacy_support import global_config, project_config, write_text
from reliability_support import seed_spool

from visivo_telemetry import _destination as destination
from visivo_telemetry import _events as events
from visivo_telemetry import _spool as spool

CANONICAL_UUID_GROUPS = [8, 4, 4, 4, 12]
HEX = set("0123456789abcdef")


def _is_canonical_uuid(value: str) -> bool:
    groups = value.split("-")
    return [len(g) for g in groups] == CANONICAL_UUID_GROUPS and set("".join(groups)) <= HEX


def _without_host(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env.pop("VISIVO_POSTHOG_HOST", None)
    return env


def test_every_event_keeps_no_ip_and_every_request_is_gzip_with_our_user_agent(
    env, home, project, collector
):
    for name in ("run", "compile", "serve"):
        run_host(host_code(name), env, cwd=project)
    received = collector.wait_for_events(3)
    assert wait_for_senders_to_exit(home) == []

    assert len(received) == 3
    for event in received:
        properties = event["properties"]
        assert properties["$ip"] == "0.0.0.0"
        assert properties["$lib"] == "visivo-telemetry"
        assert properties["$lib_version"] == version("visivo-telemetry")
        assert properties["$process_person_profile"] is False
        assert properties["$geoip_disable"] is True
        assert _is_canonical_uuid(event["uuid"])
    requests = collector.requests()
    assert requests and all(r["status"] == 200 for r in requests)
    assert {r["content_encoding"] for r in requests} == {"gzip"}
    assert {r["user_agent"] for r in requests} == {
        f"visivo-telemetry/{version('visivo-telemetry')}"
    }
    assert all(r["body_bytes"] < r["json_bytes"] for r in requests)


def test_the_applications_key_and_host_arrive(home, project, collector):
    env = _without_host(clean_env(home))

    run_host(host_code("run", api_key="phc_visivo_app", host=collector.url), env, cwd=project)

    (received,) = collector.wait_for_events(1)
    assert wait_for_senders_to_exit(home) == []
    assert received["api_key"] == "phc_visivo_app"


def test_the_users_environment_overrides_the_applications_key_and_host(
    home, project, collector, tmp_path
):
    with Collector(tmp_path / "app.db") as app_receiver:
        env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url, VISIVO_POSTHOG_API_KEY="phc_mine")

        code = host_code("run", api_key="phc_visivo_app", host=app_receiver.url)
        run_host(code, env, cwd=project)

        (received,) = collector.wait_for_events(1)
        assert wait_for_senders_to_exit(home) == []
        assert received["api_key"] == "phc_mine"
        assert app_receiver.requests() == []


def test_the_users_config_overrides_the_application_and_a_project_file_cannot(
    home, project, collector, tmp_path
):
    with Collector(tmp_path / "app.db") as app_receiver, Collector(tmp_path / "b.db") as planted:
        write_text(
            global_config(home), f"posthog_host: {collector.url}\nposthog_api_key: phc_mine\n"
        )
        write_text(
            project_config(project),
            f"posthog_host: {planted.url}\nposthog_api_key: phc_planted\n"
            f"defaults:\n  posthog_host: {planted.url}\n  posthog_api_key: phc_planted\n",
        )
        env = _without_host(clean_env(home))

        code = host_code("run", api_key="phc_visivo_app", host=app_receiver.url)
        run_host(code, env, cwd=project)

        (received,) = collector.wait_for_events(1)
        assert wait_for_senders_to_exit(home) == []
        assert received["api_key"] == "phc_mine"
        assert app_receiver.requests() == [] and planted.requests() == []


def test_a_project_file_cannot_supply_a_missing_key(home, project, collector):
    write_text(project_config(project), f"posthog_host: {collector.url}\nposthog_api_key: phc_x\n")
    env = _without_host(clean_env(home))

    result, _ = run_host(host_code("run", api_key=None), env, cwd=project)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert wait_for_senders_to_exit(home) == []
    assert collector.requests() == []


def test_with_no_key_anywhere_nothing_is_recorded_sent_or_started(home, project, collector):
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)

    for _ in range(3):
        result, _ = run_host(host_code("run", api_key=None), env, cwd=project)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert wait_for_senders_to_exit(home) == []

    assert collector.requests() == []
    assert spool_rows(home) == []
    info = status_json(env)
    assert info["api_key"] is None and info["api_key_error"].startswith("no API key")


def test_a_spool_without_any_key_is_never_sent(home, collector):
    """Events from elsewhere (an older version, a key since removed) wait; nothing connects."""
    seed_spool(home, 3)
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.execute("DELETE FROM state WHERE key = 'app_api_key'")
    conn.close()
    env = clean_env(home, VISIVO_POSTHOG_HOST=collector.url)

    result = flush(env)

    assert result.returncode == 1 and "no PostHog API key" in result.stderr
    assert collector.requests() == []
    assert len(spool_rows(home)) == 3
    assert spool_state(home)["last_error"] == "no-api-key"


def test_flush_in_another_process_sends_with_the_key_of_the_application_that_recorded(
    home, project, tmp_path
):
    receiver = Collector(tmp_path / "received.db")
    receiver.start()
    url = receiver.url
    receiver.stop()
    env = _without_host(clean_env(home))
    run_host(host_code("run", api_key="phc_visivo_app", host=url), env, cwd=project)
    assert wait_for_senders_to_exit(home) == []
    assert len(spool_rows(home)) == 1

    with Collector(tmp_path / "received.db", port=receiver.port) as back:
        result = flush(env)

        assert result.returncode == 0, result.stderr
        assert [e["api_key"] for e in back.events()] == ["phc_visivo_app"]


def test_a_malformed_uuid_never_reaches_the_receiver_and_costs_no_400(env, home, collector):
    (good,) = seed_spool(home, 1)
    malformed = (
        "0123456-789abcdef-0123-4567-89abcdef012",  # 36 characters, dashes misplaced
        "0123456789abcdef0123456789abcdef----",  # 32 hex digits and four dashes, anywhere
        "01234567-89ab-cdef-0123-456789abcdeg",  # not hex
    )
    (row,) = spool_rows(home)
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.executemany(
            "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
            [
                (bad, "cli_command", row["created_at"], json.dumps(row["properties"]))
                for bad in malformed
            ],
        )
    conn.close()

    result = flush(env)

    assert result.returncode == 0, result.stderr
    assert [e["uuid"] for e in collector.events()] == [good]
    assert [r["status"] for r in collector.requests()] == [200]
    assert spool_rows(home) == []
    assert spool_state(home)["dropped_invalid"] == "3"


def test_a_row_with_an_impossible_timestamp_never_reaches_the_receiver(env, home, collector):
    (good,) = seed_spool(home, 1)
    (row,) = spool_rows(home)
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.executemany(
            "INSERT INTO events (uuid, event, created_at, properties) VALUES (?, ?, ?, ?)",
            [
                (events.new_uuid7(), "cli_command", when, json.dumps(row["properties"]))
                for when in (
                    "2999-02-30T10:00:00.000Z",  # no such day (later than any age cap)
                    events.iso_utc()[:11] + "25" + events.iso_utc()[13:],  # no such hour
                    "yesterday",
                )
            ],
        )
    conn.close()

    assert flush(env).returncode == 0

    assert [e["uuid"] for e in collector.events()] == [good]
    assert [r["status"] for r in collector.requests()] == [200]
    assert spool_state(home)["dropped_invalid"] == "3"


def test_a_three_day_old_backlog_goes_as_a_historical_migration(env, home, collector):
    seed_spool(home, 5, age_s=3 * 86_400)

    assert flush(env).returncode == 0

    requests = collector.requests()
    assert [r["historical_migration"] for r in requests] == [1]
    assert len(collector.events()) == 5


def test_fresh_events_never_carry_historical_migration(env, home, project, collector):
    seed_spool(home, 5, age_s=47 * 3600)
    run_host(host_code("run"), env, cwd=project)
    collector.wait_for_events(6)
    assert wait_for_senders_to_exit(home) == []

    assert flush(env).returncode == 0

    requests = collector.requests()
    assert requests and all(not r["historical_migration"] for r in requests)
    assert len(collector.events()) == 6


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("https://app.posthog.com", "https://us.i.posthog.com"),
        ("https://us.posthog.com/", "https://us.i.posthog.com"),
        ("https://eu.posthog.com", "https://eu.i.posthog.com"),
        ("https://EU.posthog.com/", "https://eu.i.posthog.com"),
        ("https://us.i.posthog.com", "https://us.i.posthog.com"),
        ("https://posthog.example.com/", "https://posthog.example.com"),
    ],
)
def test_posthogs_app_hosts_are_mapped_to_their_ingestion_hosts(home, given, used):
    env = {"HOME": str(home)}

    assert destination.settings(env, "phc_app", given).host == used
    assert destination.settings({**env, "VISIVO_POSTHOG_HOST": given}, "phc_app").host == used


def test_status_shows_the_host_actually_used(home):
    """An application that names PostHog's app host: status shows where events really go."""
    seed_spool(home, 1)
    conn = spool.connect(str(spool_path(home)))
    spool.remember_destination(conn, "phc_visivo_app", "https://app.posthog.com")
    conn.close()
    env = _without_host(clean_env(home))

    info = status_json(env)
    assert info["destination"] == "https://us.i.posthog.com/batch/"
    assert info["api_key_source"] == "application"


@pytest.mark.parametrize(
    "key", ["", "phx_personal_key_of_a_user", "phc_" + "x" * 61, "phc_with space\x00"]
)
def test_a_key_capture_would_refuse_is_never_used(home, key):
    assert destination.settings({"HOME": str(home)}, key).key_error is not None


def test_a_well_formed_key_is_accepted(home):
    assert destination.settings({"HOME": str(home)}, TEST_API_KEY).key_error is None
