"""Every event goes where its own command's settings said when it was recorded: key and host
travel with the event, and a sender (started by any later process, with any environment)
groups batches by destination."""

from __future__ import annotations

import json
import sqlite3

from helpers import (
    DEAD_RECEIVER,
    Collector,
    clean_env,
    down_receiver,
    flush,
    host_code,
    run_host,
    spool_path,
    spool_rows,
    spool_state,
    vt,
    wait_for_senders_to_exit,
)


def record(home, project, command: str, **env: str) -> None:
    result, _ = run_host(host_code(command, **env.pop("code", {})), clean_env(home, **env), project)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert wait_for_senders_to_exit(home) == []


def commands(receiver: Collector) -> list[str]:
    return sorted(event["properties"]["command"] for event in receiver.events())


def test_a_host_set_for_one_command_is_where_that_commands_event_goes(home, project, tmp_path):
    a, b = down_receiver(tmp_path / "a.db"), down_receiver(tmp_path / "b.db")
    record(home, project, "first", VISIVO_POSTHOG_HOST=f"http://127.0.0.1:{a.port}")
    record(home, project, "second", VISIVO_POSTHOG_HOST=f"http://127.0.0.1:{b.port}")
    assert len(spool_rows(home)) == 2

    with a, b:
        done = flush(clean_env(home, VISIVO_POSTHOG_HOST=DEAD_RECEIVER))  # a later process's
        assert done.returncode == 0, done.stderr
        assert (commands(a), commands(b)) == (["first"], ["second"])
    assert spool_rows(home) == []


def test_a_key_set_for_one_command_is_the_key_its_event_carries(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "r.db")
    url = f"http://127.0.0.1:{receiver.port}"
    record(home, project, "mine", VISIVO_POSTHOG_HOST=url, VISIVO_POSTHOG_API_KEY="phc_users")
    shown = vt("show", env=clean_env(home))  # a later process, without the variable
    assert json.loads(shown.stdout)["api_key"] == "phc_users" and shown.stderr == ""
    record(home, project, "apps", VISIVO_POSTHOG_HOST=url)
    shown = vt("show", env=clean_env(home))
    assert "these events go to 2 projects, each batch with its own key" in shown.stderr

    with receiver:
        later = clean_env(home, VISIVO_POSTHOG_HOST=url, VISIVO_POSTHOG_API_KEY="phc_later")
        assert flush(later).returncode == 0
        keys = {e["properties"]["command"]: e["api_key"] for e in receiver.events()}
    assert keys == {"mine": "phc_users", "apps": "phc_test_key"}


def test_two_applications_sharing_one_spool_each_reach_their_own_project(home, project, tmp_path):
    a, b = down_receiver(tmp_path / "a.db"), down_receiver(tmp_path / "b.db")
    for name, receiver in (("app-a", a), ("app-b", b)):
        code = {"api_key": f"phc_{name[-1]}", "host": f"http://127.0.0.1:{receiver.port}"}
        for _ in range(3):
            record(home, project, name, code=code, VISIVO_POSTHOG_HOST="")
    assert len(spool_rows(home)) == 6

    with a, b:
        assert flush(clean_env(home)).returncode == 0
        assert commands(a) == ["app-a"] * 3 and commands(b) == ["app-b"] * 3
        assert {e["api_key"] for e in a.events()} == {"phc_a"}
        assert {e["api_key"] for e in b.events()} == {"phc_b"}
        assert len(a.requests()) == 1 and len(b.requests()) == 1, "one batch per destination"


def test_an_event_whose_destination_was_edited_to_a_refused_host_is_dropped(
    home, project, collector
):
    env = {"VISIVO_POSTHOG_HOST": DEAD_RECEIVER}
    record(home, project, "kept", **env)
    record(home, project, "edited", **env)
    conn = sqlite3.connect(spool_path(home))
    conn.execute("UPDATE events SET host = 'http://evil.example' WHERE properties LIKE '%edited%'")
    conn.execute("UPDATE events SET host = ? WHERE properties LIKE '%kept%'", (collector.url,))
    conn.commit()
    conn.close()

    assert flush(clean_env(home)).returncode == 0
    assert commands(collector) == ["kept"]
    assert spool_rows(home) == [] and spool_state(home)["dropped_invalid"] == "1"
