"""`visivo-telemetry status|show|flush|purge|enable|disable`, as a user runs them."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import stat
import subprocess
import time

from helpers import (
    PYTHON,
    clean_env,
    down_receiver,
    host_code,
    read_terminal,
    run_host,
    spool_path,
    spool_rows,
    status_json,
    vt,
    wait_for_senders_to_exit,
)
from wire_contract import check_body, strict_json


def spool_three(env, home, project) -> None:
    """Three pending events (the receiver in `env` is down), oldest first: run, compile, serve."""
    for name in ("run", "compile", "serve"):
        run_host(host_code(name, ["--threads", "4"]), env, cwd=project)
    assert wait_for_senders_to_exit(home) == []
    assert len(spool_rows(home)) == 3


def test_status_on_a_fresh_machine_says_on_and_creates_nothing(home):
    env = clean_env(home)
    human = vt("status", env=env)
    info = status_json(env)

    assert human.returncode == 0
    assert human.stdout.startswith("telemetry:    on (no opt-out found)\n")
    assert info["enabled"] is True and info["decided_by"] == "default"
    assert info["pending"] == 0 and info["spool_exists"] is False
    assert info["spool_path"] == str(spool_path(home))
    assert info["last_success_at"] is None and info["failures"] == 0
    assert not (home / ".visivo").exists()


def test_status_names_the_source_that_turned_telemetry_off(home, project):
    by_env = status_json(clean_env(home, VISIVO_TELEMETRY_DISABLED="1"))
    assert (by_env["enabled"], by_env["source"]) == (False, "VISIVO_TELEMETRY_DISABLED")
    assert status_json(clean_env(home, DO_NOT_TRACK="1"))["source"] == "DO_NOT_TRACK"

    (project / "project.visivo.yml").write_text("defaults:\n  telemetry_enabled: false\n")
    by_project = vt("status", "--project-dir", str(project), env=clean_env(home))
    assert f"off ({project / 'project.visivo.yml'} opts out)" in by_project.stdout
    assert status_json(clean_env(home), cwd=project)["decided_by"] == "project"

    (home / ".visivo").mkdir()
    (home / ".visivo" / "config.yml").write_text("telemetry_enabled: no\n")
    by_global = status_json(clean_env(home))
    assert (by_global["decided_by"], by_global["source"]) == (
        "global",
        str(home / ".visivo" / "config.yml"),
    )


def test_status_reports_pending_events_failures_and_the_last_send(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "r.db")
    env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
    spool_three(env, home, project)
    info = status_json(env)
    human = vt("status", env=env).stdout

    assert info["pending"] == 3 and info["spool_exists"] is True
    assert 0 <= info["oldest_pending_age_s"] < 120
    assert info["failures"] >= 1 and info["last_error"] == "connection-refused"
    assert "Connection refused" in info["last_error_detail"]
    assert "VISIVO_POSTHOG_HOST" in info["last_error_hint"]
    assert info["next_attempt_at"] > time.time() - 60
    assert "pending:      3 (oldest " in human
    assert "last error:   connection-refused at " in human
    assert f"\n{'':14}nothing accepts connections at the receiver's address" in human
    assert "last sent:    never" in human

    with receiver:
        assert vt("flush", env=env).returncode == 0
        after = status_json(env)
    assert after["pending"] == 0 and after["failures"] == 0
    assert after["last_success_at"].endswith("Z")
    assert after["destination"] == receiver.url + "/batch/"


def test_show_prints_the_batch_body_exactly_as_it_would_be_sent(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "received.db")
    env = clean_env(home, VISIVO_POSTHOG_API_KEY="phc_test_key", VISIVO_POSTHOG_HOST=receiver.url)
    spool_three(env, home, project)
    rows = spool_rows(home)

    body = strict_json(vt("show", env=env).stdout)
    raw = vt("show", "--raw", env=env).stdout
    newest = strict_json(vt("show", "--limit", "2", env=env).stdout)

    check_body(body, "phc_test_key")  # the documented body, items and properties, exactly
    assert raw.count("\n") == 1 and strict_json(raw)["batch"] == body["batch"]
    assert [item["properties"]["command"] for item in body["batch"]] == ["run", "compile", "serve"]
    assert [item["properties"]["command"] for item in newest["batch"]] == ["compile", "serve"]
    assert [(i["uuid"], i["event"], i["timestamp"], i["properties"]) for i in body["batch"]] == [
        (row["uuid"], row["event"], row["created_at"], row["properties"]) for row in rows
    ]
    assert len(spool_rows(home)) == 3, "show sends and deletes nothing"

    with receiver:
        assert vt("flush", env=env).returncode == 0
        (request,) = receiver.received()
    sent = strict_json(request["text"])
    assert set(sent) == set(body) and sent["batch"] == body["batch"], "show is what is sent"


def test_show_with_no_spool_prints_an_empty_batch_and_creates_nothing(home):
    result = vt("show", env=clean_env(home))
    assert result.returncode == 0
    assert json.loads(result.stdout)["batch"] == []
    assert not (home / ".visivo").exists()


def test_flush_reports_sent_events_when_the_receiver_is_up(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "r.db")
    env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
    spool_three(env, home, project)
    with receiver:
        result = vt("flush", env=env)
        assert len(receiver.wait_for_events(3)) == 3
    assert result.returncode == 0
    assert result.stdout == "sent 3 events, 0 failed\n"
    assert result.stderr == "", "no progress line without a terminal"
    assert spool_rows(home) == []


def test_flush_reports_failures_and_keeps_events_when_the_receiver_is_down(home, project):
    env = clean_env(home)
    spool_three(env, home, project)
    result = vt("flush", env=env)

    assert result.returncode == 1
    assert result.stdout == "sent 0 events, 3 failed\n"
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "Error: could not deliver (connection-refused: nothing accepts connections at the "
        "receiver's address"
    )
    assert len(spool_rows(home)) == 3


def test_flush_shows_progress_on_a_terminal(home, project, tmp_path):
    receiver = down_receiver(tmp_path / "r.db")
    env = clean_env(home, VISIVO_POSTHOG_HOST=receiver.url)
    spool_three(env, home, project)
    with receiver:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [PYTHON, "-m", "visivo_telemetry.cli", "flush"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
        os.close(slave)
        terminal = read_terminal(master)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "sending… 3 sent, 0 failed" in terminal
    assert out == b"sent 3 events, 0 failed\n"


def test_purge_says_how_many_events_it_deleted(home, project):
    env = clean_env(home)
    spool_three(env, home, project)

    first = vt("purge", env=env)
    second = vt("purge", env=env)

    assert (first.returncode, first.stdout) == (0, "deleted 3 pending events\n")
    assert (second.returncode, second.stdout) == (0, "deleted 0 pending events\n")
    assert not spool_path(home).exists()


CONFIG = """\
# my Visivo settings
posthog_host: https://eu.i.posthog.com   # EU region
telemetry_enabled: true  # decided in 2025
editor:
  theme: dark
"""


def test_disable_keeps_other_keys_and_comments_and_purges(home, project):
    env = clean_env(home)
    spool_three(env, home, project)
    config = home / ".visivo" / "config.yml"
    config.write_text(CONFIG)

    result = vt("disable", env=env)

    assert result.returncode == 0
    assert result.stdout == f"telemetry disabled in {config}; deleted 3 pending events\n"
    assert config.read_text() == CONFIG.replace(
        "telemetry_enabled: true  # decided", "telemetry_enabled: false  # decided"
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert not spool_path(home).exists()
    run_host(host_code(), env, cwd=project)
    assert not spool_path(home).exists(), "a disabled machine records nothing"
    assert status_json(env)["decided_by"] == "global"


def test_enable_turns_it_back_on_and_creates_a_private_config(home, project):
    env = clean_env(home)
    assert vt("disable", env=env).returncode == 0
    visivo = home / ".visivo"
    assert stat.S_IMODE(visivo.stat().st_mode) == 0o700
    assert (visivo / "config.yml").read_text() == "telemetry_enabled: false\n"

    result = vt("enable", env=env)

    assert (result.returncode, result.stderr) == (0, "")
    assert (visivo / "config.yml").read_text() == "telemetry_enabled: true\n"
    run_host(host_code(), env, cwd=project)
    assert wait_for_senders_to_exit(home) == []
    assert len(spool_rows(home)) == 1


def test_enable_warns_when_something_else_still_opts_out(home):
    result = vt("enable", env=clean_env(home, DO_NOT_TRACK="1"))
    assert result.returncode == 0
    assert result.stderr == "note: still off here because DO_NOT_TRACK is set\n"


def test_an_unwritable_config_is_a_one_line_error(home):
    (home / ".visivo").write_text("not a directory")
    for command in ("disable", "enable"):
        result = vt(command, env=clean_env(home))
        assert result.returncode != 0
        [line] = result.stderr.splitlines()
        assert line.startswith(f"Error: cannot write {home / '.visivo' / 'config.yml'}")
        assert "Traceback" not in result.stderr


def test_a_config_that_is_not_a_mapping_is_refused_untouched(home):
    config = home / ".visivo" / "config.yml"
    config.parent.mkdir()
    config.write_text("- just\n- a list\n")
    result = vt("enable", env=clean_env(home))
    assert result.returncode == 1
    assert "not a plain YAML mapping" in result.stderr
    assert config.read_text() == "- just\n- a list\n"


def test_status_says_how_many_events_the_caps_and_the_receiver_dropped(home, project):
    env = clean_env(home)
    spool_three(env, home, project)
    conn = sqlite3.connect(spool_path(home))
    with conn:
        conn.executemany(
            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
            [("dropped_rows", "7"), ("dropped_too_large", "2")],
        )
    conn.close()

    dropped = status_json(env)["dropped"]
    text = vt("status", env=env).stdout

    assert dropped == {
        "age": 0, "attempts": 0, "rows": 7, "invalid": 0, "rejected": 0, "too_large": 2
    }  # fmt: skip
    assert "rows 7" in text and "too_large 2" in text
